//! The template's schedules (`Events` of type `Schedule`), run as
//! EventBridge runs them: each function invoked with its event's `Input`
//! once per period, the first time one period after the start. The latest
//! answer (for the reconciler: its report) is kept in
//! `<data dir>/schedules/<function>-latest.json`; its log has every run.

use std::path::PathBuf;
use std::sync::Arc;

use serde_json::Value;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::FunctionInvoker;
use crate::template::FunctionSpec;

/// Starts one task per schedule; abort them to stop.
pub fn start(
    functions: &[FunctionSpec],
    invoker: &Arc<dyn FunctionInvoker>,
    report_dir: PathBuf,
) -> Vec<JoinHandle<()>> {
    let mut tasks = Vec::new();
    for function in functions {
        for schedule in &function.schedules {
            let input: Value = serde_json::from_str(&schedule.input).unwrap_or(Value::Null);
            let (invoker, dir) = (Arc::clone(invoker), report_dir.clone());
            let (name, period) = (function.function_name.clone(), schedule.period);
            info!(function = %name, schedule = %schedule.name, period_s = period.as_secs(),
                "schedule armed");
            tasks.push(tokio::spawn(async move {
                let mut ticks =
                    tokio::time::interval_at(tokio::time::Instant::now() + period, period);
                ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
                loop {
                    ticks.tick().await;
                    let answer = invoker.invoke_function(&name, input.clone()).await;
                    save(&dir, &name, &answer);
                }
            }));
        }
    }
    tasks
}

fn save(dir: &std::path::Path, function: &str, answer: &Result<Value, crate::InvokeFailure>) {
    let body = match answer {
        Ok(value) => {
            info!(function, "scheduled invocation answered");
            value.clone()
        }
        Err(failure) => {
            warn!(function, errorType = %failure.error_type, error = %failure.error_message,
                "scheduled invocation failed");
            serde_json::json!({"errorType": failure.error_type, "errorMessage": failure.error_message})
        }
    };
    let text = format!("{body:#}\n");
    let written = std::fs::create_dir_all(dir)
        .and_then(|()| std::fs::write(dir.join(format!("{function}-latest.json")), &text));
    if let Err(err) = written {
        warn!(function, error = %err, "scheduled answer not saved");
    }
}
