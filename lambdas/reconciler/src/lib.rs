//! `reconciler`: settles what the sagas could not. It sweeps the open index
//! (`PaymentRepo::open_payments`, `RefundRepo::open_refunds`: everything not
//! settled), asks the gateway, the source of truth about money that moved,
//! and resolves each item exactly once with the same idempotent steps the
//! sagas use:
//!
//! - a payment RECONCILIATION_REQUIRED, or PENDING/PROCESSING past its
//!   saga's worst case (an execution that ended without settling it, or one
//!   that never started), is closed at the gateway (`PaymentGateway::cancel`,
//!   the only answer that allows giving a debit back): captured → COMPLETED
//!   (only when the wallet holds its debit); declined or never charged →
//!   the debit given back (`pay_X#COMPENSATION`, once) and FAILED; still
//!   pending or no answer → left as it is and counted;
//! - a refund RECONCILIATION_REQUIRED, or REQUESTED/GATEWAY_REFUNDED past its
//!   saga's retries (a saga that never started, or gave up), is finished by
//!   `refund_service::settle`: refunded at the gateway (idempotent per
//!   refundId) and credited (`ref_Y#REFUND`, once); a definite refusal
//!   fails it and gives its reservation back.
//! - a young PROCESSING payment whose saga waits for the gateway's word
//!   (`AwaitGatewayWebhook`, its task token kept with the payment) is left
//!   to its saga, but the saga is woken: the gateway is asked again and a
//!   final answer (APPROVED, DECLINED) is sent to it (`SagaCallbacks`), a
//!   pending one keeps it waiting. A webhook's targeted run is what makes
//!   this prompt; the saga moves the money with its own steps.
//!
//! Why it is safe beside live sagas and beside another copy of itself: each
//! step is idempotent by its id and every status change is conditioned on
//! the version read, so two actors doing the same step do it once; and the
//! decisive step for a payment is `cancel`, after which the gateway never
//! captures it, so a saga and the reconciler can never reach different
//! verdicts. The age thresholds only keep it from duplicating a saga's
//! work, they are not what makes it correct (the simulator runs it at any
//! age, including zero).
//!
//! Each run is bounded (`itemCountMax`, spread over the index's shards) and
//! answers a [`ReconcileReport`]; anything it cannot settle is counted in the
//! `ReconciliationLeft` metric (alarmed) and listed for a person.

use std::collections::BTreeMap;
use std::sync::Arc;

use lambda_runtime::LambdaEvent;
use serde::{Deserialize, Serialize};
use shared::domain::{Money, Movement, Payment, PaymentStatus, Refund, RefundStatus, Timestamp};
pub use shared::events::ReconcileRequest;
use shared::events::{ChargeStatus, GatewayReply, InvoiceCommand, WalletCommand};
use shared::ports::{
    Callback, DECLINE_CODE_CANCELED, OPEN_SHARD_COUNT, PAGE_LIMIT_MAX, SagaCallbacks,
};
use shared::{ErrorType, StoreError, TaskError, observability};
use tracing::{Instrument, error, info, warn};

mod aws;
pub use aws::StepFunctionsCallbacks;

pub const FUNCTION_NAME: &str = "reconciler";
/// Metric (namespace `PaymentSaga`, dimension `Service`) of each item a run
/// could not settle: the gateway cannot say yet, or the books disagree.
pub const METRIC_RECONCILIATION_LEFT: &str = "ReconciliationLeft";
/// Metric of each payment or refund a run settled.
pub const METRIC_RECONCILED: &str = "Reconciled";
/// The payment saga's `TimeoutSeconds`: no execution of it runs longer
/// (checked against `state-machine/payment-saga.asl.json`).
pub const PAYMENT_SAGA_TIMEOUT_SECONDS: u32 = 1_800;
/// The refund saga's `TimeoutSeconds` (checked against its ASL file).
pub const REFUND_SAGA_TIMEOUT_SECONDS: u32 = 3_600;
/// A PENDING/PROCESSING payment younger than this is left to its saga: the
/// saga's timeout plus a minute for its start.
pub const PAYMENT_AGE_MIN_SECONDS_DEFAULT: u32 = PAYMENT_SAGA_TIMEOUT_SECONDS + 60;
const _: () = assert!(PAYMENT_AGE_MIN_SECONDS_DEFAULT > PAYMENT_SAGA_TIMEOUT_SECONDS);
/// A REQUESTED/GATEWAY_REFUNDED refund younger than this is left to its
/// saga: longer than its retries take (about ten minutes). Acting sooner
/// would be safe (refund steps only move forward) but would race the saga
/// for nothing; a refund whose saga never started waits this long.
pub const REFUND_AGE_MIN_SECONDS_DEFAULT: u32 = 15 * 60;
/// Items one run looks at, at most (payments and refunds together).
pub const ITEM_COUNT_MAX_DEFAULT: u32 = 320;
/// Tries at one page of the open index while the store answers a
/// transient error.
pub const LIST_ATTEMPT_COUNT_MAX: u32 = 3;
/// Failure reason of a payment the reconciler found never charged.
pub const REASON_NOT_CHARGED: &str = "ReconciledNotCharged";

