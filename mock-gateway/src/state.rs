//! Shared state: settings, stored charges (and cancel tombstones) and refunds,
//! stats and the seeded RNG behind one `std::sync::Mutex` (never held across an
//! `.await`), plus an injectable clock.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use time::OffsetDateTime;

use crate::cancels::Tombstone;
use crate::charges::{Charge, PaymentView};
use crate::config::{ApiKey, GatewayConfig, Mode, ModeSettings};
use crate::error::AppError;
use crate::refunds::Refund;

/// Source of "now"; [`ManualClock`] lets tests move time without sleeping.
pub trait Clock: Send + Sync {
    fn now(&self) -> OffsetDateTime;
}

/// Wall clock, truncated to milliseconds.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        let now = OffsetDateTime::now_utc();
        now.replace_millisecond(now.millisecond()).unwrap_or(now)
    }
}

/// A clock that only moves when told to.
#[derive(Debug)]
pub struct ManualClock {
    now: Mutex<OffsetDateTime>,
}

impl ManualClock {
    pub fn new(start: OffsetDateTime) -> Self {
        Self {
            now: Mutex::new(start),
        }
    }

    pub fn advance(&self, by: time::Duration) {
        let mut now = self.now.lock().unwrap_or_else(PoisonError::into_inner);
        *now = now.saturating_add(by);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> OffsetDateTime {
        *self.now.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Upper bounds on what the gateway stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_charges: usize,
    pub max_refunds: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_charges: 100_000,
            max_refunds: 100_000,
        }
    }
}

/// Route labels counted in `byRoute` (a fixed set, so the map stays bounded).
pub const ROUTE_CHARGE: &str = "POST /v1/payments";
pub const ROUTE_STATUS: &str = "GET /v1/payments/{paymentId}";
pub const ROUTE_REFUND: &str = "POST /v1/refunds";
pub const ROUTE_CANCEL: &str = "POST /v1/payments/{paymentId}/cancel";
pub const ROUTE_OTHER: &str = "OTHER /v1";

const KNOWN_OUTCOMES: [&str; 10] = [
    "APPROVED",
    "PENDING",
    "DECLINED",
    "CANCELED",
    "REFUNDED",
    "REPLAY",
    "ERROR",
    "UNAVAILABLE",
    "UNAUTHORIZED",
    "NOT_FOUND",
];

/// Counts of `/v1` calls. Keys are `&'static str`, so both maps are bounded.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Stats {
    pub total: u64,
    pub by_route: BTreeMap<&'static str, u64>,
    pub by_outcome: BTreeMap<&'static str, u64>,
}

impl Default for Stats {
    fn default() -> Self {
        Self {
            total: 0,
            by_route: [ROUTE_CHARGE, ROUTE_STATUS, ROUTE_CANCEL, ROUTE_REFUND]
                .into_iter()
                .map(|r| (r, 0))
                .collect(),
            by_outcome: KNOWN_OUTCOMES.into_iter().map(|o| (o, 0)).collect(),
        }
    }
}

impl Stats {
    pub fn record(&mut self, route: &'static str, outcome: &'static str) {
        self.total = self.total.saturating_add(1);
        let route = self.by_route.entry(route).or_insert(0);
        *route = route.saturating_add(1);
        let outcome = self.by_outcome.entry(outcome).or_insert(0);
        *outcome = outcome.saturating_add(1);
    }
}

/// What the gateway holds for one `paymentId`. Both kinds share the charge
/// map (and its limit), so a paymentId has at most one record and a cancel
/// and a charge can never both win.
#[derive(Debug, Clone)]
pub enum ChargeRecord {
    /// A charge the gateway processed (approved, pending or declined).
    Charged(Charge),
    /// A cancel that found no charge: the payment is DECLINED (`canceled`) for good.
    Canceled(Tombstone),
}

impl ChargeRecord {
    /// The status-lookup body at `now`.
    pub fn view(&self, now: OffsetDateTime) -> Result<PaymentView, AppError> {
        match self {
            Self::Charged(charge) => charge.view(now),
            Self::Canceled(tombstone) => tombstone.view(),
        }
    }
}

/// Everything behind the mutex.
pub(crate) struct Gateway {
    pub settings: ModeSettings,
    /// Keyed by `paymentId`.
    pub charges: HashMap<String, ChargeRecord>,
    pub refunds: HashMap<String, Refund>,
    pub stats: Stats,
    pub rng: StdRng,
}

impl Gateway {
    fn new(settings: ModeSettings) -> Self {
        Self {
            settings,
            charges: HashMap::new(),
            refunds: HashMap::new(),
            stats: Stats::default(),
            rng: StdRng::seed_from_u64(settings.seed),
        }
    }
}

/// Cheap to clone; every clone shares the same gateway.
#[derive(Clone)]
pub struct AppState {
    pub(crate) inner: Arc<Mutex<Gateway>>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) api_key: Arc<ApiKey>,
    pub(crate) initial: ModeSettings,
    pub(crate) limits: Limits,
    /// Signed webhooks for final outcomes (`WEBHOOK_URL`), if configured.
    pub(crate) webhooks: Option<crate::webhooks::WebhookSender>,
}

impl AppState {
    /// A gateway on the system clock with the default [`Limits`].
    pub fn new(config: GatewayConfig) -> Self {
        Self::with_clock(config, Arc::new(SystemClock))
    }

    pub fn with_clock(config: GatewayConfig, clock: Arc<dyn Clock>) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Gateway::new(config.settings))),
            clock,
            api_key: Arc::new(config.api_key),
            initial: config.settings,
            limits: Limits::default(),
            webhooks: None,
        }
    }

    /// Sends signed webhooks for final outcomes through `webhooks`.
    #[must_use]
    pub fn with_webhooks(mut self, webhooks: Option<crate::webhooks::WebhookSender>) -> Self {
        self.webhooks = webhooks;
        self
    }

    #[must_use]
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Locks the gateway. A poisoned lock is recovered: no critical section
    /// leaves the data half-updated.
    pub(crate) fn lock(&self) -> MutexGuard<'_, Gateway> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn settings(&self) -> ModeSettings {
        self.lock().settings
    }

    /// Replaces the settings; a changed or repeated seed restarts the RNG.
    pub(crate) fn apply_settings(&self, settings: ModeSettings, reseed: bool) -> ModeSettings {
        let mut gateway = self.lock();
        gateway.settings = settings;
        if reseed {
            gateway.rng = StdRng::seed_from_u64(settings.seed);
        }
        gateway.settings
    }

    /// Forgets charges, refunds and stats; settings return to the start-up ones in `normal` mode.
    pub(crate) fn reset(&self) -> ModeSettings {
        let settings = ModeSettings {
            mode: Mode::Normal,
            ..self.initial
        };
        *self.lock() = Gateway::new(settings);
        settings
    }

    pub fn stats(&self) -> Stats {
        self.lock().stats.clone()
    }

    pub(crate) fn record(&self, route: &'static str, outcome: &'static str) {
        self.lock().stats.record(route, outcome);
    }

    pub(crate) fn now(&self) -> OffsetDateTime {
        self.clock.now()
    }

    /// `flaky` mode: true with probability `errorRate` (one seeded draw per call).
    pub(crate) fn roll_failure(&self) -> bool {
        let mut gateway = self.lock();
        let bps = gateway.settings.error_rate.bps();
        gateway.rng.random_range(0_u16..10_000) < bps
    }
}
