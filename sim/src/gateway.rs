//! The external gateway, following the mock gateway's contract
//! (mock-gateway/README.md): charges idempotent per paymentId, refunds per
//! refundId, PENDING charges that resolve later, the same statuses and error
//! bodies. Its answers are read by the real adapter code
//! (`shared::gateway::http::{charge_answer, status_answer, refund_answer}`),
//! so what the saga sees is what it would see over HTTP. On top of the
//! contract it does what real gateways and networks do: a concurrent request
//! under the same idempotency key gets 409 (Stripe's behaviour), and answers
//! get lost after the gateway acted.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use reqwest::StatusCode;
use rust_decimal::Decimal;
use serde_json::{Value, json};
use shared::GatewayError;
use shared::domain::{Money, PaymentId, RefundId, UserId};
use shared::events::ChargeStatus;
use shared::gateway::http::{
    cancel_answer, charge_answer, no_answer, refund_answer, status_answer,
};
use shared::ports::{DECLINE_CODE_CANCELED, GatewayCharge, GatewayRefund, PaymentGateway};

use crate::env::Env;
use crate::faults::Fault;

/// The adapter's request timeout (`shared::gateway::config` default).
const REQUEST_TIMEOUT_MS: u64 = 3_000;
const LATENCY_MS: std::ops::RangeInclusive<u64> = 5..=120;
const SLOW_LATENCY_MS: std::ops::RangeInclusive<u64> = 3_200..=9_000;

#[derive(Debug, Clone)]
struct Charge {
    amount: Money,
    status: ChargeStatus,
    /// When a PENDING charge takes its final status.
    resolves_at_ms: u64,
    final_status: ChargeStatus,
    reference: String,
}

impl Charge {
    fn status_at(&self, now_ms: u64) -> ChargeStatus {
        if self.status == ChargeStatus::Pending && now_ms >= self.resolves_at_ms {
            self.final_status
        } else {
            self.status
        }
    }
}

#[derive(Debug, Clone)]
struct GatewayRefundRecord {
    payment_id: String,
    amount: Money,
    reference: String,
}

/// The secret api-handler verifies gateway webhooks with in the simulation.
pub const WEBHOOK_SECRET: &[u8] = b"whsec_sim";

#[derive(Default)]
struct Books {
    charges: BTreeMap<String, Charge>,
    refunds: BTreeMap<String, GatewayRefundRecord>,
    /// Payments closed by a cancel before any charge: their references.
    canceled: BTreeMap<String, String>,
    /// Refund ids the gateway refused: a retry under one is refused again.
    refused_refunds: BTreeSet<String>,
    in_flight: BTreeSet<String>,
    references: u64,
}

/// What the gateway's books say about one payment at the end of a seed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChargeView {
    pub status: ChargeStatus,
    pub amount: Money,
    pub refunded: Decimal,
}

#[derive(Clone)]
pub struct SimGateway {
    books: Arc<Mutex<Books>>,
    env: Env,
    /// Where its webhooks go (api-handler, once it exists).
    pub courier: crate::webhooks::Courier,
}

/// How a call ends on the wire.
enum Wire {
    Answer(StatusCode, Value),
    NoAnswer { sent: bool, reason: &'static str },
}

impl SimGateway {
    pub fn new(env: Env) -> Self {
        Self {
            books: Arc::new(Mutex::new(Books::default())),
            env,
            courier: crate::webhooks::Courier::default(),
        }
    }

    fn books(&self) -> MutexGuard<'_, Books> {
        self.books.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The gateway's record of `payment_id` now, if it has one.
    pub fn charge_of(&self, payment_id: &PaymentId) -> Option<ChargeView> {
        let now_ms = self.env.now_ms();
        let books = self.books();
        let id = payment_id.to_string();
        let charge = books.charges.get(&id)?;
        let refunded = books
            .refunds
            .values()
            .filter(|refund| refund.payment_id == id)
            .map(|refund| refund.amount.amount())
            .sum();
        Some(ChargeView {
            status: charge.status_at(now_ms),
            amount: charge.amount,
            refunded,
        })
    }

