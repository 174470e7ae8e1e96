//! How a journal is opened: which storage engine, and the knobs of group commit and caching.

use std::fmt;
use std::str::FromStr;

/// The embedded storage engine under a journal.
///
/// A data directory is created with one backend and records it in its format marker; it cannot
/// be reopened with the other one (see `docs/journal-storage.md`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Backend {
    /// redb 4: one file `journal.redb`, MVCC reads, the default (see
    /// `docs/decisions/0001-redb-default-journal-sled-supported.md`).
    #[default]
    Redb,
    /// sled 0.34: a directory `sled/`, supported as an alternative.
    Sled,
}

impl Backend {
    /// Both backends, for tools and tests that cover each.
    pub const ALL: [Backend; 2] = [Backend::Redb, Backend::Sled];

    /// The name used on the command line, in configuration and in the format marker.
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Redb => "redb",
            Backend::Sled => "sled",
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A backend name that is neither `redb` nor `sled`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown journal backend '{0}': use 'redb' (the default) or 'sled'")]
pub struct UnknownBackend(pub String);

impl FromStr for Backend {
    type Err = UnknownBackend;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "redb" => Ok(Backend::Redb),
            "sled" => Ok(Backend::Sled),
            _ => Err(UnknownBackend(s.to_owned())),
        }
    }
}

/// Options of [`open`](crate::open).
///
/// Build it with struct update syntax: `JournalOptions { backend: Backend::Sled,
/// ..JournalOptions::default() }`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JournalOptions {
    /// The storage engine. Must match the one the directory was created with.
    pub backend: Backend,
    /// The most events one group commit takes from the queue (default 4096). A single append
    /// larger than this is still committed, alone in its batch.
    pub max_batch_events: usize,
    /// Memory the storage engine may use for its page cache, in bytes (default 256 MiB).
    pub cache_bytes: usize,
    /// redb only: save the allocator state with every commit so that reopening after a crash
    /// takes milliseconds instead of a full-file repair (default `true`; see the decision record
    /// for the measured cost). sled ignores it.
    pub quick_repair: bool,
    /// redb only: the tail of the item index is written as a sorted run once it spans this many
    /// positions (default 4096; see `docs/journal-storage.md`). A lookup scans at most this many
    /// tail rows. sled ignores it.
    pub item_fold_span: u64,
}

impl Default for JournalOptions {
    fn default() -> Self {
        Self {
            backend: Backend::default(),
            max_batch_events: 4096,
            cache_bytes: 256 * 1024 * 1024,
            quick_repair: true,
            item_fold_span: 4096,
        }
    }
}

impl JournalOptions {
    /// The default options with another backend.
    pub fn with_backend(backend: Backend) -> Self {
        Self {
            backend,
            ..Self::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_names_round_trip() {
        for b in Backend::ALL {
            assert_eq!(b.to_string().parse::<Backend>(), Ok(b));
        }
        assert_eq!(" SLED ".parse::<Backend>(), Ok(Backend::Sled));
        let err = "rocksdb".parse::<Backend>().unwrap_err();
        assert!(err.to_string().contains("'rocksdb'"), "{err}");
        assert_eq!(Backend::default(), Backend::Redb);
    }
}
