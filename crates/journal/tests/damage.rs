//! Damaged files and full disks: the journal reports typed errors naming the file, never
//! panics, `check` lists the damage, and a journal whose disk filled up takes appends again
//! once there is space, without a restart.

mod common;

use common::{events, stream};
use ledgersync_journal::{
    Backend, ExpectedSeq, Journal, JournalOptions, OpenError, check, open, open_read_only,
};
use std::path::{Path, PathBuf};
use std::sync::Arc;

const BACKENDS: [Backend; 2] = [Backend::Redb, Backend::Sled];

/// A journal of `n` events over three streams, closed.
fn build(dir: &Path, backend: Backend, n: usize) {
    let j = open(dir, &JournalOptions::with_backend(backend)).unwrap();
    for i in 0..n {
        let s = stream(&format!("mailbox/m{}", i % 3));
        j.append(&s, ExpectedSeq::Any, events(&format!("e{i}"), 4))
            .unwrap();
    }
}

/// The storage files of a journal, largest first.
fn storage_files(dir: &Path, backend: Backend) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = match backend {
        Backend::Redb => vec![dir.join("journal.redb")],
        Backend::Sled => std::fs::read_dir(dir.join("sled"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.is_file())
            .collect(),
    };
    files.sort_by_key(|p| std::cmp::Reverse(std::fs::metadata(p).unwrap().len()));
    files
}

/// Opens the journal and reads everything, as a command would, collecting the first error.
/// A panic fails the test (the journal must turn them into errors).
fn read_everything(dir: &Path, backend: Backend) -> Result<u64, String> {
    let j: Arc<dyn Journal> =
        open(dir, &JournalOptions::with_backend(backend)).map_err(|e| e.to_string())?;
    let last = j.last_position().map_err(|e| e.to_string())?;
    let mut n = 0;
    let mut from = 1;
    loop {
        let batch = j.read_all(from, 64).map_err(|e| e.to_string())?;
        if batch.is_empty() {
            break;
        }
        n += batch.len() as u64;
        from = batch.last().unwrap().position + 1;
    }
    for (s, _) in j.streams().map_err(|e| e.to_string())? {
        j.read_stream(&s, 1, usize::MAX)
            .map_err(|e| e.to_string())?;
    }
    assert!(n <= last);
    Ok(n)
}

