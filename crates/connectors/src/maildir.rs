//! Delivery into a Maildir (the mail store of Dovecot, mutt and others).
//!
//! A Maildir is a directory with `tmp/`, `new/` and `cur/`. A message is written to `tmp/`,
//! fsynced, then renamed into `new/`: a reader sees it whole or not at all. The unique part of
//! the file name comes from the intent's idempotency key, so a retried delivery finds the first
//! one (in `new/`, or in `cur/` once a mail client has seen it) and delivers nothing.

use crate::fsutil;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// Whether a message was delivered or had been before.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// Written into `new/` now.
    Delivered,
    /// A message with the same unique part was already in `new/` or `cur/`.
    AlreadyThere,
}

/// The Maildir of `address` under `root`: `<root>/<address, lower case>`. `None` for an address
/// that cannot be a directory name.
pub fn maildir_of(root: &Path, address: &str) -> Option<PathBuf> {
    let address = address.trim().to_lowercase();
    let ok = !address.is_empty()
        && address.contains('@')
        && !address.starts_with('.')
        && !address.contains(['/', '\\', '\0'])
        && !address.chars().any(char::is_control);
    ok.then(|| root.join(address))
}

/// Delivers `message` into the Maildir at `dir` (creating `tmp/ new/ cur/` if missing) under
/// the unique part `unique`, once.
pub fn deliver(dir: &Path, unique: &str, message: &[u8], unix_secs: u64) -> io::Result<Delivery> {
    // A Maildir (or one of its parts) that is a symbolic link could lead anywhere: refused.
    for part in [
        dir.to_path_buf(),
        dir.join("tmp"),
        dir.join("new"),
        dir.join("cur"),
    ] {
        if fsutil::is_link(&part) {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!("{} {}", part.display(), fsutil::LINK_REFUSED),
            ));
        }
    }
    for sub in ["tmp", "new", "cur"] {
        fsutil::create_dir_all(&dir.join(sub))?;
    }
    let marker = format!(".{unique}.");
    for sub in ["new", "cur"] {
        for entry in fs::read_dir(dir.join(sub))? {
            if entry?.file_name().to_string_lossy().contains(&marker) {
                return Ok(Delivery::AlreadyThere);
            }
        }
    }
    let name = format!("{unix_secs}.{unique}.ledgersync");
    let tmp = dir.join("tmp").join(&name);
    {
        use std::io::Write;
        // A leftover of an interrupted delivery (or anything planted there) is replaced, never
        // written through.
        let _ = fs::remove_file(&tmp);
        let mut file = fsutil::create_file(&tmp)?;
        file.write_all(message)?;
        file.sync_all()?;
    }
    let target = dir.join("new").join(&name);
    if let Err(e) = fs::rename(&tmp, &target) {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    fsutil::sync_parent(&target)?;
    Ok(Delivery::Delivered)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_that_cannot_be_directories_are_refused() {
        let root = Path::new("/m");
        assert_eq!(
            maildir_of(root, "Jayne@Serenity.example"),
            Some(PathBuf::from("/m/jayne@serenity.example"))
        );
        assert_eq!(maildir_of(root, "../etc@x"), None);
        assert_eq!(maildir_of(root, "a/b@x"), None);
        assert_eq!(maildir_of(root, "nobody"), None);
    }
}