    /// Refunds the gateway paid out, by refund id.
    pub fn refunded(&self, refund_id: &RefundId) -> Option<Money> {
        let books = self.books();
        books
            .refunds
            .get(&refund_id.to_string())
            .map(|refund| refund.amount)
    }

    fn next_reference(&self, prefix: &str) -> String {
        let mut books = self.books();
        books.references += 1;
        format!("{prefix}{:08}", books.references)
    }

    /// Runs one call: latency, faults around `act` (the gateway's own
    /// processing, which returns its answer), and the adapter's timeout.
    async fn exchange(
        &self,
        subject: &str,
        operation: &str,
        write: bool,
        act: impl FnOnce(&Self) -> (StatusCode, Value) + Send + 'static,
    ) -> Wire {
        // Writes carry an idempotency key (the payment or refund id): a second
        // request under it while the first is being processed gets 409.
        let key = write.then(|| subject.to_owned());
        let env = &self.env;
        if env.roll(Fault::GatewayDown) {
            env.latency(1..=30).await;
            env.trace(subject, format!("gateway {operation}: connection refused"));
            return Wire::NoAnswer {
                sent: false,
                reason: "connection refused (simulated)",
            };
        }
        let slow = env.roll(Fault::GatewaySlow);
        let latency_ms = env.range(if slow { SLOW_LATENCY_MS } else { LATENCY_MS });
        let fails_first = env.roll(Fault::Gateway5xx);
        let timeout_after = write && env.roll(Fault::GatewayCaptureThenTimeout);
        let error_after = write && env.roll(Fault::GatewayCaptureThen5xx);
        let arrive_ms = latency_ms / 2;
        if fails_first {
            self.sleep_ms(latency_ms.min(REQUEST_TIMEOUT_MS)).await;
            // Either the service is down (503), or it failed on the request
            // without recording it (500): the adapter cannot tell a 500 from
            // a crash after capturing, so for a write it is ambiguous.
            let (status, code) = if env.chance(1, 2) {
                (StatusCode::SERVICE_UNAVAILABLE, "SERVICE_UNAVAILABLE")
            } else {
                (StatusCode::INTERNAL_SERVER_ERROR, "GATEWAY_ERROR")
            };
            env.trace(
                subject,
                format!("gateway {operation}: {status}, nothing recorded"),
            );
            let body = error_body(code, "simulated gateway failure");
            return Wire::Answer(status, body);
        }
        if latency_ms > REQUEST_TIMEOUT_MS {
            // The adapter gives up first; the request still arrives and is processed.
            let this = self.clone();
            let subject_owned = subject.to_owned();
            let operation_owned = operation.to_owned();
            let _detached = env.spawn(async move {
                this.sleep_ms(arrive_ms).await;
                let ((status, _), held) = this.arrive(key.as_deref(), act);
                this.depart(key.as_deref().filter(|_| held));
                this.env.trace(
                    &subject_owned,
                    format!("gateway {operation_owned}: processed late, {status}"),
                );
            });
            self.sleep_ms(REQUEST_TIMEOUT_MS).await;
            env.trace(
                subject,
                format!("gateway {operation}: adapter timed out waiting"),
            );
            return Wire::NoAnswer {
                sent: true,
                reason: "request timed out (simulated)",
            };
        }
        self.sleep_ms(arrive_ms).await;
        let ((status, body), held) = self.arrive(key.as_deref(), act);
        self.sleep_ms(latency_ms - arrive_ms).await;
        self.depart(key.as_deref().filter(|_| held));
        if timeout_after {
            self.sleep_ms(REQUEST_TIMEOUT_MS.saturating_sub(latency_ms))
                .await;
            env.trace(
                subject,
                format!("gateway {operation}: {status}, then the answer was lost"),
            );
            return Wire::NoAnswer {
                sent: true,
                reason: "connection reset after sending (simulated)",
            };
        }
        if error_after {
            env.trace(
                subject,
                format!("gateway {operation}: {status}, then a proxy answered 502"),
            );
            let body = error_body("BAD_GATEWAY", "upstream connection closed (simulated)");
            return Wire::Answer(StatusCode::BAD_GATEWAY, body);
        }
        env.trace(subject, format!("gateway {operation}: {status}"));
        Wire::Answer(status, body)
    }

