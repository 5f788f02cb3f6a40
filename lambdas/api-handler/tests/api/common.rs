//! Fixtures: proxy events, the harness around `handle`, and recording fakes.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use api_handler::{
    Deps, OperatorDeps, RefundInvokeError, RefundInvoker, SagaStartError, SagaStarter, handle,
    handle_operator,
};
use async_trait::async_trait;
use aws_lambda_events::apigw::{ApiGatewayProxyRequest, ApiGatewayProxyResponse};
use aws_lambda_events::encodings::Body;
use lambda_runtime::{Context, LambdaEvent};
use serde_json::{Value, json};
use shared::domain::money::AMOUNT_MAX_DEFAULT;
use shared::domain::{
    ClaimOutcome, IdempotencyRecord, IdempotencyState, Money, NewPayment, Payment, PaymentChange,
    PaymentId, PaymentStatus, Refund, Timestamp, UserId,
};
use shared::events::{RefundCommand, RefundSagaInput, SagaInput};
use shared::memory::InMemoryStore;
use shared::ports::{Created, IdempotencyRepo, Page, PaymentRepo, RefundRepo};
use shared::{RepoError, StoreError};
use tokio::sync::Notify;

pub const REQUEST_ID: &str = "c0ffee00-0000-4000-8000-000000000001";
pub const STATE_MACHINE: &str = "arn:aws:states:us-east-1:123456789012:stateMachine:payment-saga";
pub const REFUND_STATE_MACHINE: &str =
    "arn:aws:states:us-east-1:123456789012:stateMachine:refund-saga";

/// The service client most tests call as: every scope, any user's wallet.
pub const TEST_CLIENT: &str = "test-merchant";
pub const OPERATOR_ARN: &str = "arn:aws:iam::123456789012:role/payment-operator";

/// Who API Gateway authenticated for a request.
#[derive(Debug, Clone)]
pub enum Caller {
    /// As API Gateway would route the path: the operator for a top-up,
    /// else [`TEST_CLIENT`] with every scope.
    Default,
    /// Nothing authenticated (an open route, or a bypassed authorizer).
    Anonymous,
    User(String),
    Client {
        id: String,
        scopes: String,
    },
    Operator(String),
}

/// One HTTP request as API Gateway would deliver it.
#[derive(Debug, Clone)]
pub struct Req {
    pub method: &'static str,
    pub path: String,
    pub headers: HashMap<String, String>,
    pub query: HashMap<String, String>,
    pub body: Option<String>,
    pub request_id: Option<String>,
    pub caller: Caller,
}

impl Req {
    pub fn new(method: &'static str, path: impl Into<String>) -> Self {
        Self {
            method,
            path: path.into(),
            headers: HashMap::new(),
            query: HashMap::new(),
            body: None,
            request_id: Some(REQUEST_ID.to_owned()),
            caller: Caller::Default,
        }
    }

    /// As end user `user_id` (their bearer token's subject).
    pub fn by_user(mut self, user_id: &str) -> Self {
        self.caller = Caller::User(user_id.to_owned());
        self
    }

    /// As service client `id` holding `scopes` (space-separated).
    pub fn by_client(mut self, id: &str, scopes: &str) -> Self {
        self.caller = Caller::Client {
            id: id.to_owned(),
            scopes: scopes.to_owned(),
        };
        self
    }

    pub fn by_operator(mut self, arn: &str) -> Self {
        self.caller = Caller::Operator(arn.to_owned());
        self
    }

    pub fn anonymous(mut self) -> Self {
        self.caller = Caller::Anonymous;
        self
    }

    /// Whether API Gateway sends this request to operator-api.
    pub fn is_operator_route(&self) -> bool {
        self.method == "POST"
            && self.path.starts_with("/wallets/")
            && self.path.ends_with("/credit")
    }

