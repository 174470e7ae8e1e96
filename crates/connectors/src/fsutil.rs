//! Atomic file writes: write to a temporary file in the same filesystem, fsync, then move it
//! into place with one rename (or one hard link, when the target must not exist yet) — and
//! reads that never follow a symbolic link.
//!
//! # Nothing outside a collection is read
//!
//! A collection is a directory other programs write into; a symbolic link in it may point
//! anywhere (`/etc/shadow`, `/proc/self/environ`, another user's calendar). Item files are
//! opened with `O_NOFOLLOW` and must be regular files ([`read_regular`]): a link is never
//! followed, whatever it points to, and is reported as an item failure naming the file. The
//! files ledgersync creates are created new (`O_EXCL`, which does not follow a link either)
//! with mode 0600 (0640 when the process umask grants its group read access; the process
//! umask decides last), and its directories 0700 (0750).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read as _, Write};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// The mode of the files ledgersync creates; the process umask removes what it does not grant
/// (`serve` sets 077, or 027 when `data.group` is configured).
pub const FILE_MODE: u32 = 0o640;
/// The mode of the directories ledgersync creates (masked by the umask likewise).
pub const DIR_MODE: u32 = 0o750;

/// What an item failure says of a symbolic link.
pub const LINK_REFUSED: &str = "is a symbolic link: ledgersync never follows a link in a \
    collection (it could lead out of it); replace the link with the file itself";

/// Creates `dir` and its missing parents with [`DIR_MODE`].
pub fn create_dir_all(dir: &Path) -> io::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
}

/// Creates a new file at `path` ([`FILE_MODE`]); fails if anything, a link included, is there.
pub fn create_file(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(path)
}

/// True when `path` itself is a symbolic link (not followed).
pub fn is_link(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink())
}

/// True when `path` is a regular file, not reached through a link at its last component.
pub fn is_regular_file(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_file())
}

/// Reads a regular file without following a symbolic link (`O_NOFOLLOW`) and without blocking
/// on a FIFO (`O_NONBLOCK`): its bytes and its metadata. A link fails with
/// [`io::ErrorKind::PermissionDenied`] and the message [`LINK_REFUSED`], anything but a
/// regular file with [`io::ErrorKind::InvalidInput`].
pub fn read_regular(path: &Path) -> io::Result<(Vec<u8>, fs::Metadata)> {
    read_regular_within(path, u64::MAX, |_| unreachable!("no limit"))
}

/// [`read_regular`] of a file of at most `max` bytes: a larger one (or one grown past it while
/// read) is not read into memory; the error is `too_large(length, max)`.
pub fn read_regular_within(
    path: &Path,
    max: u64,
    too_large: impl Fn(u64) -> io::Error,
) -> io::Result<(Vec<u8>, fs::Metadata)> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| {
            // ELOOP: the last component is a symbolic link.
            if e.raw_os_error() == Some(libc::ELOOP) || is_link(path) {
                io::Error::new(io::ErrorKind::PermissionDenied, LINK_REFUSED)
            } else {
                e
            }
        })?;
    let meta = file.metadata()?;
    if !meta.file_type().is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "is not a regular file",
        ));
    }
    if meta.len() > max {
        return Err(too_large(meta.len()));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    file.take(max.saturating_add(1)).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(too_large(bytes.len() as u64));
    }
    Ok((bytes, meta))
}

/// [`read_regular`] as UTF-8 text.
pub fn read_regular_text(path: &Path) -> io::Result<String> {
    let (bytes, _) = read_regular(path)?;
    String::from_utf8(bytes)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "is not UTF-8 text"))
}

/// Writes `bytes` to a fresh file in `tmp_dir` (`<collection>/.ledgersync/tmp`, created if
/// missing) and fsyncs it. The collection itself must exist: a collection someone removed is
/// never recreated by a write (it is reported not found, as its listing is).
pub fn write_tmp(tmp_dir: &Path, stem: &str, bytes: &[u8]) -> io::Result<PathBuf> {
    if let Some(collection) = tmp_dir.parent().and_then(Path::parent)
        && !collection.is_dir()
    {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!(
                "collection {} does not exist: ledgersync does not recreate a collection that \
                 was removed; restore it, or point the mailbox at another collection",
                collection.display()
            ),
        ));
    }
    // `<collection>/.ledgersync/tmp`: neither it nor `.ledgersync` may lead elsewhere.
    for dir in [Some(tmp_dir), tmp_dir.parent()].into_iter().flatten() {
        if is_link(dir) {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!("{} {LINK_REFUSED}", dir.display()),
            ));
        }
    }
    create_dir_all(tmp_dir)?;
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let path = tmp_dir.join(format!("{stem}.{}.{n}.tmp", std::process::id()));
    let mut file = create_file(&path)?;
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
        create_dir_all(dir)?;
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
