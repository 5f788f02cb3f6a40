//! `saga`: the command-line client of the payment saga — pay, wallets, refunds,
//! the live flow monitor and the load benchmark.

pub mod api;
pub mod args;
pub mod auth;
pub mod bench;
pub mod commands;
pub mod error;
pub mod monitor;
pub mod output;
pub mod reconcile;
pub mod scenarios;
pub mod stepfunctions;
