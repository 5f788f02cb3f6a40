//! A progress bar on stderr: redrawn in place on a terminal, a line per 10 %
//! otherwise (CI logs, `make bench | tee`).

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::stats::per_second;

const BAR_WIDTH: u64 = 30;
const REDRAW: Duration = Duration::from_millis(200);

/// Counters the workers bump; the drawing task reads them.
#[derive(Debug, Default)]
pub struct Counters {
    pub done: AtomicU64,
    pub failed: AtomicU64,
    /// Sum of the finished payments' end-to-end latencies, for the live mean.
    pub latency_us_total: AtomicU64,
}

impl Counters {
    pub fn finish(&self, latency_us: u64, ok: bool) {
        self.done.fetch_add(1, Ordering::Relaxed);
        self.latency_us_total
            .fetch_add(latency_us, Ordering::Relaxed);
        if !ok {
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

pub struct Progress {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Progress {
    /// Starts drawing `label` until [`Progress::finish`]; silent when `quiet`.
    pub fn start(label: &str, total: u64, counters: Arc<Counters>, quiet: bool) -> Self {
        let (stop, mut stopped) = watch::channel(false);
        let label = label.to_owned();
        let tty = std::io::stderr().is_terminal();
        let task = tokio::spawn(async move {
            let started = Instant::now();
            let mut tenths_shown = 0;
            loop {
                let finished = tokio::select! {
                    _ = stopped.changed() => true,
                    () = tokio::time::sleep(REDRAW) => false,
                };
                let line = render(&label, total, &counters, started.elapsed());
                if !quiet {
                    if tty {
                        eprint!("\r{line}\x1b[K");
                        if finished {
                            eprintln!();
                        }
                    } else {
                        let done = counters.done.load(Ordering::Relaxed);
                        let tenths = (done * 10).checked_div(total).unwrap_or(10);
                        if tenths > tenths_shown || finished {
                            tenths_shown = tenths;
                            eprintln!("{line}");
                        }
                    }
                    let _ = std::io::stderr().flush();
                }
                if finished {
                    return;
                }
            }
        });
        Self { stop, task }
    }

    /// Draws the last state and stops.
    pub async fn finish(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// `label [=========>          ] 1200/2000  60%  312.5/s  mean 41.3 ms  failed 0`
pub fn render(label: &str, total: u64, counters: &Counters, elapsed: Duration) -> String {
    let done = counters.done.load(Ordering::Relaxed);
    let failed = counters.failed.load(Ordering::Relaxed);
    let latency_total = counters.latency_us_total.load(Ordering::Relaxed);
    let filled = (done.min(total) * BAR_WIDTH)
        .checked_div(total)
        .unwrap_or(BAR_WIDTH);
    let mut bar = "=".repeat(usize::try_from(filled).unwrap_or_default());
    if filled < BAR_WIDTH {
        bar.push('>');
        bar.push_str(&" ".repeat(usize::try_from(BAR_WIDTH - filled - 1).unwrap_or_default()));
    }
    let percent = (done.min(total) * 100).checked_div(total).unwrap_or(100);
    let elapsed_us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
    let rate = per_second(done, elapsed_us);
    let mean = super::stats::ms(latency_total.checked_div(done).unwrap_or_default());
    format!(
        "{label:<8} [{bar}] {done}/{total} {percent:>3}%  {rate}/s  mean {mean} ms  failed {failed}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bar_fills_with_the_count() {
        let counters = Counters::default();
        counters.finish(40_000, true);
        counters.finish(60_000, false);
        let line = render("load", 4, &counters, Duration::from_secs(1));
        let half = format!("load     [{}>", "=".repeat(15));
        assert!(line.starts_with(&half), "{line}");
        assert!(
            line.contains(" 2/4  50%  2.0/s  mean 50.0 ms  failed 1"),
            "{line}"
        );
        let empty = render("load", 0, &Counters::default(), Duration::ZERO);
        assert!(empty.contains("0/0 100%"), "{empty}");
    }
}
