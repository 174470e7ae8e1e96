//! The values an append takes and returns, and snapshots.

use std::fmt;

/// What the caller believes the head sequence of a stream is before its append: optimistic
/// concurrency control. An append whose expectation is stale fails with
/// [`AppendError::Conflict`](crate::AppendError::Conflict) and writes nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ExpectedSeq {
    /// No check: append after whatever is there.
    Any,
    /// The stream must be empty (head 0).
    NoStream,
    /// The head must be exactly this sequence (0 = the stream is empty).
    Exactly(u64),
}

impl ExpectedSeq {
    /// Whether a stream whose head is `head` satisfies the expectation.
    pub fn accepts(self, head: u64) -> bool {
        match self {
            ExpectedSeq::Any => true,
            ExpectedSeq::NoStream => head == 0,
            ExpectedSeq::Exactly(n) => head == n,
        }
    }
}

impl fmt::Display for ExpectedSeq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExpectedSeq::Any => f.write_str("any head"),
            ExpectedSeq::NoStream => f.write_str("an empty stream"),
            ExpectedSeq::Exactly(n) => write!(f, "head {n}"),
        }
    }
}

/// Where an acknowledged append landed. Both ranges are inclusive and contiguous.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Appended {
    /// Stream sequence of the first event of the append.
    pub first_seq: u64,
    /// Stream sequence of the last event (the stream's new head).
    pub last_seq: u64,
    /// Global position of the first event.
    pub first_position: u64,
    /// Global position of the last event.
    pub last_position: u64,
}

/// The folded state of a stream up to `seq`, saved so that activating it replays only the
/// events after `seq`. The journal keeps the latest one per stream and never looks inside.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// The stream sequence the state includes (events `1..=seq`).
    pub seq: u64,
    /// The encoded state.
    pub bytes: Vec<u8>,
}

/// Counters of the group commit since the journal was opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CommitStats {
    /// Durable commits that succeeded.
    pub commits: u64,
    /// Appends acknowledged by those commits.
    pub appends: u64,
    /// Events written by those commits.
    pub events: u64,
    /// Appends refused with a sequence conflict.
    pub conflicts: u64,
    /// Commits that failed (every append of such a batch got the error).
    pub failed_commits: u64,
    /// Commits that failed since the last one that succeeded: above 0, the journal cannot
    /// write right now (a full disk, an I/O error); every next batch tries again.
    pub failing_commits: u64,
}

impl CommitStats {
    /// Mean number of events per successful commit (0 if none).
    pub fn mean_events_per_commit(&self) -> f64 {
        if self.commits == 0 {
            0.0
        } else {
            self.events as f64 / self.commits as f64
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expectations() {
        assert!(ExpectedSeq::Any.accepts(0) && ExpectedSeq::Any.accepts(9));
        assert!(ExpectedSeq::NoStream.accepts(0) && !ExpectedSeq::NoStream.accepts(1));
        assert!(ExpectedSeq::Exactly(3).accepts(3) && !ExpectedSeq::Exactly(3).accepts(4));
        assert!(ExpectedSeq::Exactly(0).accepts(0));
        assert_eq!(ExpectedSeq::Exactly(4).to_string(), "head 4");
    }
}