    /// `requestContext.authorizer` and `identity` for the caller.
    fn auth(&self) -> (Value, Value) {
        let source_ip = "203.0.113.9";
        let caller = match &self.caller {
            Caller::Default if self.is_operator_route() => Caller::Operator(OPERATOR_ARN.into()),
            Caller::Default => Caller::Client {
                id: TEST_CLIENT.into(),
                scopes: "payments:write payments:read refunds:write wallets:read".into(),
            },
            other => other.clone(),
        };
        match caller {
            Caller::Default | Caller::Anonymous => (Value::Null, json!({"sourceIp": source_ip})),
            Caller::User(user) => (
                json!({"principalId": format!("user:{user}"), "principalType": "user", "userId": user}),
                json!({"sourceIp": source_ip}),
            ),
            Caller::Client { id, scopes } => (
                json!({"principalId": format!("client:{id}"), "principalType": "client",
                    "clientId": id, "scopes": scopes}),
                json!({"sourceIp": source_ip, "apiKeyId": format!("key-{id}")}),
            ),
            Caller::Operator(arn) => (
                Value::Null,
                json!({"sourceIp": source_ip, "userArn": arn, "caller": "AROAEXAMPLE:ops"}),
            ),
        }
    }

    pub fn get(path: impl Into<String>) -> Self {
        Self::new("GET", path)
    }

    pub fn post(path: impl Into<String>, body: Value) -> Self {
        Self::new("POST", path).raw_body(&body.to_string())
    }

    /// A body exactly as given, declared as JSON.
    pub fn raw_body(mut self, body: &str) -> Self {
        self.body = Some(body.to_owned());
        self.header("Content-Type", "application/json")
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.insert(name.to_owned(), value.to_owned());
        self
    }

    pub fn key(self, idempotency_key: &str) -> Self {
        self.header("Idempotency-Key", idempotency_key)
    }

    pub fn query(mut self, name: &str, value: &str) -> Self {
        self.query.insert(name.to_owned(), value.to_owned());
        self
    }

    pub fn event(&self) -> ApiGatewayProxyRequest {
        let query = if self.query.is_empty() {
            Value::Null
        } else {
            json!(self.query)
        };
        let (authorizer, identity) = self.auth();
        serde_json::from_value(json!({
            "resource": "/{proxy+}",
            "path": self.path,
            "httpMethod": self.method,
            "headers": self.headers,
            "multiValueHeaders": {},
            "queryStringParameters": query,
            "multiValueQueryStringParameters": null,
            "pathParameters": null,
            "stageVariables": null,
            "requestContext": {
                "accountId": "123456789012",
                "resourceId": "abc123",
                "stage": "dev",
                "requestId": self.request_id,
                "identity": identity,
                "authorizer": authorizer,
                "resourcePath": "/{proxy+}",
                "httpMethod": self.method,
                "apiId": "api1234"
            },
            "body": self.body,
            "isBase64Encoded": false
        }))
        .expect("a valid proxy event")
    }
}

fn lambda_context() -> Context {
    let mut context = Context::default();
    context.request_id = "lambda-request-1".to_owned();
    context
}

/// A response, parsed.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
    pub raw: ApiGatewayProxyResponse,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.raw.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The error `code` of an error response.
    pub fn code(&self) -> &str {
        self.body["error"]["code"]
            .as_str()
            .unwrap_or("<no error code>")
    }

    pub fn param(&self) -> Option<&str> {
        self.body["error"]["param"].as_str()
    }

    pub fn text(&self, field: &str) -> String {
        self.body[field]
            .as_str()
            .unwrap_or_else(|| panic!("`{field}` is not a string in {}", self.body))
            .to_owned()
    }
}

pub struct Harness {
    pub store: Arc<InMemoryStore>,
    /// operator-api's dependencies, over the same store.
    pub operator: OperatorDeps,
    pub saga: Arc<FakeSaga>,
    pub refunder: Arc<FakeRefunder>,
    pub reconciler: Arc<FakeReconciler>,
    pub deps: Deps,
}

/// The webhook secret every harness verifies with.
pub const WEBHOOK_SECRET: &[u8] = b"whsec_test_harness";