    async fn sleep_ms(&self, ms: u64) {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }

    /// A new charge's outcome, drawn from the seed's plan.
    fn decide(&self) -> (ChargeStatus, u64, ChargeStatus) {
        let env = &self.env;
        let now_ms = env.now_ms();
        let final_status = if env.chance(1, 5) {
            ChargeStatus::Declined
        } else {
            ChargeStatus::Approved
        };
        if env.roll(Fault::GatewayLongPending) {
            (
                ChargeStatus::Pending,
                now_ms + env.range(60_000..=900_000),
                final_status,
            )
        } else if env.roll(Fault::GatewayPending) {
            (
                ChargeStatus::Pending,
                now_ms + env.range(500..=25_000),
                final_status,
            )
        } else if env.roll(Fault::GatewayDecline) {
            (ChargeStatus::Declined, now_ms, ChargeStatus::Declined)
        } else {
            (ChargeStatus::Approved, now_ms, ChargeStatus::Approved)
        }
    }

    fn process_charge(&self, payment_id: &str, amount: Money) -> (StatusCode, Value) {
        let now_ms = self.env.now_ms();
        if let Some(reference) = self.books().canceled.get(payment_id) {
            return (
                StatusCode::PAYMENT_REQUIRED,
                canceled_body(payment_id, reference),
            );
        }
        let existing = self.books().charges.get(payment_id).cloned();
        let charge = match existing {
            Some(charge) if charge.amount != amount => {
                let body = error_body(
                    "IDEMPOTENCY_MISMATCH",
                    "different amount for this paymentId",
                );
                return (StatusCode::UNPROCESSABLE_ENTITY, body);
            }
            Some(charge) => charge,
            None => {
                let (status, resolves_at_ms, final_status) = self.decide();
                let charge = Charge {
                    amount,
                    status,
                    resolves_at_ms,
                    final_status,
                    reference: self.next_reference("gw_"),
                };
                self.books()
                    .charges
                    .insert(payment_id.to_owned(), charge.clone());
                let (event_type, delay_ms) = match (charge.status, charge.final_status) {
                    (ChargeStatus::Pending, ChargeStatus::Approved) => (
                        "charge.succeeded",
                        charge.resolves_at_ms.saturating_sub(now_ms),
                    ),
                    (ChargeStatus::Pending, _) => (
                        "charge.failed",
                        charge.resolves_at_ms.saturating_sub(now_ms),
                    ),
                    (ChargeStatus::Declined, _) => ("charge.failed", 0),
                    _ => ("charge.succeeded", 0),
                };
                self.courier
                    .send_later(&self.env, event_type, payment_id, None, delay_ms);
                charge
            }
        };
        let status = charge.status_at(now_ms);
        let http = match status {
            ChargeStatus::Approved | ChargeStatus::NotFound => StatusCode::OK,
            ChargeStatus::Pending => StatusCode::ACCEPTED,
            ChargeStatus::Declined => StatusCode::PAYMENT_REQUIRED,
        };
        (http, charge_body(payment_id, &charge, status))
    }

