//! The whole local cloud in one place: embedded DynamoDB with the template's
//! tables, the mock gateway (its own binary), the Lambda functions (their own
//! binaries, as child processes), Step Functions and the two HTTP fronts —
//! the AWS edge endpoint and the API Gateway proxy. `main.rs` and the
//! end-to-end tests both start it through [`LocalCloud::start`].

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::process::{Child, Command};
use tokio::sync::oneshot;

use crate::asl::{Clock, SystemClock};
use crate::dynamo::{self, EmbeddedDynamo};
use crate::issuer::Issuer;
use crate::lambda::{InvokeError, LambdaConfig, LambdaService};
use crate::sfn::{LambdaTaskRunner, StepFunctions, StepFunctionsApi};
use crate::template::{Context, Template};
use crate::{FunctionInvoker, InvokeFailure, api_client, apigw, edge, issuer};

/// The API key the mock gateway requires and the functions send, locally.
pub const LOCAL_GATEWAY_API_KEY: &str = "local-gateway-key";
/// The secret gateway webhooks are signed with locally (a fixed development
/// secret; on AWS an SSM SecureString).
pub const LOCAL_WEBHOOK_SECRET: &str = "whsec_local_development";
/// How long start-up waits for the mock gateway to answer its health check.
const GATEWAY_READY_SECONDS_MAX: u64 = 20;

