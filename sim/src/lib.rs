//! Deterministic fault simulation of the whole payment saga.
//!
//! One seed is one small world: clients calling api-handler, the real
//! `state-machine/payment-saga.asl.json` run by the real interpreter (`asl`),
//! the real handlers of every Lambda over the in-memory store, and a gateway
//! that follows the mock gateway's contract. Every fault the real platform
//! has is injected with a rate the seed draws ([`faults`]); time is virtual
//! (a paused tokio runtime: Wait states, backoffs, timeouts and pending
//! delays cost nothing); all randomness comes from the seed, so a seed
//! replays bit for bit. When the world is quiet the money invariants are
//! checked ([`invariants`]).
//!
//! ```
//! let report = sim::run_seed(7, &sim::faults::FaultSet::all()).unwrap();
//! assert_eq!(report.seed, 7);
//! assert!(report.payment_count > 0);
//! ```

pub mod clients;
pub mod cloud;
pub mod env;
pub mod faults;
pub mod gateway;
pub mod invariants;
pub mod schedule;
pub mod store;
pub mod webhooks;

use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use std::sync::{Arc, Mutex, PoisonError};

use shared::breaker::{BreakerSettings, CircuitBreaker, MetricSink, SystemClock};
use shared::domain::UserId;
use shared::domain::money::AMOUNT_MAX_DEFAULT;
use shared::memory::InMemoryStore;

use crate::clients::{Api, Told};
use crate::cloud::{
    ADAPTER_ARN, Functions, INVOICE_ARN, REFUND_ARN, SimRefunder, SimSaga, StepFunctions,
    WALLET_ARN,
};
use crate::env::{Env, SimSource, TraceLine};
use crate::faults::{Fault, FaultSet};
use crate::gateway::SimGateway;
use crate::invariants::{Books, Violation};

/// The sagas, as deployed.
pub const PAYMENT_SAGA_ASL: &str = include_str!("../../state-machine/payment-saga.asl.json");
pub const REFUND_SAGA_ASL: &str = include_str!("../../state-machine/refund-saga.asl.json");
/// Warm payments-adapter instances (each has its own breaker cache).
const ADAPTER_INSTANCE_COUNT: usize = 3;

/// What one seed did and found.
#[derive(Debug, Clone)]
pub struct SeedReport {
    pub seed: u64,
    pub violations: Vec<Violation>,
    pub injected: BTreeMap<Fault, u64>,
    /// Final payment statuses, counted.
    pub payment_statuses: BTreeMap<String, u64>,
    /// Execution outcomes, counted.
    pub executions: BTreeMap<String, u64>,
    pub answers: BTreeMap<String, u64>,
    pub payment_count: u64,
    pub refund_count: u64,
    /// Virtual time the seed covered.
    pub virtual_ms: u64,
    pub trace: Vec<TraceLine>,
    pub trace_digest: u64,
}

impl SeedReport {
    /// Violations no known defect explains.
    pub fn unexpected(&self) -> impl Iterator<Item = &Violation> {
        self.violations.iter().filter(|v| v.known.is_none())
    }

    pub fn expected(&self) -> impl Iterator<Item = &Violation> {
        self.violations.iter().filter(|v| v.known.is_some())
    }

    /// The trace lines about the subjects of `violation` (and every
    /// payment, refund and key it names): the events that led to it.
    pub fn minimized_trace(&self, violation: &Violation) -> Vec<&TraceLine> {
        let mut subjects: BTreeSet<String> = BTreeSet::new();
        subjects.insert(violation.subject.clone());
        for word in violation
            .detail
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        {
            if word.starts_with("pay_") || word.starts_with("ref_") {
                subjects.insert(word.to_owned());
            }
        }
        self.trace
            .iter()
            .filter(|line| {
                subjects.iter().any(|subject| {
                    line.subject.contains(subject.as_str()) || line.text.contains(subject.as_str())
                })
            })
            .collect()
    }
}

/// Metric lines of the breaker, counted instead of printed.
struct CountingMetrics(Env);

impl MetricSink for CountingMetrics {
    fn emit(&self, _line: &str) {
        self.0.count_metric(shared::breaker::METRIC_BREAKER_OPENED);
    }
}

