//! Where access log lines go: a file (`/dev/stdout` included), or the process's stdout or
//! stderr. Each destination has one writer thread fed by a bounded channel: a request
//! only formats its line and sends it; the thread writes through a buffer and flushes
//! whenever its queue runs dry, so lines reach the file promptly without a write (or a
//! lock) per request. When the queue is full the line is dropped and counted, as Envoy
//! drops lines past its buffer rather than stall traffic.

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex, OnceLock};

/// Lines a destination may have queued before new ones are dropped.
const QUEUE: usize = 16 * 1024;

/// A destination for access log lines.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Destination {
    /// A file, appended to (created when missing).
    File(PathBuf),
    /// The process's standard output.
    Stdout,
    /// The process's standard error.
    Stderr,
}

/// A handle on a destination's writer.
#[derive(Debug, Clone)]
pub struct Sink {
    lines: SyncSender<String>,
    dropped: Arc<AtomicU64>,
}

impl Sink {
    /// The writer of `destination`, started on first use and shared by every logger
    /// that writes there (so their lines never interleave mid-line).
    pub fn to(destination: &Destination) -> Sink {
        static WRITERS: OnceLock<Mutex<HashMap<Destination, Sink>>> = OnceLock::new();
        // Locked at config time only.
        let mut writers = WRITERS
            .get_or_init(Mutex::default)
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        writers
            .entry(destination.clone())
            .or_insert_with(|| start(destination.clone()))
            .clone()
    }

    /// Queues a line (with its newline); drops it when the writer is behind.
    pub fn send(&self, line: String) {
        match self.lines.try_send(line) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// How many lines were dropped because the writer was behind or gone.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

fn start(destination: Destination) -> Sink {
    let (lines, queue) = sync_channel(QUEUE);
    let name = format!("access-log {destination:?}");
    let spawned = std::thread::Builder::new()
        .name("access-log".to_owned())
        .spawn(move || write_lines(&destination, &queue));
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "{name}: cannot start its writer; lines are dropped");
    }
    Sink {
        lines,
        dropped: Arc::default(),
    }
}

/// The writer thread: opens the destination once lines come, writes them, flushes when
/// the queue is empty; reopens after a failed write (a rotated or removed file).
fn write_lines(destination: &Destination, queue: &Receiver<String>) {
    let mut out: Option<BufWriter<Box<dyn Write>>> = None;
    while let Ok(line) = queue.recv() {
        let result = (|| {
            let writer = match &mut out {
                Some(w) => w,
                None => out.insert(BufWriter::with_capacity(64 * 1024, open(destination)?)),
            };
            writer.write_all(line.as_bytes())?;
            while let Ok(line) = queue.try_recv() {
                writer.write_all(line.as_bytes())?;
            }
            writer.flush()
        })();
        if let Err(e) = result {
            tracing::warn!(error = %e, ?destination, "access log write failed");
            out = None;
        }
    }
}

fn open(destination: &Destination) -> io::Result<Box<dyn Write>> {
    Ok(match destination {
        Destination::File(path) => Box::new(open_file(path)?),
        Destination::Stdout => Box::new(io::stdout()),
        Destination::Stderr => Box::new(io::stderr()),
    })
}

fn open_file(path: &Path) -> io::Result<std::fs::File> {
    OpenOptions::new().append(true).create(true).open(path)
}