    /// Closes `payment_id`: a charge keeps its status, an unknown payment
    /// is recorded as canceled (every later charge is declined).
    fn process_cancel(&self, payment_id: &str) -> (StatusCode, Value) {
        let now_ms = self.env.now_ms();
        if let Some(charge) = self.books().charges.get(payment_id) {
            let status = charge.status_at(now_ms);
            return (StatusCode::OK, charge_body(payment_id, charge, status));
        }
        let existing = self.books().canceled.get(payment_id).cloned();
        let reference = match existing {
            Some(reference) => reference,
            None => {
                let reference = self.next_reference("gw_");
                self.books()
                    .canceled
                    .insert(payment_id.to_owned(), reference.clone());
                reference
            }
        };
        (StatusCode::OK, canceled_body(payment_id, &reference))
    }

    fn process_refund(
        &self,
        refund_id: &str,
        payment_id: &str,
        amount: Money,
    ) -> (StatusCode, Value) {
        let now_ms = self.env.now_ms();
        let mut books = self.books();
        if let Some(refund) = books.refunds.get(refund_id) {
            if refund.payment_id != payment_id || refund.amount != amount {
                return (
                    StatusCode::UNPROCESSABLE_ENTITY,
                    error_body(
                        "IDEMPOTENCY_MISMATCH",
                        "different refund under this refundId",
                    ),
                );
            }
            return (StatusCode::OK, refund_body(refund_id, refund));
        }
        if books.refused_refunds.contains(refund_id) || self.env.roll(Fault::GatewayRefundRefused) {
            books.refused_refunds.insert(refund_id.to_owned());
            let body = error_body("REFUND_REFUSED", "the issuer refused the refund");
            return (StatusCode::UNPROCESSABLE_ENTITY, body);
        }
        let Some(charge) = books.charges.get(payment_id).cloned() else {
            return (
                StatusCode::NOT_FOUND,
                error_body("PAYMENT_NOT_FOUND", "no such payment"),
            );
        };
        if charge.status_at(now_ms) != ChargeStatus::Approved {
            return (
                StatusCode::CONFLICT,
                error_body("PAYMENT_NOT_CAPTURED", "not captured"),
            );
        }
        let refunded: Decimal = books
            .refunds
            .values()
            .filter(|refund| refund.payment_id == payment_id)
            .map(|refund| refund.amount.amount())
            .sum();
        if refunded + amount.amount() > charge.amount.amount() {
            let body = error_body("REFUND_EXCEEDS_CAPTURE", "more than captured");
            return (StatusCode::UNPROCESSABLE_ENTITY, body);
        }
        books.references += 1;
        let refund = GatewayRefundRecord {
            payment_id: payment_id.to_owned(),
            amount,
            reference: format!("gwr_{:08}", books.references),
        };
        let body = refund_body(refund_id, &refund);
        books.refunds.insert(refund_id.to_owned(), refund);
        drop(books);
        self.courier.send_later(
            &self.env,
            "refund.succeeded",
            payment_id,
            Some(refund_id),
            0,
        );
        (StatusCode::OK, body)
    }

    /// A request reaches the gateway: 409 if its key is already in flight
    /// (then the key stays the first request's), else the key is held while
    /// the request is processed and answered. Returns whether it holds the key.
    fn arrive(
        &self,
        key: Option<&str>,
        act: impl FnOnce(&Self) -> (StatusCode, Value),
    ) -> ((StatusCode, Value), bool) {
        if let Some(key) = key
            && !self.books().in_flight.insert(key.to_owned())
        {
            return (in_progress_with_holder(), false);
        }
        (act(self), key.is_some())
    }

