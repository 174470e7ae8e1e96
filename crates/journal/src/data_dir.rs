//! The data directory: its format marker and its lock.
//!
//! ```text
//! <dir>/LEDGERSYNC-JOURNAL   format marker: "format=3" and "backend=redb|sled" lines
//! <dir>/LOCK                 exclusive advisory lock (File::try_lock), holds the holder's pid
//! <dir>/journal.redb         redb backend            <dir>/sled/   sled backend
//! ```
//!
//! Opening checks, in order: the marker's format version, the marker's backend, that a
//! directory without a marker is empty (so that a journal is never created over unrelated
//! files), then takes the lock. A new directory gets its marker written atomically (temporary
//! file, fsync, rename, fsync of the directory) before the storage engine creates its files.

use crate::error::OpenError;
use crate::options::Backend;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

/// Name of the format marker file.
pub(crate) const MARKER_FILE: &str = "LEDGERSYNC-JOURNAL";
/// Name of the lock file.
pub(crate) const LOCK_FILE: &str = "LOCK";
/// The journal format version this build writes. Version 2 added redb's deferred item index
/// (`item_tail`), version 3 its runs (`item_runs`, `items.<tier>.<first>`, see
/// `redb_index.rs`); the layout is otherwise that of version 1. sled's layout is the same in
/// all three.
pub(crate) const FORMAT_VERSION: u32 = 3;

/// The oldest format this build opens. Opening a journal of that format marks it
/// [`FORMAT_VERSION`] (the marker, and the engine's `meta` table), so that an older release,
/// which would not read the new parts, refuses it.
pub(crate) const OLDEST_READABLE_FORMAT: u32 = 1;

const MARKER_TMP: &str = "LEDGERSYNC-JOURNAL.tmp";

/// The held lock of a data directory; released when dropped (closing the file releases it).
#[derive(Debug)]
pub(crate) struct DirLock {
    _file: File,
}

/// What a format marker says.
#[derive(Debug, PartialEq, Eq)]
struct Marker {
    format: u32,
    backend: Backend,
}

fn io_err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> OpenError + 'a {
    move |source| OpenError::Io {
        action,
        path: path.to_owned(),
        source,
    }
}

fn parse_marker(text: &str, path: &Path) -> Result<Marker, OpenError> {
    let bad = |detail: String| OpenError::BadMarker {
        path: path.to_owned(),
        detail,
    };
    let mut format = None;
    let mut backend = None;
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .ok_or_else(|| bad(format!("line {} is not 'key=value': '{line}'", n + 1)))?;
        match key.trim() {
            "format" => {
                let v = value.trim().parse::<u32>().map_err(|_| {
                    bad(format!(
                        "line {}: format '{}' is not a number",
                        n + 1,
                        value.trim()
                    ))
                })?;
                format = Some(v);
            }
            "backend" => {
                let v = value
                    .trim()
                    .parse::<Backend>()
                    .map_err(|e| bad(format!("line {}: {e}", n + 1)))?;
                backend = Some(v);
            }
            _ => {}
        }
    }
    match (format, backend) {
        (Some(format), Some(backend)) => Ok(Marker { format, backend }),
        (None, _) => Err(bad("it has no 'format=' line".into())),
        (Some(format), None) if !readable(format) => Ok(Marker {
            format,
            backend: Backend::default(),
        }),
        (Some(_), None) => Err(bad("it has no 'backend=' line".into())),
    }
}

fn marker_text(backend: Backend) -> String {
    format!(
        "# ledgersync journal data directory; see docs/journal-storage.md. Do not edit.\n\
         format={FORMAT_VERSION}\nbackend={backend}\n"
    )
}

fn read_marker(dir: &Path) -> Result<Option<Marker>, OpenError> {
    let path = dir.join(MARKER_FILE);
    match fs::read_to_string(&path) {
        Ok(text) => parse_marker(&text, &path).map(Some),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) if e.kind() == io::ErrorKind::InvalidData => Err(OpenError::BadMarker {
            path,
            detail: "it is not UTF-8 text".into(),
        }),
        Err(e) => Err(io_err("read", &path)(e)),
    }
}

/// Whether this build opens a journal of this format.
pub(crate) fn readable(format: u32) -> bool {
    (OLDEST_READABLE_FORMAT..=FORMAT_VERSION).contains(&format)
}

fn check_marker(dir: &Path, marker: &Marker, requested: Backend) -> Result<(), OpenError> {
    if !readable(marker.format) {
        return Err(OpenError::VersionMismatch {
            dir: dir.to_owned(),
            found: marker.format,
            expected: FORMAT_VERSION,
        });
    }
    if marker.backend != requested {
        return Err(OpenError::BackendMismatch {
            dir: dir.to_owned(),
            found: marker.backend,
            requested,
        });
    }
    Ok(())
}