/// Records what the webhook route asked the reconciler; fails on demand.
#[derive(Default)]
pub struct FakeReconciler {
    pub requests: Mutex<Vec<shared::events::ReconcileRequest>>,
    pub failing: std::sync::atomic::AtomicBool,
}

#[async_trait]
impl api_handler::ReconcileTrigger for FakeReconciler {
    async fn reconcile(&self, request: &shared::events::ReconcileRequest) -> Result<(), String> {
        if self.failing.load(std::sync::atomic::Ordering::SeqCst) {
            return Err("simulated: Lambda throttled the invoke".to_owned());
        }
        self.requests.lock().unwrap().push(request.clone());
        Ok(())
    }
}

impl Harness {
    pub fn new() -> Self {
        Self::with_amount_max(AMOUNT_MAX_DEFAULT)
    }

    pub fn with_amount_max(amount_max: rust_decimal::Decimal) -> Self {
        let store = Arc::new(InMemoryStore::new());
        let saga = Arc::new(FakeSaga::over(store.clone()));
        let refunder = Arc::new(FakeRefunder::new(store.clone()));
        let reconciler = Arc::new(FakeReconciler::default());
        let deps = Deps {
            payments: store.clone(),
            events: store.clone(),
            wallets: store.clone(),
            refunds: store.clone(),
            idempotency: store.clone(),
            saga: saga.clone(),
            refunder: refunder.clone(),
            reconciler: reconciler.clone(),
            webhook_secret: Some(api_handler::WebhookSecret(WEBHOOK_SECRET.to_vec())),
            amount_max,
        };
        let operator = OperatorDeps {
            wallets: store.clone(),
            idempotency: store.clone(),
            amount_max,
        };
        Self {
            store,
            operator,
            saga,
            refunder,
            reconciler,
            deps,
        }
    }

    /// Sends the request to the function API Gateway routes it to:
    /// operator-api for a top-up, api-handler for everything else.
    pub async fn send(&self, req: Req) -> Reply {
        if req.is_operator_route() {
            self.send_to_operator_api(req).await
        } else {
            self.send_to_api_handler(req).await
        }
    }

    pub async fn send_to_api_handler(&self, req: Req) -> Reply {
        let Ok(raw) = handle(&self.deps, LambdaEvent::new(req.event(), lambda_context())).await;
        Self::reply(raw)
    }

    pub async fn send_to_operator_api(&self, req: Req) -> Reply {
        let event = LambdaEvent::new(req.event(), lambda_context());
        let Ok(raw) = handle_operator(&self.operator, event).await;
        Self::reply(raw)
    }

    fn reply(raw: ApiGatewayProxyResponse) -> Reply {
        let text = match &raw.body {
            Some(Body::Text(text)) => text.clone(),
            other => panic!("expected a text body, got {other:?}"),
        };
        let body = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
        let reply = Reply {
            status: u16::try_from(raw.status_code).unwrap(),
            body,
            raw,
        };
        // Every response, errors included, is JSON with the request id.
        assert_eq!(reply.header("content-type"), Some("application/json"));
        assert!(reply.header("x-request-id").is_some(), "no X-Request-Id");
        reply
    }

    /// A PENDING payment made through the API; returns its id.
    pub async fn create_payment(&self, user: &str, amount: &str) -> PaymentId {
        let reply = self
            .send(Req::post(
                "/payments",
                json!({"userId": user, "amount": amount, "currency": "USD"}),
            ))
            .await;
        assert_eq!(reply.status, 202, "{}", reply.body);
        PaymentId::parse(&reply.text("paymentId")).unwrap()
    }

    /// A COMPLETED payment, as the saga leaves it.
    pub async fn completed_payment(&self, user: &str, amount: &str) -> PaymentId {
        let payment_id = self.create_payment(user, amount).await;
        let at = Timestamp::now();
        let store = self.store.as_ref();
        PaymentRepo::transition(
            store,
            &payment_id,
            &PaymentChange::to(PaymentStatus::Processing),
            at,
        )
        .await
        .unwrap();
        let complete = PaymentChange::completed("gw_ref_1".to_owned());
        PaymentRepo::transition(store, &payment_id, &complete, at)
            .await
            .unwrap();
        payment_id
    }