/// The reconciler's ports.
pub struct Deps {
    /// The payments, refunds and wallets, and the gateway: refund-service's
    /// ports, so the refund steps run through `refund_service::settle` on
    /// this one value.
    pub ports: refund_service::Deps,
    /// Wakes a payment saga waiting for the gateway's word.
    pub sagas: Arc<dyn SagaCallbacks>,
}

/// Items a targeted request may name, at most.
pub const TARGET_COUNT_MAX: usize = 20;

/// What became of one item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Outcome {
    /// Settled by this run, as `detail` says.
    Resolved,
    /// A dry run: what a real run would have done.
    WouldResolve,
    /// Young enough to be its saga's still: left alone.
    InFlight,
    /// Settled by someone else between the listing and the re-read.
    Settled,
    /// The gateway could not say yet (still pending, no answer): left, and
    /// asked again by the next run.
    Unknown,
    /// The books disagree (the gateway captured what the wallet gave back,
    /// the wallet refuses a refund credit): left for a person.
    Mismatch,
}

impl Outcome {
    /// Whether the item is left unsettled for the next run or a person.
    pub fn is_left(self) -> bool {
        matches!(self, Self::Unknown | Self::Mismatch)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Kind {
    Payment,
    Refund,
}

/// One item the run looked at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Finding {
    pub kind: Kind,
    /// The payment or refund id.
    pub id: String,
    /// The payment a refund is of (absent for payments).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_id: Option<String>,
    pub amount: Money,
    /// Its status when the run read it.
    pub status: String,
    /// Its status after the run (absent when unchanged).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub now: Option<String>,
    pub outcome: Outcome,
    /// How it was resolved, or why it was left.
    pub detail: String,
}

/// What one run did: every item it looked at and the counts per outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReconcileReport {
    pub started_at: Timestamp,
    pub finished_at: Timestamp,
    pub dry_run: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<Timestamp>,
    pub counts: BTreeMap<Outcome, u32>,
    pub findings: Vec<Finding>,
    /// Shards of the open index the store would not give this run (each
    /// counted as left): the next run reads them again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unread: Vec<String>,
    /// The run's item budget ran out before the index did: the next run
    /// continues.
    pub truncated: bool,
}

impl ReconcileReport {
    /// Items left unsettled (for the next run or a person), shards not
    /// read included.
    pub fn left_count(&self) -> u32 {
        let unread = u32::try_from(self.unread.len()).unwrap_or(u32::MAX);
        self.counts
            .iter()
            .filter(|(outcome, _)| outcome.is_left())
            .map(|(_, count)| *count)
            .sum::<u32>()
            .saturating_add(unread)
    }

    fn push(&mut self, finding: Finding) {
        *self.counts.entry(finding.outcome).or_default() += 1;
        self.findings.push(finding);
    }
}

/// The request with its defaults filled in.
#[derive(Debug, Clone, Copy)]
struct Settings {
    dry_run: bool,
    since: Option<Timestamp>,
    payment_age_min_seconds: i64,
    refund_age_min_seconds: i64,
    /// Items per shard and kind, at least one.
    per_shard_count_max: u32,
}