#[derive(Debug, Clone)]
pub struct Options {
    /// The repository root: `template.yml` and the ASL files are read from here.
    pub root: PathBuf,
    /// `.local/`: data, logs, executions.
    pub data_dir: PathBuf,
    /// Keep DynamoDB and executions in memory only (tests).
    pub in_memory: bool,
    /// Where the function and mock-gateway binaries are (`target/debug`).
    pub bin_dir: PathBuf,
    /// 0 picks a free port.
    pub edge_port: u16,
    pub api_port: u16,
    pub gateway_port: u16,
    /// Waits and retry intervals are multiplied by this (1 = real time).
    pub time_scale: f64,
    /// Instances per function at most.
    pub instance_count_max: u32,
    /// How long a PENDING charge stays pending at the mock gateway.
    pub gateway_pending_delay_ms: u64,
    /// Extra environment for every function, over the template's (tests use
    /// it for short breaker timings, e.g. `OPEN_SECONDS=2`).
    pub function_env: BTreeMap<String, String>,
    /// Run the template's schedules (the reconciler every 5 minutes). Tests
    /// that invoke the reconciler themselves leave them off.
    pub schedules: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Endpoints {
    pub edge: String,
    pub api: String,
    pub gateway: String,
    /// The end users' token issuer (`iss`), served by the edge.
    pub issuer: String,
}

#[derive(Debug, thiserror::Error)]
pub enum CloudError {
    #[error(transparent)]
    Template(#[from] crate::template::TemplateError),
    #[error(transparent)]
    Dynamo(#[from] crate::dynamo::DynamoError),
    #[error(transparent)]
    Lambda(#[from] crate::lambda::LambdaError),
    #[error(transparent)]
    StepFunctions(#[from] crate::sfn::SfnError),
    #[error("{0}")]
    Io(String),
    #[error("mock gateway: {0}")]
    Gateway(String),
    #[error("local issuer: {0}")]
    Issuer(#[from] crate::issuer::IssuerError),
}

fn io(context: &str) -> impl Fn(std::io::Error) -> CloudError + '_ {
    move |err| CloudError::Io(format!("{context}: {err}"))
}

/// Invokes functions of the local Lambda service.
pub struct LambdaInvoker(pub Arc<LambdaService>);

#[async_trait]
impl FunctionInvoker for LambdaInvoker {
    async fn invoke_function(
        &self,
        function: &str,
        payload: Value,
    ) -> Result<Value, InvokeFailure> {
        self.0
            .invoke(function, payload)
            .await
            .map_err(|err| match err {
                InvokeError::Function {
                    error_type,
                    error_message,
                } => InvokeFailure {
                    error_type,
                    error_message,
                },
                InvokeError::NotFound(message) => InvokeFailure {
                    error_type: "Lambda.ResourceNotFoundException".into(),
                    error_message: message,
                },
                InvokeError::TooManyRequests(message) => InvokeFailure {
                    error_type: "Lambda.TooManyRequestsException".into(),
                    error_message: message,
                },
            })
    }
}

pub struct LocalCloud {
    pub endpoints: Endpoints,
    /// The template as it runs: parameter overrides applied, and the local
    /// issuer in the authorizer's environment ([`use_local_issuer`]).
    pub template: Template,
    /// Mints end users' tokens in process (tests); tools use
    /// [`crate::issuer::TOKEN_PATH`] on the edge.
    pub issuer: Arc<Issuer>,
    pub lambda: Arc<LambdaService>,
    pub step_functions: Arc<StepFunctions>,
    dynamo: Option<EmbeddedDynamo>,
    gateway: Option<Child>,
    servers: Vec<(oneshot::Sender<()>, tokio::task::JoinHandle<()>)>,
    schedules: Vec<tokio::task::JoinHandle<()>>,
}

impl LocalCloud {
    /// Starts the cloud with the template's parameter defaults (and the
    /// local cloud's own, [`crate::template::LOCAL_PARAMETER_OVERRIDES`]).
    pub async fn start(options: Options) -> Result<Self, CloudError> {
        Self::start_with_parameters(options, BTreeMap::new()).await
    }

    /// Starts the cloud with template parameter overrides, as SAM's
    /// `--parameter-overrides Name=Value …` (e.g. `ClientRateLimit=2`); each
    /// must name a parameter of the template.
    pub async fn start_with_parameters(
        mut options: Options,
        parameter_overrides: BTreeMap<String, String>,
    ) -> Result<Self, CloudError> {
        std::fs::create_dir_all(&options.data_dir)
            .map_err(io("cannot create the data directory"))?;
        // Children run with their own working directory: hand them absolute paths.
        for path in [
            &mut options.root,
            &mut options.data_dir,
            &mut options.bin_dir,
        ] {
            *path = std::fs::canonicalize(&*path)
                .map_err(|err| CloudError::Io(format!("{}: {err}", path.display())))?;
        }
        let context = Context::default().with_parameters(parameter_overrides);
        let mut template = Template::load(&options.root.join("template.yml"), context)?;
        let log_dir = options.data_dir.join("logs");
        std::fs::create_dir_all(&log_dir).map_err(io("cannot create the logs directory"))?;
        let edge_listener = bind(options.edge_port).await?;
        let api_listener = bind(options.api_port).await?;
        let edge_address = local_address(&edge_listener)?;
        let api_address = local_address(&api_listener)?;
        let issuer = Arc::new(Issuer::generate(issuer::issuer_url(edge_address.port()))?);
        use_local_issuer(&mut template, &issuer, edge_address.port());

        let dynamo = start_dynamo(&options).await?;
        let client = dynamo::client(dynamo.endpoint());
        dynamo::create_tables(&client, &template.tables).await?;
        api_client::seed(&client, &template).await?;

        let gateway_port = if options.gateway_port == 0 {
            free_port().await?
        } else {
            options.gateway_port
        };
        let webhook_url = format!("http://{api_address}/webhooks/gateway");
        let gateway = start_gateway(&options, gateway_port, &log_dir, &webhook_url).await?;
        let endpoints = Endpoints {
            edge: format!("http://{edge_address}"),
            api: format!("http://{api_address}"),
            gateway: format!("http://127.0.0.1:{gateway_port}"),
            issuer: issuer.url().to_owned(),
        };

        let lambda_config = LambdaConfig {
            bin_dir: options.bin_dir.clone(),
            log_dir,
            extra_env: function_environment(&endpoints, &options.function_env),
            instance_count_max: options.instance_count_max,
        };
        let lambda = LambdaService::start(&template.functions, lambda_config).await?;
        let invoker: Arc<dyn FunctionInvoker> = Arc::new(LambdaInvoker(Arc::clone(&lambda)));
        let clock: Arc<dyn Clock> = Arc::new(
            SystemClock::with_time_scale(options.time_scale)
                .map_err(|err| CloudError::Io(err.to_string()))?,
        );
        let store_dir = (!options.in_memory).then(|| options.data_dir.join("executions"));
        let runner = Arc::new(LambdaTaskRunner {
            invoker: Arc::clone(&invoker),
            tokens: crate::asl::TaskTokens::new(),
        });
        let step_functions =
            StepFunctions::start(&template, &options.root, runner, clock, store_dir)?;

        let edge_router = edge::router(
            dynamo.endpoint(),
            Arc::new(StepFunctionsApi(Arc::clone(&step_functions))),
            crate::lambda::invoke_routes(Arc::clone(&lambda))
                .merge(crate::lambda::admin_routes(Arc::clone(&lambda)))
                .merge(issuer::routes(Arc::clone(&issuer), api_client::listing())),
        );
        let schedules = if options.schedules {
            crate::schedule::start(
                &template.functions,
                &invoker,
                options.data_dir.join("schedules"),
            )
        } else {
            Vec::new()
        };
        let api_settings = apigw::ApiSettings::from_template(&template)
            .with_usage_keys(api_client::usage_keys(&template)?);
        let api_router = apigw::router(api_settings, invoker);
        let servers = vec![
            serve(edge_listener, edge_router),
            serve(api_listener, api_router),
        ];
        Ok(Self {
            endpoints,
            template,
            issuer,
            lambda,
            step_functions,
            dynamo: Some(dynamo),
            gateway,
            servers,
            schedules,
        })
    }

    /// The state machine ARN of the payment saga (the template's first).
    pub fn saga_arn(&self) -> Option<String> {
        self.step_functions.state_machine_arns().into_iter().next()
    }

    /// Stops everything it started; no child process is left behind.
    /// Executions in flight are frozen first, before the functions they call
    /// go away, so that the next start resumes them (see [`crate::sfn`]).
    pub async fn shutdown(mut self) {
        for schedule in self.schedules.drain(..) {
            schedule.abort();
        }
        for (stop, task) in self.servers.drain(..) {
            let _ = stop.send(());
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
        self.step_functions.shutdown();
        self.lambda.shutdown().await;
        if let Some(mut gateway) = self.gateway.take() {
            let _ = gateway.kill().await;
        }
        if let Some(dynamo) = self.dynamo.take() {
            dynamo.stop().await;
        }
    }
}

/// The one local deviation from the template's functions (Cognito is not
/// emulated): the API's authorizer functions verify end users' tokens against
/// the local issuer ([`crate::issuer`]) instead of a Cognito user pool — its
/// `JWT_ISSUER` and `JWKS_URL` replace the template's. Their audience, and
/// everything else, is the template's (with
/// [`crate::template::LOCAL_PARAMETER_OVERRIDES`]).
fn use_local_issuer(template: &mut Template, issuer: &Issuer, edge_port: u16) {
    let authorizers: Vec<String> = template
        .api
        .iter()
        .flat_map(|api| api.authorizers.values())
        .map(|authorizer| authorizer.function_name.clone())
        .collect();
    for function in template
        .functions
        .iter_mut()
        .filter(|f| authorizers.contains(&f.function_name))
    {
        function
            .environment
            .insert(issuer::ENV_JWT_ISSUER.to_owned(), issuer.url().to_owned());
        function
            .environment
            .insert(issuer::ENV_JWKS_URL.to_owned(), issuer::jwks_url(edge_port));
    }
}

/// What every function gets on top of the template's environment: the local
/// AWS endpoint (so the SDKs talk to this cloud), dummy credentials, and the
/// mock gateway's URL and key (the key replaces the SSM lookup locally).
fn function_environment(
    endpoints: &Endpoints,
    overrides: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut environment = BTreeMap::from([
        ("AWS_ENDPOINT_URL".to_owned(), endpoints.edge.clone()),
        ("AWS_REGION".to_owned(), "us-east-1".to_owned()),
        ("AWS_DEFAULT_REGION".to_owned(), "us-east-1".to_owned()),
        (
            "AWS_ACCESS_KEY_ID".to_owned(),
            crate::LOCAL_ACCESS_KEY_ID.to_owned(),
        ),
        (
            "AWS_SECRET_ACCESS_KEY".to_owned(),
            crate::LOCAL_SECRET_ACCESS_KEY.to_owned(),
        ),
        ("GATEWAY_URL".to_owned(), endpoints.gateway.clone()),
        (
            "GATEWAY_API_KEY".to_owned(),
            LOCAL_GATEWAY_API_KEY.to_owned(),
        ),
        ("WEBHOOK_SECRET".to_owned(), LOCAL_WEBHOOK_SECRET.to_owned()),
    ]);
    environment.extend(overrides.iter().map(|(k, v)| (k.clone(), v.clone())));
    environment
}

async fn bind(port: u16) -> Result<TcpListener, CloudError> {
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    TcpListener::bind(address).await.map_err(|err| {
        CloudError::Io(format!(
            "cannot listen on {address}: {err} (is another local cloud running? `make stop-all`)"
        ))
    })
}

fn local_address(listener: &TcpListener) -> Result<SocketAddr, CloudError> {
    listener.local_addr().map_err(io("listener address"))
}

async fn free_port() -> Result<u16, CloudError> {
    let listener = bind(0).await?;
    Ok(local_address(&listener)?.port())
}

async fn start_dynamo(options: &Options) -> Result<EmbeddedDynamo, CloudError> {
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
    Ok(if options.in_memory {
        EmbeddedDynamo::start_in_memory(address).await?
    } else {
        EmbeddedDynamo::start_persistent(&options.data_dir.join("dynamodb.sqlite"), address).await?
    })
}

fn serve(
    listener: TcpListener,
    router: axum::Router,
) -> (oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let shutdown = async move {
            let _ = stopped.await;
        };
        if let Err(err) = axum::serve(listener, router)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!(error = %err, "server failed");
        }
    });
    (stop, task)
}

/// Starts the mock gateway binary and waits until its health check answers.
async fn start_gateway(
    options: &Options,
    port: u16,
    log_dir: &Path,
    webhook_url: &str,
) -> Result<Option<Child>, CloudError> {
    let binary = options.bin_dir.join("mock-gateway");
    if !binary.exists() {
        return Err(CloudError::Gateway(format!(
            "{} not found: build it with `cargo build -p mock-gateway`",
            binary.display()
        )));
    }
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_dir.join("mock-gateway.log"))
        .map_err(io("cannot open the mock gateway log"))?;
    let log_err = log
        .try_clone()
        .map_err(io("cannot open the mock gateway log"))?;
    let child = Command::new(&binary)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("PORT", port.to_string())
        .env("GATEWAY_API_KEY", LOCAL_GATEWAY_API_KEY)
        // Its signed webhooks come back to this cloud's API.
        .env("WEBHOOK_URL", webhook_url)
        .env("WEBHOOK_SECRET", LOCAL_WEBHOOK_SECRET)
        .env(
            "PENDING_DELAY_MS",
            options.gateway_pending_delay_ms.to_string(),
        )
        .env("RUST_LOG", "info")
        // Our end of this pipe closes when this process dies, however it dies:
        // the gateway then stops instead of lingering as an orphan.
        .env("EXIT_WITH_PARENT", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(log_err))
        .kill_on_drop(true)
        .spawn()
        .map_err(|err| CloudError::Gateway(format!("cannot start {}: {err}", binary.display())))?;
    wait_healthy(&format!("http://127.0.0.1:{port}/health")).await?;
    Ok(Some(child))
}

async fn wait_healthy(url: &str) -> Result<(), CloudError> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_millis(500))
        .build()
        .map_err(|err| CloudError::Gateway(err.to_string()))?;
    let deadline = Instant::now() + Duration::from_secs(GATEWAY_READY_SECONDS_MAX);
    while Instant::now() < deadline {
        if client
            .get(url)
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(CloudError::Gateway(format!(
        "{url} did not answer within {GATEWAY_READY_SECONDS_MAX} s"
    )))
}

/// A JSON summary of the running cloud, for `make status` and the logs.
pub fn summary(cloud: &LocalCloud) -> Value {
    json!({
        "endpoints": cloud.endpoints,
        "stateMachines": cloud.step_functions.state_machine_arns(),
        "functions": cloud.template.functions.iter().map(|f| f.function_name.clone()).collect::<Vec<_>>(),
        "tables": cloud.template.tables.iter().map(|t| t.table_name.clone()).collect::<Vec<_>>(),
    })
}