    /// Idempotency keys are kept in a store whose releases always fail.
    pub fn with_unreleasable_keys(mut self) -> Self {
        self.deps.idempotency = Arc::new(UnreleasableKeys(self.store.clone()));
        self
    }

    /// Payments are written through a store whose creates (and the first
    /// transitions, if asked) fail as scripted.
    pub fn with_flaky_payments(mut self) -> (Self, Arc<FlakyPayments>) {
        let flaky = Arc::new(FlakyPayments {
            store: self.store.clone(),
            failures: Mutex::new(VecDeque::new()),
            attempts: Mutex::new(0),
            transition_failures: Mutex::new(0),
        });
        self.deps.payments = flaky.clone();
        (self, flaky)
    }

    pub async fn payment(&self, payment_id: &PaymentId) -> Payment {
        PaymentRepo::get(self.store.as_ref(), payment_id)
            .await
            .unwrap()
            .unwrap()
    }
}

/// One scripted answer of the fake Step Functions to a start.
#[derive(Debug, Clone)]
pub enum StartAnswer {
    /// The execution starts (or, already started under this name, is found).
    Started,
    /// Nothing started (refused, or lost before it reached Step Functions).
    NotStarted(SagaStartError),
    /// The execution started but its answer was lost.
    Lost(SagaStartError),
    /// The execution started and its saga debited the wallet and marked the
    /// payment PROCESSING before the lost answer came back.
    LostAfterProcessing(SagaStartError),
}

/// Records starts; de-duplicates by execution name like STANDARD workflows;
/// answers from a script, then fails (or not) as set; can hold a start until
/// released (to observe a request in flight).
#[derive(Default)]
pub struct FakeSaga {
    /// One entry per execution (by name): a repeated start finds it.
    pub starts: Mutex<Vec<SagaInput>>,
    pub failure: Mutex<Option<SagaStartError>>,
    pub script: Mutex<VecDeque<StartAnswer>>,
    pub attempts: Mutex<u32>,
    pub gate: Mutex<Option<(Arc<Notify>, Arc<Notify>)>>,
    /// Where a started saga records its progress (`LostAfterProcessing`).
    store: Option<Arc<InMemoryStore>>,
    /// Refund saga executions (by name), and how every refund start fails.
    pub refund_starts: Mutex<Vec<RefundSagaInput>>,
    pub refund_failure: Mutex<Option<SagaStartError>>,
}

impl FakeSaga {
    pub fn over(store: Arc<InMemoryStore>) -> Self {
        Self {
            store: Some(store),
            ..Self::default()
        }
    }

    /// Every start not scripted fails with `err` (or, with `None`, starts).
    pub fn fail_with(&self, err: Option<SagaStartError>) {
        *self.failure.lock().unwrap() = err;
    }

    /// The next starts answer these, in order.
    pub fn script(&self, answers: impl IntoIterator<Item = StartAnswer>) {
        self.script.lock().unwrap().extend(answers);
    }

    /// Executions that exist.
    pub fn start_count(&self) -> usize {
        self.starts.lock().unwrap().len()
    }

    /// Calls to `start`, answered or not.
    pub fn attempt_count(&self) -> u32 {
        *self.attempts.lock().unwrap()
    }

    /// Makes the next start wait: returns (entered, release).
    pub fn hold_next_start(&self) -> (Arc<Notify>, Arc<Notify>) {
        let pair = (Arc::new(Notify::new()), Arc::new(Notify::new()));
        *self.gate.lock().unwrap() = Some(pair.clone());
        pair
    }

    fn record(&self, input: &SagaInput) {
        let mut starts = self.starts.lock().unwrap();
        if !starts.iter().any(|s| s.payment_id == input.payment_id) {
            starts.push(input.clone());
        }
    }

