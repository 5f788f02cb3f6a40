//! A scripted [`PaymentGateway`] for handler tests: answers are queued per
//! operation (with a default once the queue is empty), every call is counted,
//! and calls can be held at a gate to test concurrency deterministically.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use tokio::sync::watch;

use crate::domain::{Money, PaymentId, RefundId, UserId};
use crate::error::GatewayError;
use crate::events::ChargeStatus;
use crate::ports::{DECLINE_CODE_CANCELED, GatewayCharge, GatewayRefund, PaymentGateway};

pub type ChargeAnswer = Result<GatewayCharge, GatewayError>;
pub type StatusAnswer = Result<Option<GatewayCharge>, GatewayError>;
pub type RefundAnswer = Result<GatewayRefund, GatewayError>;

pub fn approved(reference: &str) -> GatewayCharge {
    charge(ChargeStatus::Approved, reference, None)
}

pub fn pending(reference: &str) -> GatewayCharge {
    charge(ChargeStatus::Pending, reference, None)
}

pub fn declined(reference: &str, decline_code: &str) -> GatewayCharge {
    charge(ChargeStatus::Declined, reference, Some(decline_code))
}

fn charge(status: ChargeStatus, reference: &str, decline_code: Option<&str>) -> GatewayCharge {
    GatewayCharge {
        status,
        reference: reference.to_owned(),
        decline_code: decline_code.map(str::to_owned),
    }
}

struct Script {
    charges: VecDeque<ChargeAnswer>,
    statuses: VecDeque<StatusAnswer>,
    refunds: VecDeque<RefundAnswer>,
    cancels: VecDeque<ChargeAnswer>,
    charge_default: ChargeAnswer,
    status_default: StatusAnswer,
    refund_default: RefundAnswer,
    cancel_default: ChargeAnswer,
    charge_count: u32,
    status_count: u32,
    refund_count: u32,
    cancel_count: u32,
}

pub struct ScriptedGateway {
    script: Mutex<Script>,
    /// `true` lets calls through; `false` holds them (after they are counted).
    gate: watch::Sender<bool>,
}

impl Default for ScriptedGateway {
    fn default() -> Self {
        Self::new()
    }
}

impl ScriptedGateway {
    /// Approves every charge (`gw_fake`), finds nothing on lookup, refunds
    /// everything, answers a cancel with DECLINED (`canceled`).
    pub fn new() -> Self {
        Self {
            script: Mutex::new(Script {
                charges: VecDeque::new(),
                statuses: VecDeque::new(),
                refunds: VecDeque::new(),
                cancels: VecDeque::new(),
                charge_default: Ok(approved("gw_fake")),
                status_default: Ok(None),
                refund_default: Ok(GatewayRefund {
                    reference: "gwr_fake".to_owned(),
                }),
                cancel_default: Ok(charge(
                    ChargeStatus::Declined,
                    "gw_fake",
                    Some(DECLINE_CODE_CANCELED),
                )),
                charge_count: 0,
                status_count: 0,
                refund_count: 0,
                cancel_count: 0,
            }),
            gate: watch::Sender::new(true),
        }
    }

    /// The answer to every charge once the queue is empty.
    pub fn set_charge_default(&self, answer: ChargeAnswer) {
        self.lock().charge_default = answer;
    }

    pub fn set_status_default(&self, answer: StatusAnswer) {
        self.lock().status_default = answer;
    }

    pub fn push_charge(&self, answer: ChargeAnswer) {
        self.lock().charges.push_back(answer);
    }

    pub fn push_status(&self, answer: StatusAnswer) {
        self.lock().statuses.push_back(answer);
    }

    pub fn push_refund(&self, answer: RefundAnswer) {
        self.lock().refunds.push_back(answer);
    }

    pub fn push_cancel(&self, answer: ChargeAnswer) {
        self.lock().cancels.push_back(answer);
    }

    pub fn set_cancel_default(&self, answer: ChargeAnswer) {
        self.lock().cancel_default = answer;
    }

    pub fn cancel_count(&self) -> u32 {
        self.lock().cancel_count
    }

    pub fn charge_count(&self) -> u32 {
        self.lock().charge_count
    }

    pub fn status_count(&self) -> u32 {
        self.lock().status_count
    }

    pub fn refund_count(&self) -> u32 {
        self.lock().refund_count
    }

