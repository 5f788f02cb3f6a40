//! The closed-loop load: `concurrency` workers, each sending one payment
//! (`POST /payments`) and waiting for its execution to end before the next.
//!
//! End-to-end latency is POST sent → the execution's `stopDate` (the local
//! cloud's clock is this machine's clock), so how often a worker polls
//! DescribeExecution does not inflate it; polling only delays the worker's
//! next payment. Workers poll from about 3/4 of the typical latency, every
//! 2 ms growing to 25 ms, and give up after `timeout`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_sdk_sfn::types::ExecutionStatus;

use super::progress::{Counters, Progress};
use crate::api::{Api, NewPayment};
use crate::error::CliError;
use crate::stepfunctions::StepFunctions;

const POLL_FIRST: Duration = Duration::from_millis(2);
const POLL_MAX: Duration = Duration::from_millis(25);

/// What every worker shares.
pub struct Load {
    pub api: Api,
    pub sfn: StepFunctions,
    /// `arn:…:execution:<machine>:` (executions are named after payments).
    pub execution_prefix: String,
    pub users: Vec<String>,
    pub amount: String,
    pub currency: String,
    pub run_id: String,
    pub timeout: Duration,
    /// A running estimate of the end-to-end latency (µs), to poll less.
    typical_us: AtomicU64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The execution ended with this status (SUCCEEDED, FAILED, …).
    Ended(String),
    /// The POST failed or the execution did not end in time.
    Error(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    pub payment_id: String,
    pub execution_arn: String,
    /// POST sent → 202 received.
    pub post_us: u64,
    /// POST sent → execution stopped.
    pub e2e_us: u64,
    pub outcome: Outcome,
}

impl Sample {
    pub fn succeeded(&self) -> bool {
        matches!(&self.outcome, Outcome::Ended(status) if status == "SUCCEEDED")
    }
}

pub struct Run {
    pub samples: Vec<Sample>,
    pub elapsed: Duration,
}

impl Load {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        api: Api,
        sfn: StepFunctions,
        execution_prefix: String,
        users: Vec<String>,
        amount: String,
        currency: String,
        run_id: String,
        timeout: Duration,
    ) -> Self {
        Self {
            api,
            sfn,
            execution_prefix,
            users,
            amount,
            currency,
            run_id,
            timeout,
            typical_us: AtomicU64::new(50_000),
        }
    }

    /// Sends payments `first..first + count` with `concurrency` workers.
    pub async fn run(
        self: &Arc<Self>,
        label: &str,
        first: u64,
        count: u64,
        concurrency: u32,
        quiet: bool,
    ) -> Run {
        let next = Arc::new(AtomicU64::new(first));
        let end = first.saturating_add(count);
        let counters = Arc::new(Counters::default());
        let progress = Progress::start(label, count, Arc::clone(&counters), quiet);
        let started = Instant::now();
        let workers: Vec<_> = (0..concurrency.max(1))
            .map(|_| {
                let load = Arc::clone(self);
                let next = Arc::clone(&next);
                let counters = Arc::clone(&counters);
                tokio::spawn(async move {
                    let mut samples = Vec::new();
                    loop {
                        let index = next.fetch_add(1, Ordering::Relaxed);
                        if index >= end {
                            return samples;
                        }
                        let sample = load.one(index).await;
                        counters.finish(sample.e2e_us, sample.succeeded());
                        samples.push(sample);
                    }
                })
            })
            .collect();
        let mut samples = Vec::new();
        for worker in workers {
            if let Ok(mut done) = worker.await {
                samples.append(&mut done);
            }
        }
        let elapsed = started.elapsed();
        progress.finish().await;
        Run { samples, elapsed }
    }

    async fn one(&self, index: u64) -> Sample {
        let user_count = u64::try_from(self.users.len()).unwrap_or(1).max(1);
        let user = usize::try_from(index % user_count)
            .ok()
            .and_then(|i| self.users.get(i))
            .cloned()
            .unwrap_or_default();
        let payment = NewPayment {
            user_id: user,
            amount: self.amount.clone(),
            currency: self.currency.clone(),
            order_id: Some(format!("bench-{}-{index}", self.run_id)),
            description: Some("saga bench".into()),
        };
        let sent_wall_us = epoch_us(SystemTime::now());
        let sent = Instant::now();
        let created = self.api.create_payment(&payment, None).await;
        let post_us = elapsed_us(sent);
        let created = match created {
            Ok(created) => created,
            Err(err) => {
                return Sample {
                    payment_id: String::new(),
                    execution_arn: String::new(),
                    post_us,
                    e2e_us: post_us,
                    outcome: Outcome::Error(format!("POST /payments: {err}")),
                };
            }
        };
        let execution_arn = created
            .execution_arn
            .clone()
            .unwrap_or_else(|| format!("{}{}", self.execution_prefix, created.payment_id));
        let (outcome, stopped_wall_us) = self.wait(&execution_arn, sent).await;
        let e2e_us = stopped_wall_us
            .map(|stopped| stopped.saturating_sub(sent_wall_us))
            .unwrap_or_else(|| elapsed_us(sent));
        if matches!(outcome, Outcome::Ended(_)) {
            // An exponentially weighted mean: 1/8 of the new sample.
            let typical = self.typical_us.load(Ordering::Relaxed);
            let updated = (typical.saturating_mul(7).saturating_add(e2e_us)) / 8;
            self.typical_us.store(updated, Ordering::Relaxed);
        }
        Sample {
            payment_id: created.payment_id,
            execution_arn,
            post_us,
            e2e_us,
            outcome,
        }
    }

    /// Polls until the execution ends; its status and stopDate (µs since epoch).
    async fn wait(&self, execution_arn: &str, sent: Instant) -> (Outcome, Option<u64>) {
        let typical = Duration::from_micros(self.typical_us.load(Ordering::Relaxed) / 4 * 3);
        if let Some(first_wait) = typical.checked_sub(sent.elapsed()) {
            tokio::time::sleep(first_wait).await;
        }
        let mut interval = POLL_FIRST;
        loop {
            let described = self
                .sfn
                .client()
                .describe_execution()
                .execution_arn(execution_arn)
                .send()
                .await;
            match described {
                Ok(out) if *out.status() != ExecutionStatus::Running => {
                    let stopped = out.stop_date().map(|date| {
                        u64::try_from(date.secs())
                            .unwrap_or_default()
                            .saturating_mul(1_000_000)
                            .saturating_add(u64::from(date.subsec_nanos() / 1_000))
                    });
                    return (Outcome::Ended(out.status().as_str().to_owned()), stopped);
                }
                Ok(_) => {}
                // Just started: the execution may not be listed for a moment.
                Err(err) if sent.elapsed() < Duration::from_secs(2) => {
                    let _ = err;
                }
                Err(err) => {
                    let message = CliError::StepFunctions(format!(
                        "{}",
                        aws_sdk_sfn::error::DisplayErrorContext(&err)
                    ));
                    return (Outcome::Error(message.to_string()), None);
                }
            }
            if sent.elapsed() > self.timeout {
                return (
                    Outcome::Error(format!(
                        "not ended after {} s: {execution_arn}",
                        self.timeout.as_secs()
                    )),
                    None,
                );
            }
            tokio::time::sleep(interval).await;
            interval = (interval * 5 / 4).min(POLL_MAX);
        }
    }
}

pub fn epoch_us(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or_default()
}

pub fn elapsed_us(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_micros()).unwrap_or(u64::MAX)
}
