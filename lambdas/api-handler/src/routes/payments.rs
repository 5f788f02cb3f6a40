//! `POST /payments`, `GET /payments/{paymentId}`, `GET /payments?userId=…`.

use std::time::Duration;

use aws_lambda_events::query_map::QueryMap;
use serde_json::json;
use shared::StoreError;
use shared::domain::{NewPayment, Payment, PaymentChange, PaymentId, PaymentStatus, Timestamp};
use shared::events::SagaInput;
use shared::ports::{PAGE_LIMIT_MAX, parse_payment_cursor};
use tracing::{error, info, warn};
use ulid::Ulid;

use crate::body::JsonObject;
use crate::error::{ApiError, Code};
use crate::http::{Request, Response};
use crate::idempotency::{self, Disposition, IN_PROGRESS_STALE_SECONDS, Outcome};
use crate::ports::SagaStartError;
use crate::principal::Principal;
use crate::requests::{CreatePayment, parse_payment_id, parse_user_id};
use crate::{Deps, views};

/// Failure reason of a payment whose saga could not be started.
pub const SAGA_NOT_STARTED: &str = "SAGA_NOT_STARTED";
/// Page size of `GET /payments` when `limit` is not given.
pub const LIST_LIMIT_DEFAULT: u32 = 20;
/// Timeline entries shown with a payment (a saga writes fewer than ten).
pub const EVENT_COUNT_MAX: u32 = 100;
/// Longest cursor accepted (ours are ~60 characters).
const CURSOR_LENGTH_MAX: usize = 256;
/// Attempts at recording a new payment before leaving it to the saga.
const CREATE_ATTEMPT_COUNT_MAX: u32 = 3;
const CREATE_BACKOFF_MS: u64 = 50;
/// Attempts at a saga start that may or may not have happened.
const START_ATTEMPT_COUNT_MAX: u32 = 3;
const START_BACKOFF_MS: u64 = 100;
/// Attempts at settling a payment whose saga did not start: each marks it
/// FAILED and, when the store cannot be written, tries the start again.
const SETTLE_ATTEMPT_COUNT_MAX: u32 = 6;
/// Doubling from here: 50, 100, 200, 400, 800 ms (1.55 s in all, well inside
/// the function's 20 s).
const SETTLE_BACKOFF_MS: u64 = 50;
/// Metric of a payment left PENDING with no saga (alarmed on; the
/// reconciler's sweep and a retry of the key both resume it).
pub const METRIC_PENDING_WITHOUT_SAGA: &str = "PendingWithoutSaga";

pub async fn create(
    deps: &Deps,
    request: &Request<'_>,
    principal: &Principal,
    body: &JsonObject,
) -> Result<Response, ApiError> {
    let command = CreatePayment::parse(body, deps.amount_max)?;
    // An end user pays only from their own wallet, whatever the body says.
    principal.may_act_for(&command.user_id)?;
    let key = idempotency::key(request, &command.canonical())?;
    let work = |seed| start_payment(deps, &command, seed);
    Ok(idempotency::run(deps.idempotency.as_ref(), key, work).await)
}

/// Records the PENDING payment first (so GET finds it at once; the saga's
/// create step is idempotent), then starts its saga.
async fn start_payment(deps: &Deps, command: &CreatePayment, seed: Ulid) -> Outcome {
    let payment_id = match idempotency::id_from_seed(PaymentId::PREFIX, seed, PaymentId::parse) {
        Ok(id) => id,
        Err(err) => return Outcome::by_status(Response::error(err)),
    };
    let new = command.new_payment(payment_id);
    let input = SagaInput::from(&new);
    let payment = match create_payment(deps, new).await {
        Ok(created) => created,
        Err(err) => {
            return Outcome::by_status(Response::error(err.into()).with_correlation(payment_id));
        }
    };
    // A resumed request whose saga never started: that payment is over.
    if payment.failure_reason.as_deref() == Some(SAGA_NOT_STARTED) {
        return Outcome::with(not_started(payment_id, None), Disposition::Release);
    }
    match start_saga(deps, &input).await {
        Ok(execution_arn) => {
            info!(paymentId = %payment_id, executionArn = %execution_arn, amount = %payment.amount,
                "payment saga started");
            let body = views::created_payment(&payment, &execution_arn);
            Outcome::by_status(Response::json(202, &body).with_correlation(payment_id))
        }
        // Started or not (a start may have happened, now or on an earlier
        // attempt of this request), the payment is fenced: FAILED while still
        // PENDING, or left to the saga that has moved it on.
        Err(err) => saga_not_started(deps, &payment, &input, err).await,
    }
}