/// An entry of a directory without a marker that is not ours, if there is one.
fn foreign_entry(dir: &Path) -> Result<Option<String>, OpenError> {
    let entries = fs::read_dir(dir).map_err(io_err("list", dir))?;
    for entry in entries {
        let entry = entry.map_err(io_err("list", dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name != LOCK_FILE && name != MARKER_TMP {
            return Ok(Some(name));
        }
    }
    Ok(None)
}

fn take_lock(dir: &Path) -> Result<DirLock, OpenError> {
    let path = dir.join(LOCK_FILE);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io_err("open the lock file", &path))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(fs::TryLockError::WouldBlock) => {
            let mut text = String::new();
            let holder_pid = file
                .read_to_string(&mut text)
                .ok()
                .and_then(|_| text.trim().parse::<u32>().ok());
            return Err(OpenError::Locked {
                dir: dir.to_owned(),
                holder_pid,
            });
        }
        Err(fs::TryLockError::Error(e)) => return Err(io_err("lock", &path)(e)),
    }
    file.set_len(0)
        .and_then(|()| file.write_all(format!("{}\n", std::process::id()).as_bytes()))
        .map_err(io_err("write the lock file", &path))?;
    Ok(DirLock { _file: file })
}

fn write_marker(dir: &Path, backend: Backend) -> Result<(), OpenError> {
    let tmp = dir.join(MARKER_TMP);
    let path = dir.join(MARKER_FILE);
    let mut file = File::create(&tmp).map_err(io_err("create", &tmp))?;
    file.write_all(marker_text(backend).as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(io_err("write", &tmp))?;
    drop(file);
    fs::rename(&tmp, &path).map_err(io_err("rename the marker into", &path))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("sync", dir))?;
    Ok(())
}

/// Checks (or creates) the data directory for `backend` and locks it.
pub(crate) fn prepare(dir: &Path, backend: Backend) -> Result<DirLock, OpenError> {
    fs::create_dir_all(dir).map_err(io_err("create the data directory", dir))?;
    let before = read_marker(dir)?;
    match &before {
        Some(marker) => check_marker(dir, marker, backend)?,
        None => {
            if let Some(example) = foreign_entry(dir)? {
                return Err(OpenError::NotAJournal {
                    dir: dir.to_owned(),
                    example,
                });
            }
        }
    }
    let lock = take_lock(dir)?;
    if let Some(marker) = &before
        && marker.format != FORMAT_VERSION
    {
        // An older format this build reads: mark it ours before the engine writes anything in
        // the new layout, so that the release that wrote it refuses it from now on.
        write_marker(dir, backend)?;
    }
    if before.is_none() {
        // Another process may have created the journal between our check and our lock.
        match read_marker(dir)? {
            Some(marker) => check_marker(dir, &marker, backend)?,
            None => {
                if let Some(example) = foreign_entry(dir)? {
                    return Err(OpenError::NotAJournal {
                        dir: dir.to_owned(),
                        example,
                    });
                }
                write_marker(dir, backend)?;
            }
        }
    }
    Ok(lock)
}

/// The backend recorded in the format marker of an existing journal.
pub(crate) fn detect_backend(dir: &Path) -> Result<Backend, OpenError> {
    match read_marker(dir)? {
        Some(marker) if !readable(marker.format) => Err(OpenError::VersionMismatch {
            dir: dir.to_owned(),
            found: marker.format,
            expected: FORMAT_VERSION,
        }),
        Some(marker) => Ok(marker.backend),
        None => Err(OpenError::NoJournal {
            dir: dir.to_owned(),
        }),
    }
}

/// The absolute form of `dir` when it can be computed, for messages.
pub(crate) fn display_dir(dir: &Path) -> PathBuf {
    std::path::absolute(dir).unwrap_or_else(|_| dir.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marker_parses_and_round_trips() {
        let p = Path::new("/d/LEDGERSYNC-JOURNAL");
        assert_eq!(
            parse_marker(&marker_text(Backend::Sled), p).unwrap(),
            Marker {
                format: FORMAT_VERSION,
                backend: Backend::Sled
            }
        );
        assert!(matches!(
            parse_marker("backend=redb\n", p),
            Err(OpenError::BadMarker { .. })
        ));
        assert!(matches!(
            parse_marker("format=x\nbackend=redb\n", p),
            Err(OpenError::BadMarker { .. })
        ));
        assert!(matches!(
            parse_marker("format=1\nbackend=lmdb\n", p),
            Err(OpenError::BadMarker { .. })
        ));
        assert!(matches!(
            parse_marker("format=1\n", p),
            Err(OpenError::BadMarker { .. })
        ));
        // A future format may name its backend differently: report the version, not the line.
        assert_eq!(parse_marker("format=7\n", p).unwrap().format, 7);
    }

    #[test]
    fn the_backend_is_detected_from_the_marker() {
        let tmp = tempfile::tempdir().unwrap();
        assert!(matches!(
            detect_backend(tmp.path()),
            Err(OpenError::NoJournal { .. })
        ));
        drop(prepare(tmp.path(), Backend::Sled).unwrap());
        assert_eq!(detect_backend(tmp.path()).unwrap(), Backend::Sled);
        fs::write(tmp.path().join(MARKER_FILE), "format=4\nbackend=redb\n").unwrap();
        assert!(matches!(
            detect_backend(tmp.path()),
            Err(OpenError::VersionMismatch { found: 4, .. })
        ));
    }

    #[test]
    fn lock_is_exclusive_and_names_the_holder() {
        let tmp = tempfile::tempdir().unwrap();
        let first = prepare(tmp.path(), Backend::Redb).unwrap();
        match prepare(tmp.path(), Backend::Redb) {
            Err(OpenError::Locked { holder_pid, .. }) => {
                assert_eq!(holder_pid, Some(std::process::id()))
            }
            other => panic!("expected Locked, got {other:?}"),
        }
        drop(first);
        prepare(tmp.path(), Backend::Redb).unwrap();
    }
}
