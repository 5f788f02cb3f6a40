//! The faults the simulator injects. Each seed draws its own rate for every
//! enabled fault (some seeds are calm, some are storms), and every injection
//! is counted, so a run says what it actually exercised.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use rand::Rng;
use rand::rngs::StdRng;

/// One kind of fault. The names are what `FAULTS=` takes and the report prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Fault {
    /// The function crashes before doing anything (`Runtime.ExitError`).
    CrashBeforeWrites,
    /// The function's writes commit, then its reply is lost (`Sandbox.Timedout`).
    ReplyLost,
    /// Step Functions times the task out while the function still runs; the
    /// function finishes later, beside the retry.
    TaskOverrun,
    /// The same task input is delivered to the function twice.
    DuplicateDelivery,
    /// A second execution of the saga for the same payment (Express: no
    /// de-duplication by name).
    DuplicateExecution,
    /// StartExecution fails without starting anything.
    StartRefused,
    /// StartExecution times out or answers 5xx: half the time the execution
    /// started anyway, half the time it did not.
    StartAmbiguous,
    /// refund-service's reply to api-handler is lost after it ran.
    RefundReplyLost,
    /// The gateway captures the charge, then the connection times out.
    GatewayCaptureThenTimeout,
    /// The gateway captures, then a 5xx comes back (a proxy in front failed).
    GatewayCaptureThen5xx,
    /// The gateway answers 500 or 503 and records nothing (the adapter cannot
    /// tell a 500 from one after a capture).
    Gateway5xx,
    /// The gateway cannot be reached (connection refused): nothing was sent.
    GatewayDown,
    /// The gateway answers after the adapter's request timeout.
    GatewaySlow,
    /// The gateway declines the charge.
    GatewayDecline,
    /// The gateway refuses a refund (422 `REFUND_REFUSED`), and every retry
    /// of that refund id after it.
    GatewayRefundRefused,
    /// A gateway webhook is lost, delivered twice, late, forged or stale.
    WebhookMisdelivered,
    /// The charge stays PENDING for a while, then resolves.
    GatewayPending,
    /// The charge stays PENDING for longer than the saga polls.
    GatewayLongPending,
    /// The store throttles a request (nothing written).
    StoreThrottle,
    /// A transaction is cancelled by a conflicting one (nothing written).
    StoreConflict,
    /// A write commits but the caller is told it failed.
    StoreCommitThenError,
}

impl Fault {
    pub const ALL: [Fault; 21] = [
        Self::CrashBeforeWrites,
        Self::ReplyLost,
        Self::TaskOverrun,
        Self::DuplicateDelivery,
        Self::DuplicateExecution,
        Self::StartRefused,
        Self::StartAmbiguous,
        Self::RefundReplyLost,
        Self::GatewayCaptureThenTimeout,
        Self::GatewayCaptureThen5xx,
        Self::Gateway5xx,
        Self::GatewayDown,
        Self::GatewaySlow,
        Self::GatewayDecline,
        Self::GatewayRefundRefused,
        Self::WebhookMisdelivered,
        Self::GatewayPending,
        Self::GatewayLongPending,
        Self::StoreThrottle,
        Self::StoreConflict,
        Self::StoreCommitThenError,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::CrashBeforeWrites => "crash-before-writes",
            Self::ReplyLost => "reply-lost",
            Self::TaskOverrun => "task-overrun",
            Self::DuplicateDelivery => "duplicate-delivery",
            Self::DuplicateExecution => "duplicate-execution",
            Self::StartRefused => "start-refused",
            Self::StartAmbiguous => "start-ambiguous",
            Self::RefundReplyLost => "refund-reply-lost",
            Self::GatewayCaptureThenTimeout => "gateway-capture-then-timeout",
            Self::GatewayCaptureThen5xx => "gateway-capture-then-5xx",
            Self::Gateway5xx => "gateway-5xx",
            Self::GatewayDown => "gateway-down",
            Self::GatewaySlow => "gateway-slow",
            Self::GatewayDecline => "gateway-decline",
            Self::GatewayRefundRefused => "gateway-refund-refused",
            Self::WebhookMisdelivered => "webhook-misdelivered",
            Self::GatewayPending => "gateway-pending",
            Self::GatewayLongPending => "gateway-long-pending",
            Self::StoreThrottle => "store-throttle",
            Self::StoreConflict => "store-conflict",
            Self::StoreCommitThenError => "store-commit-then-error",
        }
    }

    /// The highest per-opportunity probability a seed may draw, in percent.
    /// Infrastructure faults are rarer than business outcomes.
    fn rate_percent_max(self) -> u32 {
        match self {
            Self::GatewayDecline | Self::GatewayPending => 30,
            Self::StoreThrottle | Self::StoreConflict => 8,
            Self::StoreCommitThenError => 5,
            Self::GatewayLongPending => 6,
            _ => 12,
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Fault {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|fault| fault.name() == text)
            .ok_or_else(|| {
                let names: Vec<&str> = Self::ALL.iter().map(|f| f.name()).collect();
                format!("unknown fault `{text}`; known: {}", names.join(", "))
            })
    }
}