impl Settings {
    fn from_request(request: &ReconcileRequest) -> Self {
        let item_count_max = request.item_count_max.unwrap_or(ITEM_COUNT_MAX_DEFAULT);
        let slots = OPEN_SHARD_COUNT.saturating_mul(2);
        Self {
            dry_run: request.dry_run,
            since: request.since,
            payment_age_min_seconds: i64::from(
                request
                    .payment_age_min_seconds
                    .unwrap_or(PAYMENT_AGE_MIN_SECONDS_DEFAULT),
            ),
            refund_age_min_seconds: i64::from(
                request
                    .refund_age_min_seconds
                    .unwrap_or(REFUND_AGE_MIN_SECONDS_DEFAULT),
            ),
            per_shard_count_max: item_count_max.div_ceil(slots).max(1),
        }
    }
}

pub async fn handle(
    deps: &Deps,
    event: LambdaEvent<ReconcileRequest>,
) -> Result<ReconcileReport, TaskError> {
    let span = shared::invocation_span!(FUNCTION_NAME, event.context, "-");
    async move {
        let report = reconcile(deps, &event.payload, Timestamp::now()).await?;
        let left = report.left_count();
        let counts = serde_json::to_string(&report.counts).unwrap_or_default();
        // The whole report, one JSON line: on AWS the log is where a
        // scheduled run's report is kept.
        info!(report = %serde_json::to_string(&report).unwrap_or_default(), "reconciliation report");
        if left > 0 {
            warn!(
                left,
                counts,
                truncated = report.truncated,
                "reconciliation left items open"
            );
        } else {
            info!(counts, truncated = report.truncated, "reconciliation done");
        }
        Ok(report)
    }
    .instrument(span)
    .await
}

/// One run: the open payments, then the open refunds, shard by shard, each
/// shard at most its share of the item budget, oldest first.
pub async fn reconcile(
    deps: &Deps,
    request: &ReconcileRequest,
    now: Timestamp,
) -> Result<ReconcileReport, TaskError> {
    let settings = Settings::from_request(request);
    let mut report = ReconcileReport {
        started_at: now,
        finished_at: now,
        dry_run: settings.dry_run,
        since: settings.since,
        counts: BTreeMap::new(),
        findings: Vec::new(),
        unread: Vec::new(),
        truncated: false,
    };
    if !request.payment_ids.is_empty() || !request.refund_ids.is_empty() {
        targets(deps, request, &mut report, now).await;
    } else {
        sweep(deps, &settings, &mut report, Kind::Payment, now).await;
        sweep(deps, &settings, &mut report, Kind::Refund, now).await;
    }
    for finding in &report.findings {
        if finding.outcome.is_left() {
            observability::emit_count(METRIC_RECONCILIATION_LEFT, FUNCTION_NAME);
        } else if finding.outcome == Outcome::Resolved {
            observability::emit_count(METRIC_RECONCILED, FUNCTION_NAME);
        }
    }
    for _ in &report.unread {
        observability::emit_count(METRIC_RECONCILIATION_LEFT, FUNCTION_NAME);
    }
    report.finished_at = Timestamp::now().max(now);
    Ok(report)
}

/// Every shard of one kind's open index: pages of at most the shard's share
/// of the budget, each item settled in turn. A page the store will not give
/// (after [`LIST_ATTEMPT_COUNT_MAX`] tries) is noted in `report.unread` and
/// the sweep goes on with the next shard.
async fn sweep(
    deps: &Deps,
    settings: &Settings,
    report: &mut ReconcileReport,
    kind: Kind,
    now: Timestamp,
) {
    for shard in 0..OPEN_SHARD_COUNT {
        let mut cursor: Option<String> = None;
        let mut budget = settings.per_shard_count_max;
        while budget > 0 {
            let limit = budget.min(PAGE_LIMIT_MAX);
            let mut page = list(deps, settings, kind, shard, limit, cursor.as_deref()).await;
            for _ in 1..LIST_ATTEMPT_COUNT_MAX {
                if !page
                    .as_ref()
                    .is_err_and(|err| err.error_type().is_retryable())
                {
                    break;
                }
                page = list(deps, settings, kind, shard, limit, cursor.as_deref()).await;
            }
            let (items, next) = match page {
                Ok(page) => page,
                Err(err) => {
                    warn!(kind = ?kind, shard, error = %err, "open index shard not read");
                    report.unread.push(format!("{kind:?} shard {shard}: {err}"));
                    break;
                }
            };
            for item in items {
                budget = budget.saturating_sub(1);
                let finding = match item {
                    Open::Payment(payment) => payment_finding(deps, settings, payment, now).await,
                    Open::Refund(refund) => refund_finding(deps, settings, refund, now).await,
                };
                report.push(finding);
            }
            cursor = next;
            if cursor.is_none() {
                break;
            }
        }
        report.truncated |= cursor.is_some();
    }
}