    fn next_answer(&self) -> StartAnswer {
        *self.attempts.lock().unwrap() += 1;
        if let Some(answer) = self.script.lock().unwrap().pop_front() {
            return answer;
        }
        match self.failure.lock().unwrap().clone() {
            Some(err) => StartAnswer::NotStarted(err),
            None => StartAnswer::Started,
        }
    }
}

#[async_trait]
impl SagaStarter for FakeSaga {
    async fn start(&self, input: &SagaInput) -> Result<String, SagaStartError> {
        let gate = self.gate.lock().unwrap().take();
        if let Some((entered, release)) = gate {
            entered.notify_one();
            release.notified().await;
        }
        match self.next_answer() {
            StartAnswer::Started => {
                self.record(input);
                let machine = STATE_MACHINE.replace(":stateMachine:", ":execution:");
                Ok(format!("{machine}:{}", input.payment_id))
            }
            StartAnswer::NotStarted(err) => Err(err),
            StartAnswer::Lost(err) => {
                self.record(input);
                Err(err)
            }
            StartAnswer::LostAfterProcessing(err) => {
                self.record(input);
                let store = self.store.as_deref().expect("FakeSaga::over a store");
                let processing = PaymentChange::to(PaymentStatus::Processing);
                PaymentRepo::transition(store, &input.payment_id, &processing, Timestamp::now())
                    .await
                    .unwrap();
                Err(err)
            }
        }
    }

    async fn start_refund(&self, input: &RefundSagaInput) -> Result<String, SagaStartError> {
        if let Some(err) = self.refund_failure.lock().unwrap().clone() {
            return Err(err);
        }
        let mut starts = self.refund_starts.lock().unwrap();
        if !starts.iter().any(|s| s.refund_id == input.refund_id) {
            starts.push(input.clone());
        }
        let machine = REFUND_STATE_MACHINE.replace(":stateMachine:", ":execution:");
        Ok(format!("{machine}:{}", input.refund_id))
    }
}

/// How a scripted create fails: before writing, or after its write committed
/// (the answer was lost on the way back).
#[derive(Debug, Clone)]
pub enum CreateFailure {
    Before(StoreError),
    After(StoreError),
}

/// The in-memory payment store, with creates that fail as scripted and
/// transitions that throttle a given number of times.
pub struct FlakyPayments {
    store: Arc<InMemoryStore>,
    failures: Mutex<VecDeque<CreateFailure>>,
    attempts: Mutex<u32>,
    transition_failures: Mutex<u32>,
}

impl FlakyPayments {
    pub fn fail(&self, failures: impl IntoIterator<Item = CreateFailure>) {
        self.failures.lock().unwrap().extend(failures);
    }

    /// The next `count` transitions are throttled, writing nothing.
    pub fn throttle_transitions(&self, count: u32) {
        *self.transition_failures.lock().unwrap() = count;
    }

    pub fn attempt_count(&self) -> u32 {
        *self.attempts.lock().unwrap()
    }
}

#[async_trait]
impl PaymentRepo for FlakyPayments {
    async fn create(&self, new: NewPayment, at: Timestamp) -> Result<Created<Payment>, StoreError> {
        *self.attempts.lock().unwrap() += 1;
        let failure = self.failures.lock().unwrap().pop_front();
        match failure {
            None => PaymentRepo::create(self.store.as_ref(), new, at).await,
            Some(CreateFailure::Before(err)) => Err(err),
            Some(CreateFailure::After(err)) => {
                PaymentRepo::create(self.store.as_ref(), new, at)
                    .await
                    .unwrap();
                Err(err)
            }
        }
    }

    async fn get(&self, payment_id: &PaymentId) -> Result<Option<Payment>, StoreError> {
        PaymentRepo::get(self.store.as_ref(), payment_id).await
    }

    async fn transition(
        &self,
        payment_id: &PaymentId,
        change: &PaymentChange,
        at: Timestamp,
    ) -> Result<Payment, StoreError> {
        {
            let mut left = self.transition_failures.lock().unwrap();
            if *left > 0 {
                *left -= 1;
                return Err(StoreError::Repo(RepoError::Throttled(
                    "Rate exceeded".into(),
                )));
            }
        }
        PaymentRepo::transition(self.store.as_ref(), payment_id, change, at).await
    }

