//! Debouncing of filesystem events: a save is a burst of events (create, truncate,
//! write, close, rename…), and a file is read once the burst is over, not halfway.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use notify::EventKind;
use notify::event::{AccessKind, AccessMode, CreateKind, ModifyKind};

/// What an event says about a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Effect {
    /// Something changed, and a writer may still be at it (created, data written).
    Writing,
    /// A writer closed the file: it is complete.
    Closed,
    /// Something changed in one step (renamed, removed, attributes).
    Changed,
}

impl Effect {
    /// The effect of an event of `kind`; `None` for events that change nothing
    /// (opening or reading, including the store's own reads).
    pub(super) fn of(kind: &EventKind) -> Option<Effect> {
        match kind {
            EventKind::Access(AccessKind::Close(AccessMode::Write)) => Some(Effect::Closed),
            EventKind::Access(_) => None,
            EventKind::Create(CreateKind::File) | EventKind::Modify(ModifyKind::Data(_)) => {
                Some(Effect::Writing)
            }
            _ => Some(Effect::Changed),
        }
    }
}

/// Paths with events not yet acted on, and when each may be.
#[derive(Debug)]
pub(super) struct Pending {
    /// How long a path must be quiet before it is read.
    quiet: Duration,
    /// The longest a path waits, even while events keep coming or a writer keeps it open.
    max_wait: Duration,
    paths: BTreeMap<PathBuf, PathState>,
}

#[derive(Debug)]
struct PathState {
    /// First event since the path was last taken.
    since: Instant,
    /// Latest event.
    last: Instant,
    /// A writer seems to have the file open.
    writing: bool,
}

impl PathState {
    fn ready_at(&self, quiet: Duration, max_wait: Duration) -> Instant {
        let cap = self.since + max_wait;
        if self.writing {
            cap
        } else {
            (self.last + quiet).min(cap)
        }
    }
}

impl Pending {
    /// Nothing pending; paths are read after `quiet` without events, or at most
    /// `max_wait` after their first one.
    pub(super) fn new(quiet: Duration, max_wait: Duration) -> Self {
        Self {
            quiet,
            max_wait,
            paths: BTreeMap::new(),
        }
    }

    /// Records an event with `effect` on `path` at `now`.
    pub(super) fn add(&mut self, path: PathBuf, effect: Effect, now: Instant) {
        let state = self.paths.entry(path).or_insert(PathState {
            since: now,
            last: now,
            writing: false,
        });
        state.last = now;
        match effect {
            Effect::Writing => state.writing = true,
            Effect::Closed => state.writing = false,
            Effect::Changed => {}
        }
    }

    /// When the next path becomes ready; `None` when nothing is pending.
    pub(super) fn deadline(&self) -> Option<Instant> {
        self.paths
            .values()
            .map(|s| s.ready_at(self.quiet, self.max_wait))
            .min()
    }

    /// Removes and returns the paths ready at `now`, in path order.
    pub(super) fn take_ready(&mut self, now: Instant) -> Vec<PathBuf> {
        let (quiet, max_wait) = (self.quiet, self.max_wait);
        let ready: Vec<PathBuf> = self
            .paths
            .iter()
            .filter(|(_, s)| s.ready_at(quiet, max_wait) <= now)
            .map(|(p, _)| p.clone())
            .collect();
        for path in &ready {
            self.paths.remove(path);
        }
        ready
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const QUIET: Duration = Duration::from_millis(50);
    const MAX: Duration = Duration::from_secs(2);

    #[test]
    fn a_burst_is_read_once_after_it_is_quiet() {
        let t0 = Instant::now();
        let mut pending = Pending::new(QUIET, MAX);
        pending.add("a.yaml".into(), Effect::Changed, t0);
        pending.add("a.yaml".into(), Effect::Changed, t0 + QUIET / 2);
        assert_eq!(pending.deadline(), Some(t0 + QUIET / 2 + QUIET));
        assert!(pending.take_ready(t0 + QUIET).is_empty());
        assert_eq!(
            pending.take_ready(t0 + 2 * QUIET),
            [PathBuf::from("a.yaml")]
        );
        assert_eq!(pending.deadline(), None);
    }

    #[test]
    fn an_open_file_waits_for_its_writer_to_close_it() {
        let t0 = Instant::now();
        let mut pending = Pending::new(QUIET, MAX);
        pending.add("a.yaml".into(), Effect::Writing, t0);
        assert!(pending.take_ready(t0 + 3 * QUIET).is_empty());
        pending.add("a.yaml".into(), Effect::Closed, t0 + 4 * QUIET);
        assert_eq!(
            pending.take_ready(t0 + 5 * QUIET),
            [PathBuf::from("a.yaml")]
        );
    }

    #[test]
    fn nothing_waits_longer_than_max_wait() {
        let t0 = Instant::now();
        let mut pending = Pending::new(QUIET, MAX);
        pending.add("a.yaml".into(), Effect::Writing, t0);
        pending.add("b.yaml".into(), Effect::Changed, t0);
        pending.add("b.yaml".into(), Effect::Changed, t0 + MAX - QUIET / 2);
        assert_eq!(pending.deadline(), Some(t0 + MAX));
        assert_eq!(pending.take_ready(t0 + MAX).len(), 2);
    }

    #[test]
    fn reads_are_not_changes() {
        let open = EventKind::Access(AccessKind::Open(AccessMode::Any));
        let close = EventKind::Access(AccessKind::Close(AccessMode::Write));
        assert_eq!(Effect::of(&open), None);
        assert_eq!(Effect::of(&close), Some(Effect::Closed));
    }
}