/// Records the PENDING payment, retrying transient store failures (a create
/// is idempotent: a write that committed but reported an error is found by
/// the retry). Still unwritten after that, the payment is left to the saga,
/// whose first step creates it from the same input: a payment never ends up
/// recorded without its saga because one write failed.
async fn create_payment(deps: &Deps, new: NewPayment) -> Result<Payment, StoreError> {
    let now = Timestamp::now();
    let mut attempt = 1;
    loop {
        match deps.payments.create(new.clone(), now).await {
            Ok(created) => return Ok(created.into_inner()),
            Err(err) if err.error_type().is_retryable() && attempt < CREATE_ATTEMPT_COUNT_MAX => {
                warn!(paymentId = %new.payment_id, attempt, error = %err,
                    "could not record the payment; trying again");
                tokio::time::sleep(Duration::from_millis(
                    CREATE_BACKOFF_MS * u64::from(attempt),
                ))
                .await;
                attempt += 1;
            }
            Err(err) if err.error_type().is_retryable() => {
                warn!(paymentId = %new.payment_id, error = %err,
                    "could not record the payment; its saga will");
                return Ok(Payment::create(new, now));
            }
            Err(err) => return Err(err),
        }
    }
}

/// Starts the saga; a start that may have happened is tried again (the
/// execution name is the payment id, so STANDARD de-duplicates it). The
/// error is `Ambiguous` if any attempt was.
async fn start_saga(deps: &Deps, input: &SagaInput) -> Result<String, SagaStartError> {
    let mut ambiguous = None;
    for attempt in 1..=START_ATTEMPT_COUNT_MAX {
        match deps.saga.start(input).await {
            Ok(execution_arn) => return Ok(execution_arn),
            Err(err) if err.may_have_started() => {
                warn!(paymentId = %input.payment_id, attempt, error = %err,
                    "saga start not confirmed");
                ambiguous = Some(err);
                if attempt < START_ATTEMPT_COUNT_MAX {
                    let backoff_ms = START_BACKOFF_MS * u64::from(attempt);
                    tokio::time::sleep(Duration::from_millis(backoff_ms)).await;
                }
            }
            Err(err) => return Err(ambiguous.unwrap_or(err)),
        }
    }
    Err(ambiguous.unwrap_or_else(|| SagaStartError::Ambiguous("no start attempted".to_owned())))
}

/// The start was not confirmed but the payment has moved on: its saga is
/// running. Say exactly that; nothing is claimed about money.
fn saga_unconfirmed(payment_id: PaymentId, err: &SagaStartError) -> Outcome {
    let message = format!(
        "payment {payment_id} is being processed, but its start was not confirmed. Retry with \
         the same Idempotency-Key for its details, or GET /payments/{payment_id}; do not pay \
         again."
    );
    let err = ApiError {
        detail: Some(err.to_string()),
        ..ApiError::new(Code::ServiceUnavailable, message)
    };
    let response = Response::error(err).with_correlation(payment_id);
    Outcome::with(response, Disposition::Keep)
}

/// The saga's start was refused or not confirmed: the payment must not stay
/// PENDING with nothing driving it, so it becomes FAILED (`SAGA_NOT_STARTED`)
/// while still PENDING — a fence a saga that did start cannot pass — and the
/// client may retry, which creates a new payment; nothing was charged. A
/// payment its saga has moved on is left to it (503, "do not pay again").
/// While the store cannot take the fence, the start is tried again: whichever
/// lands first settles the payment.
async fn saga_not_started(
    deps: &Deps,
    payment: &Payment,
    input: &SagaInput,
    mut err: SagaStartError,
) -> Outcome {
    let payment_id = payment.payment_id;
    error!(paymentId = %payment_id, error = %err, "saga not started; failing the payment");
    // Only while still PENDING: a saga that did start (an ambiguous start) and
    // has marked the payment PROCESSING may be charging it. A saga that
    // started but is still before that step is fenced out: it cannot mark a
    // FAILED payment PROCESSING, so it closes the payment at the gateway and
    // gives back any debit it made.
    let change =
        PaymentChange::failed(SAGA_NOT_STARTED.to_owned()).only_from(PaymentStatus::Pending);
    for attempt in 1..=SETTLE_ATTEMPT_COUNT_MAX {
        match deps
            .payments
            .transition(&payment_id, &change, Timestamp::now())
            .await
        {
            Ok(_) => {
                let response = not_started(payment_id, Some(err.to_string()));
                return Outcome::with(response, Disposition::Release);
            }
            // Never recorded (its create failed), and no start may have
            // happened: nothing exists, nothing runs — as long as a retry of
            // the key cannot resume this payment, so the claim must be
            // released before that is said.
            Err(StoreError::NotFound { .. }) if !err.may_have_started() => {
                let response = not_started(payment_id, Some(err.to_string()));
                return Outcome::released_or(response, not_yet_started(payment_id, &err));
            }
            // Not recorded yet, but a saga may have started and will create
            // it: the client must not pay again.
            Err(StoreError::NotFound { .. }) => return saga_unconfirmed(payment_id, &err),
            // Not PENDING any more: a saga did start after all (an ambiguous
            // start). A retry of the key resumes and finds that execution.
            Err(StoreError::Transition(refused)) => {
                warn!(paymentId = %payment_id, error = %refused, "payment moved on; its saga is running");
                return saga_unconfirmed(payment_id, &err);
            }
            Err(store_err) => {
                warn!(paymentId = %payment_id, attempt, error = %store_err,
                    "could not fail the payment; trying its start again");
            }
        }
        match deps.saga.start(input).await {
            Ok(execution_arn) => {
                info!(paymentId = %payment_id, executionArn = %execution_arn, attempt,
                    "payment saga started on a later attempt");
                let body = views::created_payment(payment, &execution_arn);
                return Outcome::by_status(Response::json(202, &body).with_correlation(payment_id));
            }
            // Ambiguity sticks: once a start may have happened, the payment
            // is never said to be not started unless the fence lands.
            Err(next) if !err.may_have_started() => err = next,
            Err(_) => {}
        }
        if attempt < SETTLE_ATTEMPT_COUNT_MAX {
            let backoff_ms = SETTLE_BACKOFF_MS << (attempt - 1);
            tokio::time::sleep(Duration::from_millis(backoff_ms)).await;
        }
    }
    error!(paymentId = %payment_id, alarm = "PENDING_WITHOUT_SAGA",
        "payment left PENDING without a saga; retrying the same Idempotency-Key resumes it");
    shared::observability::emit_count(METRIC_PENDING_WITHOUT_SAGA, crate::FUNCTION_NAME);
    Outcome::with(not_yet_started(payment_id, &err), Disposition::Keep)
}