    async fn keep_wait_token(
        &self,
        payment_id: &PaymentId,
        token: &str,
    ) -> Result<Payment, StoreError> {
        PaymentRepo::keep_wait_token(self.store.as_ref(), payment_id, token).await
    }

    async fn list_by_user(
        &self,
        user_id: &UserId,
        limit: u32,
        cursor: Option<&str>,
    ) -> Result<Page<Payment>, StoreError> {
        PaymentRepo::list_by_user(self.store.as_ref(), user_id, limit, cursor).await
    }

    async fn open_payments(
        &self,
        shard: u32,
        since: Option<Timestamp>,
        limit: u32,
        cursor: Option<&str>,
    ) -> Result<Page<Payment>, StoreError> {
        self.store.open_payments(shard, since, limit, cursor).await
    }
}

/// The in-memory idempotency store, whose releases never land.
pub struct UnreleasableKeys(Arc<InMemoryStore>);

#[async_trait]
impl IdempotencyRepo for UnreleasableKeys {
    async fn claim(
        &self,
        record: &IdempotencyRecord,
        now: Timestamp,
    ) -> Result<ClaimOutcome, StoreError> {
        self.0.claim(record, now).await
    }

    async fn complete(&self, key: &str, state: &IdempotencyState) -> Result<(), StoreError> {
        self.0.complete(key, state).await
    }

    async fn release(&self, _key: &str, _claimed_at: Timestamp) -> Result<(), StoreError> {
        Err(StoreError::Repo(RepoError::Unavailable(
            "connection reset".into(),
        )))
    }
}

/// Plays refund-service's RESERVE over the in-memory store (idempotent by
/// refund id: the REQUESTED refund, its amount reserved on the payment), or
/// fails with a configured error.
pub struct FakeRefunder {
    store: Arc<InMemoryStore>,
    pub calls: Mutex<Vec<RefundCommand>>,
    pub failure: Mutex<Option<RefundInvokeError>>,
}

impl FakeRefunder {
    fn new(store: Arc<InMemoryStore>) -> Self {
        Self {
            store,
            calls: Mutex::new(Vec::new()),
            failure: Mutex::new(None),
        }
    }

    pub fn fail_with(&self, err: Option<RefundInvokeError>) {
        *self.failure.lock().unwrap() = err;
    }

    pub fn call_count(&self) -> usize {
        self.calls.lock().unwrap().len()
    }
}

#[async_trait]
impl RefundInvoker for FakeRefunder {
    async fn reserve(&self, command: &RefundCommand) -> Result<Refund, RefundInvokeError> {
        self.calls.lock().unwrap().push(command.clone());
        if let Some(err) = self.failure.lock().unwrap().clone() {
            return Err(err);
        }
        let store = self.store.as_ref();
        if let Some(done) = RefundRepo::get(store, &command.refund_id).await.unwrap() {
            return Ok(done);
        }
        let payment = PaymentRepo::get(store, &command.payment_id)
            .await
            .unwrap()
            .unwrap();
        let amount: Money = command.amount.unwrap_or(payment.refundable_amount());
        let at = Timestamp::now();
        let requested = Refund::request(
            command.refund_id,
            payment.payment_id,
            payment.user_id.clone(),
            amount,
            command.reason.clone(),
            at,
        );
        let reserved = RefundRepo::reserve(store, &requested, &payment, at)
            .await
            .unwrap();
        Ok(reserved.into_inner().0)
    }
}

/// `value` with the keys in `volatile` (generated ids, times) replaced by
/// `"<key>"` after checking they are present and non-empty strings.
pub fn golden(value: &Value, volatile: &[&str]) -> Value {
    let mut copy = value.clone();
    for key in volatile {
        let slot = &mut copy[*key];
        assert!(
            slot.as_str().is_some_and(|s| !s.is_empty()),
            "`{key}` missing in {value}"
        );
        *slot = json!(format!("<{key}>"));
    }
    copy
}