/// Runs one seed to quiescence and checks the invariants.
pub fn run_seed(seed: u64, faults: &FaultSet) -> Result<SeedReport, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .map_err(|err| format!("cannot build the seed's runtime: {err}"))?;
    runtime.block_on(run_world(seed, faults))
}

async fn run_world(seed: u64, faults: &FaultSet) -> Result<SeedReport, String> {
    let env = Env::new(seed, faults);
    let _source = shared::domain::source::install(Rc::new(SimSource::new(env.clone(), seed)));
    let metrics_env = env.clone();
    let _metrics = shared::observability::capture_counts(Rc::new(move |metric, _service| {
        metrics_env.count_metric(metric);
    }));
    let memory = Arc::new(InMemoryStore::new());
    let store = Arc::new(store::FaultyStore::new(memory.clone(), env.clone()));
    let gateway = SimGateway::new(env.clone());
    let settings = payments_adapter::Config::from_lookup(|_| None)
        .map_err(|err| err.to_string())?
        .breaker;
    let refund_deps = Arc::new(refund_service::Deps {
        payments: store.clone(),
        refunds: store.clone(),
        wallets: store.clone(),
        gateway: Arc::new(gateway.clone()),
    });
    let functions = functions(&env, &store, &gateway, &settings, &refund_deps);
    let tokens = functions.tokens.clone();
    let substitutions = BTreeMap::from([
        (
            "InvoiceProcessorFunctionArn".to_owned(),
            INVOICE_ARN.to_owned(),
        ),
        ("WalletServiceFunctionArn".to_owned(), WALLET_ARN.to_owned()),
        (
            "PaymentsAdapterFunctionArn".to_owned(),
            ADAPTER_ARN.to_owned(),
        ),
        ("RefundServiceFunctionArn".to_owned(), REFUND_ARN.to_owned()),
    ]);
    let load =
        |asl: &str| asl::StateMachine::load(asl, &substitutions).map_err(|err| err.to_string());
    let sfn = Arc::new(StepFunctions::new(
        env.clone(),
        "sim-payment-saga",
        load(PAYMENT_SAGA_ASL)?,
        functions.clone(),
    ));
    let refund_sfn = Arc::new(StepFunctions::new(
        env.clone(),
        "sim-refund-saga",
        load(REFUND_SAGA_ASL)?,
        functions,
    ));
    let reconciler = Arc::new(reconciler::Deps {
        ports: refund_service::Deps {
            payments: store.clone(),
            refunds: store.clone(),
            wallets: store.clone(),
            gateway: Arc::new(gateway.clone()),
        },
        sagas: Arc::new(cloud::SimCallbacks {
            env: env.clone(),
            tokens,
        }),
    });
    let refunder = SimRefunder {
        env: env.clone(),
        deps: refund_deps,
    };
    let api = Api {
        env: env.clone(),
        deps: Arc::new(api_handler::Deps {
            payments: store.clone(),
            events: store.clone(),
            wallets: store.clone(),
            refunds: store.clone(),
            idempotency: store.clone(),
            saga: Arc::new(SimSaga {
                payments: sfn.clone(),
                refunds: refund_sfn.clone(),
            }),
            refunder: Arc::new(refunder),
            reconciler: Arc::new(schedule::OnDemand {
                env: env.clone(),
                deps: reconciler.clone(),
            }),
            webhook_secret: Some(api_handler::WebhookSecret(gateway::WEBHOOK_SECRET.to_vec())),
            amount_max: AMOUNT_MAX_DEFAULT,
        }),
        operator: Arc::new(api_handler::OperatorDeps {
            wallets: store.clone(),
            idempotency: store.clone(),
            amount_max: AMOUNT_MAX_DEFAULT,
        }),
        told: Arc::new(Mutex::new(Told::default())),
        caller: clients::Caller::Merchant,
    };
    gateway.courier.connect(api.clone());
    let users = start_clients(&env, &api)?;
    let busy_runs = schedule::start_busy_runs(&env, &reconciler);
    env.quiesce().await;
    let mut reconciled = schedule::run_until_settled(&env, &reconciler).await;
    for receiver in busy_runs {
        for (outcome, count) in receiver.await.unwrap_or_default() {
            *reconciled.entry(outcome).or_default() += count;
        }
    }
    env.quiesce().await;
    gateway.courier.disconnect();
    let told = api
        .told
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    let refund_executions = refund_sfn.started_names();
    let books = Books {
        store: &memory,
        gateway: &gateway,
        told: &told,
        users: &users,
        reconciliation_metric_count: env.metric("ReconciliationRequired"),
        refund_failed_metric_count: env.metric(refund_service::METRIC_REFUND_FAILED),
        refund_reconciliation_metric_count: env
            .metric(refund_service::METRIC_REFUND_RECONCILIATION),
        refund_executions: &refund_executions,
    };
    let violations = invariants::check(&books).await;
    let (payment_statuses, payment_count, refund_count) = statuses(&memory, &users).await;
    Ok(SeedReport {
        seed,
        violations,
        injected: env.injected(),
        payment_statuses,
        executions: merged(sfn.outcomes(), refund_sfn.outcomes(), reconciled),
        answers: told.answers,
        payment_count,
        refund_count,
        virtual_ms: env.now_ms(),
        trace: env.trace_lines(),
        trace_digest: env.trace_digest(),
    })
}