    /// Every call of any kind so far.
    pub fn call_count(&self) -> u32 {
        let script = self.lock();
        script
            .charge_count
            .saturating_add(script.status_count)
            .saturating_add(script.refund_count)
            .saturating_add(script.cancel_count)
    }

    /// Calls from now on wait (already counted) until [`Self::release`].
    pub fn hold(&self) {
        self.gate.send_replace(false);
    }

    pub fn release(&self) {
        self.gate.send_replace(true);
    }

    async fn pass_gate(&self) {
        let mut open = self.gate.subscribe();
        // The sender lives as long as `self`, so this only ends when opened.
        let _ = open.wait_for(|open| *open).await;
    }

    fn lock(&self) -> MutexGuard<'_, Script> {
        self.script.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[async_trait]
impl PaymentGateway for ScriptedGateway {
    async fn charge(
        &self,
        _payment_id: &PaymentId,
        _user_id: &UserId,
        _amount: &Money,
    ) -> Result<GatewayCharge, GatewayError> {
        let answer = {
            let mut script = self.lock();
            script.charge_count = script.charge_count.saturating_add(1);
            let default = script.charge_default.clone();
            script.charges.pop_front().unwrap_or(default)
        };
        self.pass_gate().await;
        answer
    }

    async fn status(&self, _payment_id: &PaymentId) -> Result<Option<GatewayCharge>, GatewayError> {
        let answer = {
            let mut script = self.lock();
            script.status_count = script.status_count.saturating_add(1);
            let default = script.status_default.clone();
            script.statuses.pop_front().unwrap_or(default)
        };
        self.pass_gate().await;
        answer
    }

    async fn cancel(&self, _payment_id: &PaymentId) -> Result<GatewayCharge, GatewayError> {
        let answer = {
            let mut script = self.lock();
            script.cancel_count = script.cancel_count.saturating_add(1);
            let default = script.cancel_default.clone();
            script.cancels.pop_front().unwrap_or(default)
        };
        self.pass_gate().await;
        answer
    }

    async fn refund(
        &self,
        _refund_id: &RefundId,
        _payment_id: &PaymentId,
        _amount: &Money,
    ) -> Result<GatewayRefund, GatewayError> {
        let answer = {
            let mut script = self.lock();
            script.refund_count = script.refund_count.saturating_add(1);
            let default = script.refund_default.clone();
            script.refunds.pop_front().unwrap_or(default)
        };
        self.pass_gate().await;
        answer
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn answers_come_from_the_queue_then_the_default_and_are_counted() {
        let gateway = ScriptedGateway::new();
        gateway.push_charge(Err(GatewayError::Unavailable("down".into())));
        let (payment_id, user) = (PaymentId::generate(), UserId::parse("u1").unwrap());
        let amount = Money::parse("1.00", "USD").unwrap();
        assert!(gateway.charge(&payment_id, &user, &amount).await.is_err());
        let charge = gateway.charge(&payment_id, &user, &amount).await.unwrap();
        assert_eq!(charge, approved("gw_fake"));
        assert_eq!(gateway.status(&payment_id).await.unwrap(), None);
        assert_eq!((gateway.charge_count(), gateway.call_count()), (2, 3));
    }

    #[tokio::test]
    async fn cancels_default_to_declined_canceled_and_are_counted() {
        // GIVEN a fresh gateway with one scripted cancel
        let gateway = ScriptedGateway::new();
        let payment_id = PaymentId::generate();
        gateway.push_cancel(Ok(approved("gw_1")));
        // WHEN it is cancelled twice
        let first = gateway.cancel(&payment_id).await.unwrap();
        let second = gateway.cancel(&payment_id).await.unwrap();
        // THEN the script answers first, then the default: never charged
        assert_eq!(first, approved("gw_1"));
        assert_eq!(second, declined("gw_fake", DECLINE_CODE_CANCELED));
        // AND a new default answers from then on
        gateway.set_cancel_default(Err(GatewayError::Ambiguous("timed out".into())));
        assert!(matches!(
            gateway.cancel(&payment_id).await,
            Err(GatewayError::Ambiguous(_))
        ));
        assert_eq!((gateway.cancel_count(), gateway.charge_count()), (3, 0));
        assert_eq!(gateway.call_count(), 3);
    }
}