/// The answer when "not charged" cannot be made to stay true (the payment
/// could not be marked FAILED, or the key could not be released, so a retry
/// resumes this very payment): it has not started yet, and a retry of the key
/// starts it.
fn not_yet_started(payment_id: PaymentId, err: &SagaStartError) -> Response {
    let message = format!(
        "payment {payment_id} has not started yet. Retry with the same Idempotency-Key to start \
         it (a request with it may be busy for up to \
         {IN_PROGRESS_STALE_SECONDS} s), or GET /payments/{payment_id}."
    );
    let err = ApiError {
        detail: Some(err.to_string()),
        ..ApiError::new(Code::ServiceUnavailable, message)
    };
    Response::error(err).with_correlation(payment_id)
}

fn not_started(payment_id: PaymentId, detail: Option<String>) -> Response {
    let message = format!(
        "payment {payment_id} could not be started and was not charged; it is FAILED with \
         reason {SAGA_NOT_STARTED}. Retry the request to create a new payment."
    );
    let err = ApiError {
        detail,
        ..ApiError::new(Code::ServiceUnavailable, message)
    };
    Response::error(err).with_correlation(payment_id)
}

pub async fn get(
    deps: &Deps,
    principal: &Principal,
    raw_payment_id: &str,
) -> Result<Response, ApiError> {
    let payment_id = parse_payment_id(raw_payment_id)?;
    let payment = visible_payment(deps, principal, payment_id).await?;
    let (events, refunds) = tokio::join!(
        deps.events.events(&payment_id, EVENT_COUNT_MAX),
        deps.refunds.refunds_of(&payment_id),
    );
    let body = views::payment_detail(&payment, &events?, &refunds?);
    Ok(Response::json(200, &body).with_correlation(payment_id))
}

/// The payment, if it exists and `principal` may see it: another user's
/// payment is not found, exactly like a payment that does not exist.
pub async fn visible_payment(
    deps: &Deps,
    principal: &Principal,
    payment_id: PaymentId,
) -> Result<Payment, ApiError> {
    deps.payments
        .get(&payment_id)
        .await?
        .filter(|payment| principal.may_see(&payment.user_id))
        .ok_or_else(|| payment_not_found(payment_id))
}

pub fn payment_not_found(payment_id: PaymentId) -> ApiError {
    ApiError::new(Code::PaymentNotFound, format!("no payment {payment_id}")).with_param("paymentId")
}

/// A user's payments, newest first, `limit` (1-100, default 20) per page.
pub async fn list(
    deps: &Deps,
    principal: &Principal,
    query: &QueryMap,
) -> Result<Response, ApiError> {
    let user_text = query.first("userId").ok_or_else(|| {
        ApiError::new(Code::MissingField, "query parameter `userId` is required")
            .with_param("userId")
    })?;
    let user_id = parse_user_id(user_text, "userId")?;
    principal.may_act_for(&user_id)?;
    let limit = match query.first("limit") {
        None => LIST_LIMIT_DEFAULT,
        Some(text) => text
            .parse::<u32>()
            .ok()
            .filter(|limit| (1..=PAGE_LIMIT_MAX).contains(limit))
            .ok_or_else(|| {
                let message = format!("`limit` must be an integer from 1 to {PAGE_LIMIT_MAX}");
                ApiError::new(Code::InvalidLimit, message).with_param("limit")
            })?,
    };
    let cursor = query.first("cursor");
    if let Some(text) = cursor
        && (text.len() > CURSOR_LENGTH_MAX || parse_payment_cursor(text).is_none())
    {
        let message = "`cursor` must be a `nextCursor` value returned by this listing";
        return Err(ApiError::new(Code::InvalidCursor, message).with_param("cursor"));
    }
    let page = deps.payments.list_by_user(&user_id, limit, cursor).await?;
    let data: Vec<_> = page.items.iter().map(views::payment_in_list).collect();
    Ok(Response::json(
        200,
        &json!({ "data": data, "nextCursor": page.cursor }),
    ))
}