fn flip(path: &Path, at: u64, len: u64) {
    let mut bytes = std::fs::read(path).unwrap();
    let end = (at + len).min(bytes.len() as u64);
    for b in &mut bytes[at as usize..end as usize] {
        *b ^= 0xA5;
    }
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn flipped_bytes_anywhere_give_errors_not_panics() {
    for backend in BACKENDS {
        let clean = tempfile::tempdir().unwrap();
        build(clean.path(), backend, 60);
        let file = storage_files(clean.path(), backend).remove(0);
        let rel = file.strip_prefix(clean.path()).unwrap().to_owned();
        let size = std::fs::metadata(&file).unwrap().len();
        let mut errors = 0;
        // Every 4 KiB page, 16 bytes in the middle of it.
        for page in 0..size.div_ceil(4096) {
            let tmp = tempfile::tempdir().unwrap();
            copy_dir(clean.path(), tmp.path());
            flip(&tmp.path().join(&rel), page * 4096 + 1000, 16);
            let outcome = std::panic::catch_unwind(|| read_everything(tmp.path(), backend));
            match outcome {
                Ok(Ok(_)) => {}
                Ok(Err(text)) => {
                    errors += 1;
                    assert!(
                        text.contains(&tmp.path().display().to_string())
                            || text.contains("journal"),
                        "{backend} page {page}: the error names no file: {text}"
                    );
                }
                Err(_) => panic!("{backend} page {page}: the journal panicked"),
            }
        }
        if backend == Backend::Redb {
            assert!(errors > 0, "no flipped page of redb was noticed");
        }
    }
}

#[test]
fn a_flipped_record_is_a_typed_error_and_check_names_its_position() {
    for backend in BACKENDS {
        let tmp = tempfile::tempdir().unwrap();
        let j = open(tmp.path(), &JournalOptions::with_backend(backend)).unwrap();
        let s = stream("mailbox/m1");
        // A payload that is easy to find in the file.
        let mut evs = events("x", 1);
        evs[0].payload = b"NEEDLE-NEEDLE-NEEDLE".to_vec();
        j.append(&s, ExpectedSeq::NoStream, events("a", 3)).unwrap();
        j.append(&s, ExpectedSeq::Exactly(3), evs).unwrap();
        j.append(&s, ExpectedSeq::Exactly(4), events("b", 3))
            .unwrap();
        drop(j);
        let mut hit = false;
        for file in storage_files(tmp.path(), backend) {
            let bytes = std::fs::read(&file).unwrap();
            if let Some(at) = bytes.windows(20).position(|w| w == b"NEEDLE-NEEDLE-NEEDLE") {
                flip(&file, at as u64 + 3, 1);
                hit = true;
            }
        }
        if !hit {
            // sled may keep the value compressed or in a segment we do not recognise.
            assert_eq!(backend, Backend::Sled);
            continue;
        }
        let err = match read_everything(tmp.path(), backend) {
            Err(err) => err,
            Ok(n) => {
                // sled checks its own log on opening and cuts it at the first damaged
                // entry: the appends from there on are gone without an error
                // (docs/journal-storage.md, Damage). redb must report the record.
                assert_eq!(
                    backend,
                    Backend::Sled,
                    "redb read {n} events without an error"
                );
                assert!(n < 7, "sled: {n}");
                continue;
            }
        };
        assert!(err.contains("position 4"), "{backend}: {err}");
        let report = check(tmp.path()).unwrap();
        assert!(!report.is_clean(), "{backend}");
        assert_eq!(report.last_good_position(), 3, "{backend}: {report:?}");
        assert!(
            report.damaged.iter().any(|d| d.position == Some(4)),
            "{backend}: {report:?}"
        );
        assert!(
            report.damaged.iter().any(|d| d
                .stream
                .as_ref()
                .is_some_and(|s| s.as_str() == "mailbox/m1")),
            "{backend}: {report:?}"
        );
    }
}

#[test]
fn a_truncated_file_is_a_typed_error() {
    for backend in BACKENDS {
        let tmp = tempfile::tempdir().unwrap();
        build(tmp.path(), backend, 60);
        let file = storage_files(tmp.path(), backend).remove(0);
        let size = std::fs::metadata(&file).unwrap().len();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&file)
            .unwrap()
            .set_len(size / 3)
            .unwrap();
        let outcome = std::panic::catch_unwind(|| read_everything(tmp.path(), backend));
        match outcome {
            Err(_) => panic!("{backend}: the journal panicked on a truncated file"),
            Ok(Err(_)) => {}
            // sled may have kept everything in a segment before the cut, or lose the tail
            // silently: then check must at least not panic.
            Ok(Ok(_)) => assert_eq!(backend, Backend::Sled),
        }
        if backend == Backend::Redb {
            match check(tmp.path()) {
                Err(OpenError::Corrupt { path, .. }) => {
                    assert!(path.ends_with("journal.redb"), "{path:?}")
                }
                Err(e) => panic!("redb: expected Corrupt, got {e}"),
                Ok(report) => assert!(!report.is_clean(), "redb: {report:?}"),
            }
        }
    }
}

#[test]
fn a_clean_journal_checks_clean_on_both_backends() {
    for backend in BACKENDS {
        let tmp = tempfile::tempdir().unwrap();
        build(tmp.path(), backend, 30);
        let report = check(tmp.path()).unwrap();
        assert!(report.is_clean(), "{backend}: {report:?}");
        assert_eq!(report.records_ok, 120);
        assert_eq!(report.streams_ok, 3);
        assert_eq!(report.last_good_position(), 120);
    }
}