/// The items a targeted request names (at most [`TARGET_COUNT_MAX`] of
/// each), read and settled at any age; one already settled is skipped, one
/// not found (the gateway knows what we do not) or not readable is noted in
/// `unread`, which counts as left.
async fn targets(
    deps: &Deps,
    request: &ReconcileRequest,
    report: &mut ReconcileReport,
    now: Timestamp,
) {
    let settings = Settings {
        payment_age_min_seconds: 0,
        refund_age_min_seconds: 0,
        ..Settings::from_request(request)
    };
    for payment_id in request.payment_ids.iter().take(TARGET_COUNT_MAX) {
        match deps.ports.payments.get(payment_id).await {
            Ok(Some(payment)) if payment.is_open() => {
                report.push(payment_finding(deps, &settings, payment, now).await);
            }
            Ok(Some(_)) => {}
            Ok(None) => report
                .unread
                .push(format!("payment {payment_id}: not found")),
            Err(err) => report.unread.push(format!("payment {payment_id}: {err}")),
        }
    }
    for refund_id in request.refund_ids.iter().take(TARGET_COUNT_MAX) {
        match deps.ports.refunds.get(refund_id).await {
            Ok(Some(refund)) if refund.is_open() => {
                report.push(refund_finding(deps, &settings, refund, now).await);
            }
            Ok(Some(_)) => {}
            Ok(None) => report.unread.push(format!("refund {refund_id}: not found")),
            Err(err) => report.unread.push(format!("refund {refund_id}: {err}")),
        }
    }
}

/// An item of the open index.
enum Open {
    Payment(Payment),
    Refund(Refund),
}

/// One page of one kind's open index, and the cursor of the next.
async fn list(
    deps: &Deps,
    settings: &Settings,
    kind: Kind,
    shard: u32,
    limit: u32,
    cursor: Option<&str>,
) -> Result<(Vec<Open>, Option<String>), StoreError> {
    let since = settings.since;
    Ok(match kind {
        Kind::Payment => {
            let page = deps
                .ports
                .payments
                .open_payments(shard, since, limit, cursor)
                .await?;
            (
                page.items.into_iter().map(Open::Payment).collect(),
                page.cursor,
            )
        }
        Kind::Refund => {
            let page = deps
                .ports
                .refunds
                .open_refunds(shard, since, limit, cursor)
                .await?;
            (
                page.items.into_iter().map(Open::Refund).collect(),
                page.cursor,
            )
        }
    })
}

/// Whether asking again later may settle it: a transient failure, or a
/// gateway answer lost on the way (the next run asks the same idempotent
/// question again, which settles it either way).
fn asks_again(error_type: ErrorType) -> bool {
    error_type.is_retryable() || error_type == ErrorType::GatewayAmbiguous
}

fn age_seconds(created_at: Timestamp, now: Timestamp) -> i64 {
    now.unix_seconds().saturating_sub(created_at.unix_seconds())
}

// ---------------------------------------------------------------------------------------
// Payments
// ---------------------------------------------------------------------------------------