/// Execution outcomes of both sagas and the reconciler's, counted (refund
/// saga outcomes named as such).
fn merged(
    payments: BTreeMap<String, u64>,
    refunds: BTreeMap<String, u64>,
    reconciled: schedule::Tally,
) -> BTreeMap<String, u64> {
    let mut all = payments;
    all.extend(reconciled);
    for (outcome, count) in refunds {
        *all.entry(format!("refund {outcome}")).or_default() += count;
    }
    all
}

fn functions(
    env: &Env,
    store: &Arc<store::FaultyStore>,
    gateway: &SimGateway,
    settings: &BreakerSettings,
    refund: &Arc<refund_service::Deps>,
) -> Functions {
    let adapters = (0..ADAPTER_INSTANCE_COUNT)
        .map(|_| payments_adapter::Deps {
            gateway: Arc::new(gateway.clone()),
            breaker: CircuitBreaker::new(store.clone(), settings.clone(), Arc::new(SystemClock))
                .with_metrics(Arc::new(CountingMetrics(env.clone()))),
        })
        .collect();
    Functions {
        env: env.clone(),
        invoice: Arc::new(invoice_processor::Deps {
            payments: store.clone(),
        }),
        wallet: Arc::new(wallet_service::Deps {
            wallets: store.clone(),
        }),
        adapters: Arc::new(adapters),
        refund: refund.clone(),
        tokens: Arc::new(asl::TaskTokens::new()),
    }
}

/// 3 to 6 users, each with 2 to 8 payments, all at once.
fn start_clients(env: &Env, api: &Api) -> Result<Vec<UserId>, String> {
    let user_count = env.range(3..=6);
    let mut users = Vec::new();
    for number in 0..user_count {
        let user = format!("user_sim_{number}");
        users.push(UserId::parse(&user).map_err(|err| err.to_string())?);
        let payment_count = u32::try_from(env.range(2..=8)).unwrap_or(2);
        let api = api.clone();
        let _detached = env.spawn(clients::user_session(api, user, payment_count));
    }
    Ok(users)
}

async fn statuses(store: &InMemoryStore, users: &[UserId]) -> (BTreeMap<String, u64>, u64, u64) {
    use shared::ports::{PAGE_LIMIT_MAX, PaymentRepo, RefundRepo};
    let mut counts = BTreeMap::new();
    let (mut payments, mut refunds) = (0_u64, 0_u64);
    for user in users {
        let page = store.list_by_user(user, PAGE_LIMIT_MAX, None).await;
        for payment in page.map(|page| page.items).unwrap_or_default() {
            payments += 1;
            *counts
                .entry(payment.status.as_str().to_owned())
                .or_default() += 1;
            let of = store
                .refunds_of(&payment.payment_id)
                .await
                .unwrap_or_default();
            refunds += u64::try_from(of.len()).unwrap_or(0);
        }
    }
    (counts, payments, refunds)
}
