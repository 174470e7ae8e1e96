//! The journal boundary against panics of the storage engines. redb and sled trust their files:
//! a flipped byte in a page header or a truncated file can make them panic (index out of bounds,
//! `unwrap` on a bad length) instead of returning an error. Every call into a store goes
//! through [`catch`], which turns such a panic into an error naming the file. The CLI's panic
//! hook keeps these panics out of the output (it does not print panics raised inside redb or
//! sled), so the user sees the typed error only.

use crate::error::{ReadError, StorageError};
use crate::store::{Batch, Store, Visit};
use ledgersync_domain::StreamId;
use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::Arc;

/// Runs `f`, returning the text of its panic if it panics.
pub(crate) fn catch<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    // The store is not used again after a panic except to report errors: an unwound store
    // call leaves at worst a poisoned lock inside the engine, which yields more errors.
    catch_unwind(AssertUnwindSafe(f)).map_err(|payload| panic_text(payload.as_ref()))
}

/// The message of a panic payload.
pub(crate) fn panic_text(payload: &(dyn Any + Send)) -> String {
    let text = if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_string()
    };
    format!("storage engine panic: {text}")
}

/// A store whose every call is run under [`catch`]: a panic of the engine becomes
/// [`ReadError::Damaged`] (reads) or a commit error (writes) naming the file.
pub(crate) struct Guarded(pub(crate) Arc<dyn Store>);

impl Guarded {
    fn read<T>(&self, f: impl FnOnce(&dyn Store) -> Result<T, ReadError>) -> Result<T, ReadError> {
        catch(|| f(self.0.as_ref())).unwrap_or_else(|detail| {
            Err(ReadError::Damaged {
                path: self.0.path().to_owned(),
                detail,
            })
        })
    }

    fn write(
        &self,
        f: impl FnOnce(&dyn Store) -> Result<(), StorageError>,
    ) -> Result<(), StorageError> {
        catch(|| f(self.0.as_ref())).unwrap_or_else(|detail| {
            let text = format!(
                "{detail} (the storage {} is damaged; run `ledgersync journal check`)",
                self.0.path().display()
            );
            Err(Arc::from(Box::<dyn std::error::Error + Send + Sync>::from(
                text,
            )))
        })
    }
}

impl Store for Guarded {
    fn path(&self) -> &Path {
        self.0.path()
    }
    fn head(&self, stream: &StreamId) -> Result<u64, ReadError> {
        self.read(|s| s.head(stream))
    }
    fn last_position(&self) -> Result<u64, ReadError> {
        self.read(|s| s.last_position())
    }
    fn commit(&self, batch: &Batch) -> Result<(), StorageError> {
        self.write(|s| s.commit(batch))
    }
    fn records_from(&self, from: u64, max: usize, visit: Visit<'_>) -> Result<(), ReadError> {
        self.read(|s| s.records_from(from, max, visit))
    }
    fn records_at(&self, positions: &[u64]) -> Result<Vec<Option<Vec<u8>>>, ReadError> {
        self.read(|s| s.records_at(positions))
    }
    fn stream_records(
        &self,
        stream: &StreamId,
        from_seq: u64,
        max: usize,
        visit: Visit<'_>,
    ) -> Result<(), ReadError> {
        self.read(|s| s.stream_records(stream, from_seq, max, visit))
    }
    fn item_positions(&self, key: &str) -> Result<Vec<u64>, ReadError> {
        self.read(|s| s.item_positions(key))
    }
    fn subjects_containing(&self, needle: &str, max: usize) -> Result<Vec<String>, ReadError> {
        self.read(|s| s.subjects_containing(needle, max))
    }
    fn heads(&self) -> Result<Vec<(StreamId, u64)>, ReadError> {
        self.read(|s| s.heads())
    }
    fn put_snapshot(&self, stream: &StreamId, record: &[u8]) -> Result<(), StorageError> {
        self.write(|s| s.put_snapshot(stream, record))
    }
    fn get_snapshot(&self, stream: &StreamId) -> Result<Option<Vec<u8>>, ReadError> {
        self.read(|s| s.get_snapshot(stream))
    }
    fn verify_storage(&self) -> Result<String, String> {
        catch(|| self.0.verify_storage()).unwrap_or_else(Err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_its_text() {
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
        let r: Result<(), String> = catch(|| panic!("page {} out of range", 7));
        std::panic::set_hook(prev);
        assert_eq!(r.unwrap_err(), "storage engine panic: page 7 out of range");
        assert_eq!(catch(|| 3).unwrap(), 3);
    }
}
