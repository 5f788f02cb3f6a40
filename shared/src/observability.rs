//! Metrics as CloudWatch Embedded Metric Format (EMF) log lines: one JSON line
//! on stdout that CloudWatch turns into a metric, with no SDK call and no
//! extra latency (DESIGN §9).

use std::cell::RefCell;
use std::rc::Rc;

use serde_json::json;

use crate::domain::Timestamp;

/// Every metric of the system lives in this namespace.
pub const METRIC_NAMESPACE: &str = "PaymentSaga";

/// The EMF line for one count of `metric`, dimensioned by `Service`.
pub fn count_metric_line(metric: &str, service: &str, at: Timestamp) -> String {
    json!({
        "_aws": {
            "Timestamp": at.unix_millis(),
            "CloudWatchMetrics": [{
                "Namespace": METRIC_NAMESPACE,
                "Dimensions": [["Service"]],
                "Metrics": [{"Name": metric, "Unit": "Count"}],
            }],
        },
        "Service": service,
        metric: 1,
    })
    .to_string()
}

/// Receives `(metric, service)` instead of stdout (see [`capture_counts`]).
pub type CountSink = Rc<dyn Fn(&str, &str)>;

thread_local! {
    static COUNT_SINK: RefCell<Option<CountSink>> = const { RefCell::new(None) };
}

/// Sends this thread's [`emit_count`] calls to `sink` until the guard drops.
/// The fault simulator uses it to check that every RECONCILIATION_REQUIRED
/// came with its alarm metric.
pub fn capture_counts(sink: CountSink) -> CaptureGuard {
    let previous = COUNT_SINK.with(|installed| installed.borrow_mut().replace(sink));
    CaptureGuard { previous }
}

/// Restores the previous sink of [`emit_count`] when dropped.
#[must_use = "capturing stops when the guard is dropped"]
pub struct CaptureGuard {
    previous: Option<CountSink>,
}

impl Drop for CaptureGuard {
    fn drop(&mut self) {
        let previous = self.previous.take();
        COUNT_SINK.with(|installed| *installed.borrow_mut() = previous);
    }
}

/// Emits one count of `metric` (e.g. `ReconciliationRequired`) for `service`.
pub fn emit_count(metric: &str, service: &str) {
    if let Some(sink) = COUNT_SINK.with(|installed| installed.borrow().clone()) {
        sink(metric, service);
        return;
    }
    // EMF must be a line of its own on stdout, where Lambda ships logs from.
    println!("{}", count_metric_line(metric, service, Timestamp::now()));
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn emf_line_names_namespace_metric_and_dimension() {
        let at = Timestamp::from_unix_seconds(1_700_000_000).unwrap();
        let line: serde_json::Value = serde_json::from_str(&count_metric_line(
            "ReconciliationRequired",
            "invoice-processor",
            at,
        ))
        .unwrap();
        assert_eq!(line["_aws"]["Timestamp"], 1_700_000_000_000_i64);
        assert_eq!(
            line["_aws"]["CloudWatchMetrics"][0]["Namespace"],
            "PaymentSaga"
        );
        assert_eq!(
            line["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Name"],
            "ReconciliationRequired"
        );
        assert_eq!(line["Service"], "invoice-processor");
        assert_eq!(line["ReconciliationRequired"], 1);
    }
}