/// What one payment needs, and what this run did about it.
async fn payment_finding(
    deps: &Deps,
    settings: &Settings,
    listed: Payment,
    now: Timestamp,
) -> Finding {
    let finding = |status: PaymentStatus, outcome, detail: String| Finding {
        kind: Kind::Payment,
        id: listed.payment_id.to_string(),
        payment_id: None,
        amount: listed.amount,
        status: status.as_str().to_owned(),
        now: None,
        outcome,
        detail,
    };
    // The index lags and others write: decide on what is stored now.
    let payment = match deps.ports.payments.get(&listed.payment_id).await {
        Ok(Some(payment)) => payment,
        Ok(None) => {
            let detail = "listed but not found".to_owned();
            return finding(listed.status, Outcome::Mismatch, detail);
        }
        Err(err) => return finding(listed.status, Outcome::Unknown, format!("store: {err}")),
    };
    if !payment.is_open() {
        let detail = format!("settled since it was listed ({})", payment.status);
        return finding(listed.status, Outcome::Settled, detail);
    }
    let age = age_seconds(payment.created_at, now);
    let waiting = payment
        .wait_token
        .as_deref()
        .filter(|_| payment.status == PaymentStatus::Processing && !settings.dry_run);
    if let Some(token) = waiting {
        match wake(deps, &payment, token).await {
            Ok(detail) => return finding(payment.status, Outcome::InFlight, detail),
            Err(detail) => info!(paymentId = %payment.payment_id, detail, "no saga woken"),
        }
    }
    if payment.status != PaymentStatus::ReconciliationRequired
        && age < settings.payment_age_min_seconds
    {
        let detail = format!("{age} s old: left to its saga");
        return finding(payment.status, Outcome::InFlight, detail);
    }
    let (outcome, detail) = if settings.dry_run {
        predict_payment(deps, &payment).await
    } else {
        resolve_payment(deps, &payment).await
    };
    let mut found = finding(payment.status, outcome, detail);
    if outcome == Outcome::Resolved {
        found.now = deps
            .ports
            .payments
            .get(&payment.payment_id)
            .await
            .ok()
            .flatten()
            .map(|now| now.status.as_str().to_owned());
    }
    if outcome.is_left() {
        warn!(paymentId = %payment.payment_id, status = %payment.status, outcome = ?outcome,
            detail = %found.detail, "payment left open by the reconciler");
    } else {
        info!(paymentId = %payment.payment_id, status = %payment.status, outcome = ?outcome,
            detail = %found.detail, "payment reconciled");
    }
    found
}

/// A saga waiting for the gateway's word (`AwaitGatewayWebhook`) gets the
/// gateway's final answer, asked again here: a webhook only says when to
/// ask. Still pending: a heartbeat keeps the saga waiting. It moves no money
/// and no status itself; the woken saga does, with its own steps. `Err`: no
/// saga took it (none waits any more, or no answer), so the payment is
/// treated like any other.
async fn wake(deps: &Deps, payment: &Payment, token: &str) -> Result<String, String> {
    let charge = match deps.ports.gateway.status(&payment.payment_id).await {
        Ok(Some(charge)) => charge,
        Ok(None) => return Err("the gateway has no charge for it yet".to_owned()),
        Err(err) => return Err(format!("gateway: {err}")),
    };
    let sent = match charge.status {
        ChargeStatus::Approved | ChargeStatus::Declined => {
            let answer = GatewayReply {
                status: charge.status,
                gateway_reference: Some(charge.reference),
                decline_code: charge.decline_code,
                checks: 0,
            };
            deps.sagas.answer(token, &answer).await
        }
        ChargeStatus::Pending | ChargeStatus::NotFound => deps.sagas.heartbeat(token).await,
    };
    let status = charge.status.as_str();
    match sent {
        Ok(Callback::Delivered) if charge.status == ChargeStatus::Pending => {
            Ok("the gateway still has it pending: its saga waits on".to_owned())
        }
        Ok(Callback::Delivered) => Ok(format!("its saga woken: the gateway answers {status}")),
        Ok(Callback::NotWaiting) => Err(format!(
            "the gateway answers {status}; its saga no longer waits"
        )),
        Err(err) => Err(format!(
            "the gateway answers {status}; its saga not reached: {err}"
        )),
    }
}

/// A dry run asks the gateway's status (which changes nothing) instead of
/// closing the payment there.
async fn predict_payment(deps: &Deps, payment: &Payment) -> (Outcome, String) {
    match deps.ports.gateway.status(&payment.payment_id).await {
        Ok(Some(charge)) if charge.status == ChargeStatus::Approved => (
            Outcome::WouldResolve,
            format!(
                "would complete it: the gateway captured it ({})",
                charge.reference
            ),
        ),
        Ok(Some(charge)) if charge.status == ChargeStatus::Pending => (
            Outcome::Unknown,
            "the gateway still has it pending".to_owned(),
        ),
        Ok(_) => (
            Outcome::WouldResolve,
            "would close it at the gateway, give back its debit and fail it: never captured"
                .to_owned(),
        ),
        Err(err) => (Outcome::Unknown, format!("gateway: {err}")),
    }
}