    /// The answer leaves the gateway: the key is free again.
    fn depart(&self, key: Option<&str>) {
        if let Some(key) = key {
            self.books().in_flight.remove(key);
        }
    }
}

fn error_body(code: &str, message: &str) -> Value {
    json!({"error": {"code": code, "message": message}})
}

fn charge_body(payment_id: &str, charge: &Charge, status: ChargeStatus) -> Value {
    let mut body = json!({
        "paymentId": payment_id,
        "status": status.as_str(),
        "reference": charge.reference,
        "amount": charge.amount.amount_text(),
        "currency": charge.amount.currency().code(),
    });
    if status == ChargeStatus::Declined {
        body["declineCode"] = json!("card_declined");
    }
    body
}

fn canceled_body(payment_id: &str, reference: &str) -> Value {
    json!({
        "paymentId": payment_id,
        "status": "DECLINED",
        "reference": reference,
        "declineCode": DECLINE_CODE_CANCELED,
    })
}

fn refund_body(refund_id: &str, refund: &GatewayRefundRecord) -> Value {
    json!({
        "refundId": refund_id,
        "paymentId": refund.payment_id,
        "status": "REFUNDED",
        "amount": refund.amount.amount_text(),
        "currency": refund.amount.currency().code(),
        "reference": refund.reference,
    })
}

fn bytes(body: &Value) -> Result<Vec<u8>, String> {
    serde_json::to_vec(body).map_err(|err| err.to_string())
}

fn in_progress_with_holder() -> (StatusCode, Value) {
    let body = error_body(
        "IDEMPOTENCY_IN_PROGRESS",
        "a request with this key is in flight",
    );
    (StatusCode::CONFLICT, body)
}

#[async_trait]
impl PaymentGateway for SimGateway {
    async fn charge(
        &self,
        payment_id: &PaymentId,
        _user_id: &UserId,
        amount: &Money,
    ) -> Result<GatewayCharge, GatewayError> {
        let id = payment_id.to_string();
        let (key, amount) = (id.clone(), *amount);
        let act = move |gateway: &SimGateway| gateway.process_charge(&key, amount);
        match self.exchange(&id, "charge", true, act).await {
            Wire::Answer(status, body) => charge_answer(status, bytes(&body), &id),
            Wire::NoAnswer { sent, reason } => Err(no_answer(sent, true, reason.to_owned())),
        }
    }

    async fn status(&self, payment_id: &PaymentId) -> Result<Option<GatewayCharge>, GatewayError> {
        let id = payment_id.to_string();
        let key = id.clone();
        let act = move |gateway: &SimGateway| {
            let now_ms = gateway.env.now_ms();
            let books = gateway.books();
            if let Some(reference) = books.canceled.get(&key) {
                return (StatusCode::OK, canceled_body(&key, reference));
            }
            match books.charges.get(&key) {
                Some(charge) => {
                    let status = charge.status_at(now_ms);
                    (StatusCode::OK, charge_body(&key, charge, status))
                }
                None => (
                    StatusCode::NOT_FOUND,
                    error_body("PAYMENT_NOT_FOUND", "no such payment"),
                ),
            }
        };
        match self.exchange(&id, "status", false, act).await {
            Wire::Answer(status, body) => status_answer(status, bytes(&body), &id),
            Wire::NoAnswer { sent, reason } => Err(no_answer(sent, false, reason.to_owned())),
        }
    }

    async fn cancel(&self, payment_id: &PaymentId) -> Result<GatewayCharge, GatewayError> {
        let id = payment_id.to_string();
        let key = id.clone();
        let act = move |gateway: &SimGateway| gateway.process_cancel(&key);
        match self.exchange(&id, "cancel", true, act).await {
            Wire::Answer(status, body) => cancel_answer(status, bytes(&body), &id),
            Wire::NoAnswer { sent, reason } => Err(no_answer(sent, true, reason.to_owned())),
        }
    }

    async fn refund(
        &self,
        refund_id: &RefundId,
        payment_id: &PaymentId,
        amount: &Money,
    ) -> Result<GatewayRefund, GatewayError> {
        let id = refund_id.to_string();
        let (key, payment, amount) = (id.clone(), payment_id.to_string(), *amount);
        let act = move |gateway: &SimGateway| gateway.process_refund(&key, &payment, amount);
        match self.exchange(&id, "refund", true, act).await {
            Wire::Answer(status, body) => refund_answer(status, bytes(&body), &id),
            Wire::NoAnswer { sent, reason } => Err(no_answer(sent, true, reason.to_owned())),
        }
    }
}