/// Which faults a run may inject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultSet {
    enabled: Vec<Fault>,
}

impl FaultSet {
    pub fn all() -> Self {
        Self {
            enabled: Fault::ALL.to_vec(),
        }
    }

    pub fn none() -> Self {
        Self {
            enabled: Vec::new(),
        }
    }

    /// `all`, `none`, or a comma-separated list of fault names.
    pub fn parse(text: &str) -> Result<Self, String> {
        match text.trim() {
            "" | "all" => Ok(Self::all()),
            "none" => Ok(Self::none()),
            list => {
                let mut enabled = Vec::new();
                for name in list.split(',') {
                    let fault: Fault = name.trim().parse()?;
                    if !enabled.contains(&fault) {
                        enabled.push(fault);
                    }
                }
                enabled.sort();
                Ok(Self { enabled })
            }
        }
    }

    pub fn contains(&self, fault: Fault) -> bool {
        self.enabled.contains(&fault)
    }
}

/// The rates one seed drew, and what it injected.
#[derive(Debug, Clone)]
pub struct FaultPlan {
    /// Per mille, per opportunity.
    rates: BTreeMap<Fault, u32>,
    injected: BTreeMap<Fault, u64>,
}

impl FaultPlan {
    /// Each enabled fault gets a rate in [0, its maximum]; a third of the
    /// faults are switched off for the seed, so combinations vary.
    pub fn draw(set: &FaultSet, rng: &mut StdRng) -> Self {
        let mut rates = BTreeMap::new();
        for fault in Fault::ALL {
            let on = set.contains(fault) && rng.random_ratio(2, 3);
            let rate = if on {
                rng.random_range(1..=fault.rate_percent_max() * 10)
            } else {
                0
            };
            rates.insert(fault, rate);
        }
        Self {
            rates,
            injected: BTreeMap::new(),
        }
    }

    /// Whether to inject `fault` at this opportunity (and counts it if so).
    pub fn roll(&mut self, fault: Fault, rng: &mut StdRng) -> bool {
        let rate = self.rates.get(&fault).copied().unwrap_or(0);
        let hit = rate > 0 && rng.random_range(0..1000) < rate;
        if hit {
            *self.injected.entry(fault).or_default() += 1;
        }
        hit
    }

    pub fn injected(&self) -> &BTreeMap<Fault, u64> {
        &self.injected
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn names_parse_back_and_lists_are_checked() {
        for fault in Fault::ALL {
            assert_eq!(fault.name().parse::<Fault>().unwrap(), fault);
        }
        let set = FaultSet::parse("reply-lost, gateway-down").unwrap();
        assert!(set.contains(Fault::ReplyLost));
        assert!(!set.contains(Fault::TaskOverrun));
        assert!(
            FaultSet::parse("reply-lots")
                .unwrap_err()
                .contains("unknown fault")
        );
        assert_eq!(FaultSet::parse("all").unwrap(), FaultSet::all());
    }

    #[test]
    fn a_disabled_fault_is_never_injected() {
        let mut rng = StdRng::seed_from_u64(7);
        let mut plan = FaultPlan::draw(&FaultSet::none(), &mut rng);
        assert!((0..1000).all(|_| !plan.roll(Fault::ReplyLost, &mut rng)));
        assert!(plan.injected().is_empty());
    }
}
