//! `POST /webhooks/gateway`: the gateway's signed events (`shared::webhook`).
//! No API key: the signature is the authentication. An event is verified over
//! the raw body (HMAC-SHA256, constant-time, 300 s tolerance), de-duplicated
//! by its id, and then only asks the reconciler to settle the payment or
//! refund it names, now: the reconciler asks the gateway again before
//! anything moves, so a forged, replayed, repeated or out-of-order event can
//! never move a status backwards or money twice. A payment saga waiting for
//! the gateway's word (its task token kept with the payment) is woken by
//! that run, with the gateway's answer asked again.

use serde_json::json;
use shared::domain::{ClaimOutcome, IdempotencyRecord, IdempotencyState, Timestamp};
use shared::events::ReconcileRequest;
use shared::webhook::{self, EventType, GatewayEvent, SIGNATURE_HEADER};
use tracing::{info, warn};

use crate::Deps;
use crate::error::{ApiError, Code};
use crate::http::{BODY_BYTES_MAX, Request, Response, sha256_hex};

/// Prefix of an event's de-duplication record in the idempotency table
/// (kept 24 h, far longer than the 300 s an event is accepted for).
const EVENT_KEY_PREFIX: &str = "webhook#";

pub async fn receive(deps: &Deps, request: &Request<'_>) -> Result<Response, ApiError> {
    let Some(secret) = &deps.webhook_secret else {
        return Err(ApiError::new(
            Code::ServiceUnavailable,
            "gateway webhooks are not configured here (no webhook secret)",
        ));
    };
    let body = request.body.unwrap_or_default();
    if body.len() > BODY_BYTES_MAX {
        return Err(ApiError::new(
            Code::RequestTooLarge,
            format!("the request body must be at most {BODY_BYTES_MAX} bytes"),
        ));
    }
    if request.body_base64 {
        return Err(ApiError::new(
            Code::UnsupportedMediaType,
            "send the event as JSON text",
        ));
    }
    let now = Timestamp::now();
    let signature = request.header(SIGNATURE_HEADER);
    if let Err(err) = webhook::verify(signature, body.as_bytes(), &secret.0, now.unix_seconds()) {
        warn!(error = %err, "gateway webhook refused");
        return Err(ApiError::new(Code::InvalidSignature, err.to_string()));
    }
    let event = GatewayEvent::parse(body.as_bytes())
        .map_err(|err| ApiError::new(Code::InvalidRequest, err.to_string()))?;
    let key = format!("{EVENT_KEY_PREFIX}{}", event.id);
    let record = IdempotencyRecord::claim(key.clone(), sha256_hex(body.as_bytes()), now);
    if let ClaimOutcome::Existing(_) = deps.idempotency.claim(&record, now).await? {
        info!(eventId = %event.id, "gateway webhook already received");
        let answer = json!({"received": true, "duplicate": true, "eventId": event.id});
        return Ok(Response::json(200, &answer));
    }
    let target = match event.event_type {
        EventType::ChargeSucceeded | EventType::ChargeFailed => {
            ReconcileRequest::targeted(vec![event.data.payment_id], Vec::new())
        }
        EventType::RefundSucceeded => {
            ReconcileRequest::targeted(Vec::new(), event.data.refund_id.into_iter().collect())
        }
    };
    if let Err(err) = deps.reconciler.reconcile(&target).await {
        // Not handed over: drop the record so the gateway's next delivery
        // of this event is not taken for a duplicate.
        warn!(eventId = %event.id, error = %err, "gateway webhook not handed to the reconciler");
        if let Err(release) = deps.idempotency.release(&key, record.created_at).await {
            warn!(eventId = %event.id, error = %release, "webhook record not released");
        }
        return Err(ApiError::new(
            Code::ServiceUnavailable,
            "the event could not be handed over; deliver it again",
        ));
    }
    info!(eventId = %event.id, eventType = ?event.event_type, paymentId = %event.data.payment_id,
        "gateway webhook accepted: its payment or refund is being reconciled");
    let answer = json!({"received": true, "duplicate": false, "eventId": event.id});
    let state = IdempotencyState::Completed {
        status_code: 202,
        body: answer.to_string(),
    };
    if let Err(err) = deps.idempotency.complete(&key, &state).await {
        // The record still holds the event (IN_PROGRESS): a redelivery is
        // a duplicate either way.
        warn!(eventId = %event.id, error = %err, "webhook record not completed");
    }
    Ok(Response::json(202, &answer))
}
