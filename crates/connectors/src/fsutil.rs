//! Atomic file writes: write to a temporary file in the same filesystem, fsync, then move it
//! into place with one rename (or one hard link, when the target must not exist yet).

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// Writes `bytes` to a fresh file in `tmp_dir` (created if missing) and fsyncs it.
pub fn write_tmp(tmp_dir: &Path, stem: &str, bytes: &[u8]) -> io::Result<PathBuf> {
    fs::create_dir_all(tmp_dir)?;
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let path = tmp_dir.join(format!("{stem}.{}.{n}.tmp", std::process::id()));
    let mut file = File::create(&path)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    Ok(path)
}

/// Replaces `target` with `bytes` atomically: readers see the old or the new file, never a part.
pub fn replace(tmp_dir: &Path, target: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = write_tmp(tmp_dir, &stem_of(target), bytes)?;
    if let Err(e) = fs::rename(&tmp, target) {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    sync_parent(target)
}

/// Creates `target` with `bytes` atomically, only if it does not exist yet. Returns `false`
/// (and writes nothing) when it already exists.
pub fn create_new(tmp_dir: &Path, target: &Path, bytes: &[u8]) -> io::Result<bool> {
    let tmp = write_tmp(tmp_dir, &stem_of(target), bytes)?;
    // A hard link fails with `AlreadyExists` instead of replacing: no second writer can win.
    let linked = match fs::hard_link(&tmp, target) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e),
    };
    let _ = fs::remove_file(&tmp);
    let linked = linked?;
    if linked {
        sync_parent(target)?;
    }
    Ok(linked)
}

/// Moves `from` to `to` (same filesystem) and makes the rename durable.
pub fn move_file(from: &Path, to: &Path) -> io::Result<()> {
    if let Some(dir) = to.parent() {
        fs::create_dir_all(dir)?;
    }
    fs::rename(from, to)?;
    sync_parent(to)?;
    sync_parent(from)
}

/// Fsyncs the directory holding `path`, so that a rename into it survives a crash.
pub fn sync_parent(path: &Path) -> io::Result<()> {
    match path.parent() {
        Some(dir) => File::open(dir)?.sync_all(),
        None => Ok(()),
    }
}

fn stem_of(target: &Path) -> String {
    target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "item".to_string())
}
