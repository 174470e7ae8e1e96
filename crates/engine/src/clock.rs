//! Time and ids for the shell. The domain never reads a clock; the engine asks one of these.

use ledgersync_domain::{EventId, Timestamp};
use std::sync::atomic::{AtomicI64, Ordering};

/// A source of the current time.
pub trait Clock: Send + Sync {
    /// Now.
    fn now(&self) -> Timestamp;
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let d = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Timestamp(d.as_millis() as i64)
    }
}

/// A clock that moves only when told to (tests, benchmarks, reproducible runs).
#[derive(Debug)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    /// A clock at `t`.
    pub fn new(t: Timestamp) -> Self {
        Self(AtomicI64::new(t.0))
    }
    /// Moves the clock forward.
    pub fn advance(&self, d: ledgersync_domain::Duration) {
        self.0.fetch_add(d.0, Ordering::SeqCst);
    }
    /// Sets the clock.
    pub fn set(&self, t: Timestamp) {
        self.0.store(t.0, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.0.load(Ordering::SeqCst))
    }
}

/// Makes event ids: UUID v7 (time-ordered; the uuid crate keeps them monotonic in a process).
#[derive(Debug, Default, Clone, Copy)]
pub struct IdGen;

impl IdGen {
    /// A new id.
    pub fn next(&self) -> EventId {
        EventId(*uuid::Uuid::now_v7().as_bytes())
    }
}