#[test]
fn a_read_only_journal_is_read_without_the_lock_and_refuses_appends() {
    let tmp = tempfile::tempdir().unwrap();
    build(tmp.path(), Backend::Redb, 10);
    let writer = open(tmp.path(), &JournalOptions::default()).unwrap();
    drop(writer);
    let lock = std::fs::read(tmp.path().join("LOCK")).unwrap();
    let a = open_read_only(tmp.path(), &JournalOptions::default()).unwrap();
    let b = open_read_only(tmp.path(), &JournalOptions::default()).unwrap();
    assert_eq!(a.read_all(1, 100).unwrap().len(), 40);
    assert_eq!(b.last_position().unwrap(), 40);
    let err = a
        .append(&stream("mailbox/m0"), ExpectedSeq::Any, events("z", 1))
        .unwrap_err();
    assert!(err.to_string().contains("read-only"), "{err}");
    // Nothing was written: not even the lock file's pid.
    assert_eq!(std::fs::read(tmp.path().join("LOCK")).unwrap(), lock);
    assert!(
        open_read_only(tmp.path(), &JournalOptions::with_backend(Backend::Sled)).is_err(),
        "the backend must match"
    );
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// A small tmpfs, when this process may mount one (root in a container that allows it).
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(bytes: u64) -> Option<Self> {
        let dir = tempfile::tempdir().ok()?;
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(dir.path())
            .stderr(std::process::Stdio::null())
            .status()
            .ok()?;
        status.success().then_some(Self { dir })
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(self.dir.path())
            .status();
    }
}

#[test]
fn a_full_disk_fails_the_append_then_the_journal_takes_appends_again() {
    let Some(disk) = SmallDisk::mount(4 << 20) else {
        eprintln!("skipped: cannot mount a tmpfs here (needs root and a permissive container)");
        return;
    };
    let dir = disk.dir.path().join("journal");
    let filler = disk.dir.path().join("filler");
    let j = open(&dir, &JournalOptions::default()).unwrap();
    let s = stream("mailbox/m1");
    j.append(&s, ExpectedSeq::NoStream, events("a", 10))
        .unwrap();
    // Fill the disk.
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&filler).unwrap();
        let chunk = vec![0u8; 64 << 10];
        while f.write_all(&chunk).is_ok() {}
        let _ = f.sync_all();
    }
    let big: Vec<_> = (0..200)
        .map(|i| {
            let mut e = common::event(&vec![b'x'; 8 << 10], vec![]);
            e.payload[0] = i as u8;
            e
        })
        .collect();
    let mut failures = 0;
    let mut head = j.stream_head(&s).unwrap();
    for _ in 0..5 {
        match j.append(
            &s,
            ExpectedSeq::Exactly(head),
            big.iter().take(40).cloned().collect(),
        ) {
            Ok(a) => head = a.last_seq,
            Err(e) => {
                failures += 1;
                assert!(e.to_string().contains("journal"), "{e}");
            }
        }
    }
    assert!(failures > 0, "the disk never filled up");
    assert!(j.commit_stats().failed_commits > 0);
    assert!(j.commit_stats().failing_commits > 0);
    // Space is back: the next append is written, without reopening the journal.
    std::fs::remove_file(&filler).unwrap();
    let head = j.stream_head(&s).unwrap();
    let a = j
        .append(&s, ExpectedSeq::Exactly(head), events("after", 3))
        .unwrap();
    assert_eq!(a.last_seq, head + 3);
    assert_eq!(j.commit_stats().failing_commits, 0);
    // Acknowledged = durable: every acknowledged event is there after a reopen, nothing else.
    drop(j);
    let j = open(&dir, &JournalOptions::default()).unwrap();
    assert_eq!(j.stream_head(&s).unwrap(), head + 3);
    let all = j.read_stream(&s, 1, usize::MAX).unwrap();
    assert_eq!(all.len() as u64, head + 3);
    assert!(check(&dir).is_err_and(|e| matches!(e, OpenError::Locked { .. })));
    drop(j);
    assert!(check(&dir).unwrap().is_clean());
}
