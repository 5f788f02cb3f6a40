//! A function's log file, `log_dir/<binary>.log`: the instances' stdout and
//! stderr are attached to it directly (so nothing is lost if the local cloud
//! itself dies), and the service appends the lines CloudWatch would show
//! around them (`START`, `END`, `REPORT`, timeouts, instance starts).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;

pub(super) struct LogSink {
    path: PathBuf,
    /// Opened on first use and kept; `None` until then or after a failure.
    file: Mutex<Option<File>>,
}

impl LogSink {
    pub(super) fn new(path: PathBuf) -> Self {
        Self {
            path,
            file: Mutex::new(None),
        }
    }

    /// Appends one line. Best effort: a full disk must not fail invocations.
    /// The write is a few bytes to a local file, cheap enough to do inline.
    pub(super) fn line(&self, text: &str) {
        let mut file = self
            .file
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if file.is_none() {
            *file = open_append(&self.path).ok();
        }
        let written = match file.as_mut() {
            Some(handle) => writeln!(handle, "{text}"),
            None => return,
        };
        if let Err(err) = written {
            tracing::warn!(path = %self.path.display(), %err, "cannot write the function log");
            *file = None;
        }
    }

    /// stdout and stderr for a new instance, both appending to the file
    /// (O_APPEND keeps concurrent instances' lines whole).
    pub(super) fn child_stdio(&self) -> std::io::Result<(Stdio, Stdio)> {
        let out = open_append(&self.path)?;
        let err = out.try_clone()?;
        Ok((Stdio::from(out), Stdio::from(err)))
    }
}

fn open_append(path: &Path) -> std::io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}
