//! The gateway's webhooks, as the mock gateway sends them: a signed event for
//! each final charge outcome (when a pending charge resolves) and each refund
//! paid out, POSTed to api-handler's `/webhooks/gateway`, delivered again
//! after a 5xx. The `webhook-misdelivered` fault loses an event, delivers it
//! twice, late (out of order), forged (another secret) or stale (signed
//! beyond the tolerance); a forged or stale one must be refused with a 401.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde_json::json;
use shared::domain::Timestamp;
use shared::webhook::{SIGNATURE_HEADER, TOLERANCE_SECONDS, sign};

use crate::clients::Api;
use crate::env::Env;
use crate::faults::Fault;
use crate::gateway::WEBHOOK_SECRET;

/// Deliveries of one event while the receiver answers 5xx, at most.
const DELIVERY_ATTEMPT_COUNT_MAX: u32 = 4;

/// Hands gateway events to api-handler once the API exists. The API holds
/// the gateway, which holds this: [`Courier::disconnect`] breaks that cycle
/// when the seed ends, or every world would stay in memory.
#[derive(Clone, Default)]
pub struct Courier {
    api: Arc<Mutex<Option<Api>>>,
    sequence: Arc<Mutex<u64>>,
}

#[derive(Debug, Clone, Copy)]
enum Trouble {
    None,
    Lost,
    Twice,
    Late,
    Forged,
    Stale,
}

impl Courier {
    pub fn connect(&self, api: Api) {
        *self.api.lock().unwrap_or_else(PoisonError::into_inner) = Some(api);
    }

    pub fn disconnect(&self) {
        self.api
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
    }

    /// Sends `event_type` about the payment (and refund) `delay_ms` from now.
    pub fn send_later(
        &self,
        env: &Env,
        event_type: &'static str,
        payment_id: &str,
        refund_id: Option<&str>,
        delay_ms: u64,
    ) {
        let connected = self
            .api
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let Some(api) = connected else {
            return;
        };
        let number = {
            let mut sequence = self.sequence.lock().unwrap_or_else(PoisonError::into_inner);
            *sequence += 1;
            *sequence
        };
        let trouble = if env.roll(Fault::WebhookMisdelivered) {
            match env.range(0..=4) {
                0 => Trouble::Lost,
                1 => Trouble::Twice,
                2 => Trouble::Late,
                3 => Trouble::Forged,
                _ => Trouble::Stale,
            }
        } else {
            Trouble::None
        };
        let mut data = json!({"paymentId": payment_id});
        if let Some(refund_id) = refund_id {
            data["refundId"] = json!(refund_id);
        }
        let subject = refund_id.unwrap_or(payment_id).to_owned();
        let env = env.clone();
        let _detached = env.clone().spawn(async move {
            let extra_ms = match trouble {
                Trouble::Late => env.range(1_000..=60_000),
                _ => env.range(1..=500),
            };
            tokio::time::sleep(Duration::from_millis(delay_ms + extra_ms)).await;
            if matches!(trouble, Trouble::Lost) {
                env.trace(&subject, format!("webhook {event_type} lost"));
                return;
            }
            let created = Timestamp::now().unix_seconds();
            let id = format!("evt_sim_{number}");
            let body =
                json!({"id": id, "type": event_type, "created": created, "data": data}).to_string();
            let copies = if matches!(trouble, Trouble::Twice) {
                2
            } else {
                1
            };
            for _ in 0..copies {
                deliver(&env, &api, &subject, &body, trouble).await;
            }
        });
    }
}

async fn deliver(env: &Env, api: &Api, subject: &str, body: &str, trouble: Trouble) {
    for attempt in 1..=DELIVERY_ATTEMPT_COUNT_MAX {
        let now = Timestamp::now().unix_seconds();
        let header = match trouble {
            Trouble::Forged => sign(b"not the gateway's secret", now, body.as_bytes()),
            Trouble::Stale => sign(WEBHOOK_SECRET, now - TOLERANCE_SECONDS - 1, body.as_bytes()),
            _ => sign(WEBHOOK_SECRET, now, body.as_bytes()),
        };
        let reply = api
            .send_raw(
                "POST",
                "/webhooks/gateway",
                &[(SIGNATURE_HEADER, &header)],
                Some(body.to_owned()),
            )
            .await;
        env.trace(subject, format!("webhook ({trouble:?}) → {}", reply.status));
        if matches!(trouble, Trouble::Forged | Trouble::Stale) {
            if reply.status != 401 {
                api.told_bad_webhook(format!("{trouble:?} webhook answered {}", reply.status));
            }
            return;
        }
        if reply.status < 500 {
            return;
        }
        env.latency(1_000..=u64::from(attempt) * 2_000).await;
    }
}
