//! A damaged journal, a read-only data directory and configuration mistakes, through the real
//! binary: errors that say what is wrong and what to do, exit 2 (or 1 for `journal check`
//! finding damage), never a panic (101).

mod common;
use common::*;

use std::path::{Path, PathBuf};

/// A demo data directory (its dates are taken from now).
fn demo(dir: &Path) -> PathBuf {
    let data = dir.join("data");
    let o = ledgersync(&["demo", "--data", data.to_str().unwrap()]);
    assert!(o.status.success(), "demo: {}{}", stdout(&o), stderr(&o));
    data
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        let kind = entry.file_type().unwrap();
        if kind.is_dir() {
            copy_dir(&entry.path(), &target);
        } else if kind.is_file() {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

fn redb_file(data: &Path) -> PathBuf {
    data.join("journal").join("journal.redb")
}

fn code(o: &std::process::Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

#[test]
fn replay_on_a_damaged_journal_exits_2_with_a_message_never_101() {
    let tmp = tempfile::tempdir().unwrap();
    let clean = demo(tmp.path());
    let size = std::fs::metadata(redb_file(&clean)).unwrap().len();
    let mut reported = 0;
    for page in 0..size.div_ceil(4096) {
        let data = tmp.path().join(format!("p{page}"));
        copy_dir(&clean, &data);
        let file = redb_file(&data);
        let mut bytes = std::fs::read(&file).unwrap();
        let at = (page * 4096 + 200) as usize;
        bytes[at] ^= 0xFF;
        std::fs::write(&file, bytes).unwrap();
        let o = ledgersync(&["replay", "--data", data.to_str().unwrap()]);
        let err = stderr(&o);
        assert!(
            !err.contains("panicked"),
            "page {page}: a panic was printed: {err}"
        );
        match code(&o) {
            0 | 1 => {}
            2 => {
                reported += 1;
                assert!(
                    err.contains("journal.redb") && err.starts_with("error: "),
                    "page {page}: {err}"
                );
                assert!(
                    err.contains("backup") || err.contains("journal check"),
                    "page {page}: says nothing to do: {err}"
                );
            }
            other => panic!("page {page}: exit {other}: {err}"),
        }
        std::fs::remove_dir_all(&data).unwrap();
    }
    assert!(reported > 0, "no damaged page was reported");
}

/// Flips one byte inside the record of the first event that mentions `needle`.
fn damage_a_record(data: &Path, needle: &[u8]) {
    let file = redb_file(data);
    let mut bytes = std::fs::read(&file).unwrap();
    let at = bytes
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("the needle is in the journal");
    bytes[at + 2] ^= 0x20;
    std::fs::write(&file, bytes).unwrap();
}

#[test]
fn journal_check_lists_the_damage_and_recover_copies_the_good_records() {
    let tmp = tempfile::tempdir().unwrap();
    let data = demo(tmp.path());
    let d = data.to_str().unwrap();

    let o = ledgersync(&["journal", "check", "--data", d]);
    assert_eq!(code(&o), 0, "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("intact"), "{}", stdout(&o));

    damage_a_record(&data, b"Bike repair");
    let o = ledgersync(&["journal", "check", "--data", d]);
    let out = stdout(&o);
    assert_eq!(code(&o), 1, "{out}{}", stderr(&o));
    assert!(out.contains("damaged: position "), "{out}");
    assert!(out.contains("CRC32 mismatch"), "{out}");
    // The first record holding the subject may be the organization's copy of the change or a
    // mailbox's, depending on where redb placed the pages: either stream is named.
    assert!(
        out.contains("damaged: stream mailbox/") || out.contains("damaged: stream org/"),
        "{out}"
    );
    let o = ledgersync(&["journal", "check", "--data", d, "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["intact"], false);
    let good = v["last_good_position"].as_u64().unwrap();
    assert!(
        good > 0 && good < v["last_position"].as_u64().unwrap(),
        "{v}"
    );
    assert_eq!(v["damaged"][0]["position"].as_u64(), Some(good + 1), "{v}");

    let o = ledgersync(&["replay", "--data", d]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert!(
        stderr(&o).contains(&format!("position {}", good + 1)),
        "{}",
        stderr(&o)
    );

    let new = tmp.path().join("recovered");
    let n = new.to_str().unwrap();
    let o = ledgersync(&["journal", "recover", "--data", d, "--to", n]);
    assert_eq!(code(&o), 0, "{}{}", stdout(&o), stderr(&o));
    assert!(
        stdout(&o).contains(&format!("recovered positions 1..{good} ")),
        "{}",
        stdout(&o)
    );
    let o = ledgersync(&["journal", "check", "--data", n]);
    assert_eq!(code(&o), 0, "{}", stdout(&o));
    let o = ledgersync(&["events", "--data", n, "--json"]);
    assert_eq!(stdout(&o).lines().count() as u64, good);
    // The recovered journal is read to its end; decisions cut off at the damage may differ.
    let o = ledgersync(&["replay", "--data", n]);
    assert!(matches!(code(&o), 0 | 1), "{}{}", stdout(&o), stderr(&o));

    let o = ledgersync(&["journal", "recover", "--data", d, "--to", n]);
    assert_eq!(code(&o), 2);
    assert!(stderr(&o).contains("not empty"), "{}", stderr(&o));
}

/// A read-only bind mount of `dir`, when this process may make one (root in a permissive
/// container); else `None`.
struct ReadOnly(PathBuf);

impl ReadOnly {
    fn mount(dir: &Path, at: &Path) -> Option<Self> {
        std::fs::create_dir_all(at).ok()?;
        let run = |args: &[&str]| {
            std::process::Command::new("mount")
                .args(args)
                .stderr(std::process::Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        let (d, a) = (dir.to_str()?, at.to_str()?);
        if !run(&["--bind", d, a]) {
            return None;
        }
        let me = Self(at.to_owned());
        run(&["-o", "remount,ro,bind", a]).then_some(me)
    }
}

impl Drop for ReadOnly {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn read_only_commands_work_on_a_read_only_data_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let data = demo(tmp.path());
    // A backup of the data directory, without the projection cache.
    let backup = tmp.path().join("backup");
    copy_dir(&data, &backup);
    let _ = std::fs::remove_file(backup.join("projections.redb"));
    let ro_path = tmp.path().join("ro");
    let mounted = ReadOnly::mount(&backup, &ro_path);
    let dir = match &mounted {
        Some(m) => m.0.clone(),
        None => {
            // Without a read-only mount (root ignores permissions), at least take the
            // permissions away: the commands must still not write.
            eprintln!("no read-only bind mount here: testing on a chmod a-w copy");
            set_read_only(&backup, true);
            backup.clone()
        }
    };
    let lock_before = std::fs::read(dir.join("journal").join("LOCK")).unwrap();
    let d = dir.to_str().unwrap();
    for args in [
        vec!["events", "--data", d],
        vec!["replay", "--data", d],
        vec!["explain", "--data", d, "Bike repair"],
        vec![
            "what-if",
            "--data",
            d,
            "--set",
            "distinct_physical_logical_deletes=true",
        ],
        vec!["timeline", "--data", d, "apt-bike-repair"],
        vec!["alerts", "--data", d],
    ] {
        let o = ledgersync(&args);
        assert_eq!(code(&o), 0, "{args:?}: {}{}", stdout(&o), stderr(&o));
        assert!(!stdout(&o).is_empty(), "{args:?}");
    }
    // Nothing was written: no lock taken (its pid unchanged), no projection cached.
    assert_eq!(
        std::fs::read(dir.join("journal").join("LOCK")).unwrap(),
        lock_before
    );
    if mounted.is_some() {
        assert!(!dir.join("projections.redb").exists());
    }
    drop(mounted);
    set_read_only(&backup, false);
}

fn set_read_only(dir: &Path, ro: bool) {
    use std::os::unix::fs::PermissionsExt as _;
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_dir() {
            set_read_only(&entry.path(), ro);
        }
        let mut p = entry.metadata().unwrap().permissions();
        let mode = p.mode();
        p.set_mode(if ro { mode & !0o222 } else { mode | 0o200 });
        std::fs::set_permissions(entry.path(), p).unwrap();
    }
}

fn config_error(text: &str, dir: &Path) -> String {
    let path = dir.join("ledgersync.toml");
    std::fs::write(&path, text).unwrap();
    let data = dir.join("data");
    let o = ledgersync(&[
        "--config",
        path.to_str().unwrap(),
        "mailbox",
        "list",
        "--data",
        data.to_str().unwrap(),
    ]);
    assert_eq!(code(&o), 2, "{text}: {}{}", stdout(&o), stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("ledgersync.toml"), "{err}");
    err
}

#[test]
fn configuration_mistakes_are_refused_with_file_key_and_remedy() {
    let tmp = tempfile::tempdir().unwrap();
    let err = config_error("[log]\nlevel = \"verbose\"\n", tmp.path());
    assert!(
        err.contains("log.level") && err.contains("verbose") && err.contains("debug"),
        "{err}"
    );

    let cal = tmp.path().join("cal");
    std::fs::create_dir(&cal).unwrap();
    let err = config_error(
        &format!(
            "[[mailbox]]\nid = \"ana\"\ncalendar = \"{0}\"\n\n\
             [[mailbox]]\nid = \"bo\"\ncalendar = \"{0}/../cal/\"\n",
            cal.display()
        ),
        tmp.path(),
    );
    assert!(
        err.contains("[[mailbox]] #2 (`bo`)")
            && err.contains("#1 (`ana`)")
            && err.contains("its own collection"),
        "{err}"
    );

    let file = tmp.path().join("contacts.vcf");
    std::fs::write(&file, "BEGIN:VCARD\n").unwrap();
    let err = config_error(
        &format!(
            "[[mailbox]]\nid = \"ana\"\naddress_book = \"{}\"\n",
            file.display()
        ),
        tmp.path(),
    );
    assert!(
        err.contains("address_book") && err.contains("a file, not a directory"),
        "{err}"
    );

    let err = config_error(
        "[[mailbox]]\nid = \"ana\"\ncalendar = \"/proc/self\"\n",
        tmp.path(),
    );
    assert!(err.contains("system path"), "{err}");
}