/// Closes the payment at the gateway and settles it by the gateway's final
/// word.
async fn resolve_payment(deps: &Deps, payment: &Payment) -> (Outcome, String) {
    let charge = match deps.ports.gateway.cancel(&payment.payment_id).await {
        Ok(charge) => charge,
        Err(err) => return (Outcome::Unknown, format!("gateway: {err}")),
    };
    let result = match charge.status {
        ChargeStatus::Approved => complete(deps, payment, charge.reference).await,
        ChargeStatus::Declined => {
            let declined = charge
                .decline_code
                .as_deref()
                .filter(|code| *code != DECLINE_CODE_CANCELED);
            fail(deps, payment, declined).await
        }
        ChargeStatus::Pending | ChargeStatus::NotFound => Ok((
            Outcome::Unknown,
            format!("the gateway answers {}", charge.status.as_str()),
        )),
    };
    result.unwrap_or_else(|err| {
        let outcome = if asks_again(err.error_type) {
            Outcome::Unknown
        } else {
            error!(paymentId = %payment.payment_id, errorType = %err.error_type,
                error = %err.message, "reconciling the payment was refused");
            Outcome::Mismatch
        };
        (outcome, format!("{}: {}", err.error_type, err.message))
    })
}

/// The gateway captured it: COMPLETED, if the wallet holds its debit (and
/// has not given it back). Otherwise the books disagree: for a person.
async fn complete(
    deps: &Deps,
    payment: &Payment,
    reference: String,
) -> Result<(Outcome, String), TaskError> {
    let (user, id, amount) = (payment.user_id.clone(), payment.payment_id, payment.amount);
    let debit = Movement::debit(user.clone(), id, amount);
    let key = debit.wallet_key();
    let debited = deps.ports.wallets.entry(&key, &debit.tx_id()).await?;
    let given_back = deps
        .ports
        .wallets
        .entry(&key, &Movement::compensation(user, id, amount).tx_id())
        .await?;
    if debited.is_none() || given_back.is_some() {
        let what = if debited.is_none() {
            "holds no debit for it"
        } else {
            "gave its debit back"
        };
        error!(paymentId = %id, gatewayReference = %reference,
            "the gateway captured a payment whose wallet {what}");
        return Ok((
            Outcome::Mismatch,
            format!("the gateway captured it ({reference}) but the wallet {what}"),
        ));
    }
    let payments = deps.ports.payments.as_ref();
    if payment.status == PaymentStatus::Pending {
        invoice_processor::execute(payments, InvoiceCommand::MarkProcessing { payment_id: id })
            .await?;
    }
    let command = InvoiceCommand::Complete {
        payment_id: id,
        gateway_reference: reference.clone(),
    };
    invoice_processor::execute(payments, command).await?;
    Ok((
        Outcome::Resolved,
        format!("completed: the gateway captured it ({reference})"),
    ))
}

/// The gateway never captured it and never will (`cancel` closed it): its
/// debit, if any, given back once, then FAILED.
async fn fail(
    deps: &Deps,
    payment: &Payment,
    decline_code: Option<&str>,
) -> Result<(Outcome, String), TaskError> {
    let compensate = WalletCommand::Compensate {
        payment_id: payment.payment_id,
        user_id: payment.user_id.clone(),
        amount: payment.amount,
    };
    let reply = wallet_service::execute(deps.ports.wallets.as_ref(), compensate).await?;
    let reason = match decline_code {
        Some(_) => ErrorType::PaymentDeclined.as_str(),
        None => REASON_NOT_CHARGED,
    };
    let command = InvoiceCommand::Fail {
        payment_id: payment.payment_id,
        reason: reason.to_owned(),
        cause: Some("reconciled against the gateway".to_owned()),
    };
    invoice_processor::execute(deps.ports.payments.as_ref(), command).await?;
    let given_back = if reply.moved {
        format!("gave back {}", payment.amount)
    } else {
        "nothing was debited".to_owned()
    };
    let why = decline_code.map_or("never charged".to_owned(), |code| {
        format!("declined ({code})")
    });
    Ok((
        Outcome::Resolved,
        format!("failed: {why} at the gateway; {given_back}"),
    ))
}

