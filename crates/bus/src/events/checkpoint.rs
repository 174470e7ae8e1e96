//! The publisher's confirmed checkpoint: the last global position whose message the broker
//! confirmed, in a small file of the data directory (`event-stream.checkpoint`), written
//! atomically — a temporary file written and fsynced, renamed over the old one, the directory
//! fsynced — so a crash leaves the old value or the new one, never a torn one.

use super::EventStreamError;
use std::fs::{self, File};
use std::io::Write as _;
use std::path::{Path, PathBuf};

/// The checkpoint file's name in the data directory.
pub const CHECKPOINT_FILE: &str = "event-stream.checkpoint";

/// The checkpoint file: one line, `position <N>`.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    path: PathBuf,
}

impl Checkpoint {
    /// The checkpoint kept at `path`.
    pub fn at(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// Its file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The last confirmed position; 0 when the file does not exist yet (nothing published).
    pub fn load(&self) -> Result<u64, EventStreamError> {
        let text = match fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(self.io("read", e)),
        };
        text.trim()
            .strip_prefix("position ")
            .and_then(|n| n.parse::<u64>().ok())
            .ok_or_else(|| EventStreamError::BadCheckpoint {
                path: self.path.clone(),
                found: text.chars().take(80).collect(),
            })
    }

    /// Stores `position` durably (temporary file, fsync, rename, fsync of the directory).
    pub fn store(&self, position: u64) -> Result<(), EventStreamError> {
        let tmp = self.path.with_extension("checkpoint.tmp");
        let mut file = File::create(&tmp).map_err(|e| self.io("create", e))?;
        writeln!(file, "position {position}").map_err(|e| self.io("write", e))?;
        file.sync_all().map_err(|e| self.io("fsync", e))?;
        drop(file);
        fs::rename(&tmp, &self.path).map_err(|e| self.io("rename", e))?;
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| self.io("fsync the directory of", e))?;
        }
        Ok(())
    }

    fn io(&self, step: &'static str, source: std::io::Error) -> EventStreamError {
        EventStreamError::Checkpoint {
            step,
            path: self.path.clone(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_checkpoint_is_zero_and_a_stored_one_reads_back() {
        let dir = std::env::temp_dir().join(format!("ls-ckpt-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let c = Checkpoint::at(dir.join(CHECKPOINT_FILE));
        let _ = fs::remove_file(c.path());
        assert_eq!(c.load().unwrap(), 0);
        c.store(41).unwrap();
        c.store(42).unwrap();
        assert_eq!(c.load().unwrap(), 42);
        fs::write(c.path(), "garbage").unwrap();
        assert!(matches!(
            c.load(),
            Err(EventStreamError::BadCheckpoint { .. })
        ));
        fs::remove_dir_all(&dir).unwrap();
    }
}
