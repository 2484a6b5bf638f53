//! The last few windows of traffic, one per collection, for the charts.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::SystemTime;

use super::traffic::Traffic;

/// The traffic of one window, and when it was measured.
#[derive(Debug, Clone)]
pub struct Tick {
    /// When the window ended.
    pub at: SystemTime,
    /// Its flows.
    pub traffic: Arc<Traffic>,
}

impl Tick {
    /// Milliseconds since the Unix epoch, as JavaScript counts time.
    pub fn unix_ms(&self) -> u64 {
        self.at
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    }
}

/// The most recent ticks, oldest first, at most `capacity` of them.
#[derive(Debug, Clone)]
pub struct History {
    ticks: VecDeque<Tick>,
    capacity: usize,
}

impl History {
    /// An empty history keeping `capacity` ticks (at least one).
    pub fn new(capacity: usize) -> History {
        History {
            ticks: VecDeque::with_capacity(capacity.max(1)),
            capacity: capacity.max(1),
        }
    }

    /// Adds the newest tick, forgetting the oldest beyond capacity.
    pub fn push(&mut self, tick: Tick) {
        if self.ticks.len() == self.capacity {
            self.ticks.pop_front();
        }
        self.ticks.push_back(tick);
    }

    /// The newest tick, if any.
    pub fn latest(&self) -> Option<&Tick> {
        self.ticks.back()
    }

    /// Every tick, oldest first.
    pub fn ticks(&self) -> impl Iterator<Item = &Tick> {
        self.ticks.iter()
    }
}