// ---------------------------------------------------------------------------------------
// Refunds
// ---------------------------------------------------------------------------------------

async fn refund_finding(
    deps: &Deps,
    settings: &Settings,
    listed: Refund,
    now: Timestamp,
) -> Finding {
    let finding = |status: RefundStatus, outcome, detail: String| Finding {
        kind: Kind::Refund,
        id: listed.refund_id.to_string(),
        payment_id: Some(listed.payment_id.to_string()),
        amount: listed.amount,
        status: status.as_str().to_owned(),
        now: None,
        outcome,
        detail,
    };
    let refund = match deps.ports.refunds.get(&listed.refund_id).await {
        Ok(Some(refund)) => refund,
        Ok(None) => {
            let detail = "listed but not found".to_owned();
            return finding(listed.status, Outcome::Mismatch, detail);
        }
        Err(err) => return finding(listed.status, Outcome::Unknown, format!("store: {err}")),
    };
    if !refund.is_open() {
        let detail = format!("settled since it was listed ({})", refund.status.as_str());
        return finding(listed.status, Outcome::Settled, detail);
    }
    let age = age_seconds(refund.created_at, now);
    if refund.status != RefundStatus::ReconciliationRequired
        && age < settings.refund_age_min_seconds
    {
        let detail = format!("{age} s old: left to its saga");
        return finding(refund.status, Outcome::InFlight, detail);
    }
    if settings.dry_run {
        let detail = match refund.status {
            RefundStatus::GatewayRefunded => "would credit the wallet",
            _ => "would refund it at the gateway and credit the wallet",
        };
        return finding(refund.status, Outcome::WouldResolve, detail.to_owned());
    }
    let (outcome, detail, after) = resolve_refund(deps, &refund).await;
    if outcome.is_left() {
        warn!(refundId = %refund.refund_id, status = refund.status.as_str(), outcome = ?outcome,
            detail = %detail, "refund left open by the reconciler");
    } else {
        info!(refundId = %refund.refund_id, status = refund.status.as_str(), outcome = ?outcome,
            detail = %detail, "refund reconciled");
    }
    Finding {
        now: after
            .filter(|after| *after != refund.status)
            .map(|status| status.as_str().to_owned()),
        ..finding(refund.status, outcome, detail)
    }
}

async fn resolve_refund(deps: &Deps, refund: &Refund) -> (Outcome, String, Option<RefundStatus>) {
    match refund_service::settle(&deps.ports, refund.clone()).await {
        Ok(done) => match done.status {
            RefundStatus::Completed => (
                Outcome::Resolved,
                "completed: refunded at the gateway, wallet credited".to_owned(),
                Some(done.status),
            ),
            RefundStatus::Failed => (
                Outcome::Resolved,
                format!(
                    "failed: the gateway refused it ({}); its reservation was given back",
                    done.failure_reason.as_deref().unwrap_or("no reason")
                ),
                Some(done.status),
            ),
            status => (
                Outcome::Unknown,
                format!("still {}", status.as_str()),
                (status != refund.status).then_some(status),
            ),
        },
        Err(err) if asks_again(err.error_type) => (
            Outcome::Unknown,
            format!("{}: {}", err.error_type, err.message),
            None,
        ),
        Err(err) => {
            // The gateway paid out but the wallet refuses the credit: flag it
            // like the saga would (metric and alarm) and leave it to a person.
            let reason = err.error_type.as_str();
            let stored = match deps.ports.refunds.get(&refund.refund_id).await {
                Ok(Some(stored)) => stored,
                _ => refund.clone(),
            };
            let marked = refund_service::mark_reconciliation_required(
                &deps.ports,
                stored,
                reason,
                Some(&err.message),
            )
            .await;
            (
                Outcome::Mismatch,
                format!("{reason}: {}", err.message),
                marked.ok().map(|marked| marked.status),
            )
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
