//! Only the owner administers `ledgersync serve`: the real binary, started under the permissive
//! umask 022, keeps its data directory, journal, socket and the collections it creates to its
//! owner; the service never opens a file for a client; idle connections do not stop a real
//! command from being answered; and an unprivileged user can neither read the journal nor use
//! the control socket (refused by its mode, and by the peer check when the modes are opened).

mod common;

use common::{Site, stderr, stdout};
use std::fs;
use std::io::{BufRead as _, BufReader, Write as _};
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const DEADLINE: Duration = Duration::from_secs(60);

impl Site {
    fn socket(&self) -> PathBuf {
        self.data.join("control.sock")
    }
}

/// `serve` started under umask 022 (the usual default), killed if the test fails.
struct Serve {
    child: Option<Child>,
    log: PathBuf,
}

impl Serve {
    fn start(site: &Site) -> Self {
        let log = site.root.join("serve.log");
        let file = fs::File::create(&log).expect("log file");
        let child = Command::new("sh")
            .args([
                "-c",
                "umask 022; exec \"$0\" \"$@\"",
                env!("CARGO_BIN_EXE_ledgersync"),
                "--config",
                site.config.to_str().unwrap(),
                "serve",
            ])
            .env_remove("LEDGERSYNC_DATA")
            .env_remove("LEDGERSYNC_CONFIG")
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("start ledgersync serve");
        let serve = Self {
            child: Some(child),
            log,
        };
        let socket = site.socket();
        serve.wait_for("the control socket", || {
            UnixStream::connect(&socket).ok().map(|_| ())
        });
        serve
    }

    fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn wait_for<T>(&self, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
        let started = Instant::now();
        loop {
            if let Some(v) = check() {
                return v;
            }
            assert!(
                started.elapsed() < DEADLINE,
                "timed out waiting for {what}; serve log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let started = Instant::now();
            while child.try_wait().ok().flatten().is_none() && started.elapsed() < DEADLINE {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn mode(path: &Path) -> u32 {
    fs::symlink_metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

/// Every file and directory under `dir`. The service runs while the tree is walked: a
/// temporary file or directory it removes meanwhile is left out, not an error.
fn tree(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return out,
        Err(e) => panic!("{}: {e}", dir.display()),
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() {
            out.extend(tree(&path));
        }
        out.push(path);
    }
    out
}

/// Sends one raw request line and reads every frame back.
fn raw_request(socket: &Path, request: &str) -> Vec<serde_json::Value> {
    let mut stream = UnixStream::connect(socket).expect("connect");
    stream.write_all(request.as_bytes()).unwrap();
    stream.write_all(b"\n").unwrap();
    BufReader::new(stream)
        .lines()
        .map_while(Result::ok)
        .map(|l| serde_json::from_str(&l).unwrap())
        .collect()
}

#[test]
fn under_umask_022_the_data_directory_the_journal_and_the_written_collections_are_the_owners() {
    let site = Site::new();
    let serve = Serve::start(&site);
    assert_eq!(mode(&site.data), 0o700, "the data directory");
    assert_eq!(mode(&site.socket()) & 0o777, 0o600, "the control socket");
    let out = site.run(&["crm", "apply", site.example_changes().to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let calendar = site.root.join("vdir/jayne/calendar");
    serve.wait_for("the appointment in Jayne's calendar", || {
        fs::read_dir(&calendar)
            .ok()?
            .flatten()
            .any(|e| e.path().extension().is_some_and(|x| x == "ics"))
            .then_some(())
    });
    serve.wait_for("the invitations in the Maildirs", || {
        tree(&site.root.join("maildir"))
            .iter()
            .any(|p| p.parent().is_some_and(|d| d.ends_with("new")))
            .then_some(())
    });
    let mut checked = 0;
    for root in [
        site.data.clone(),
        site.root.join("vdir"),
        site.root.join("maildir"),
    ] {
        for path in tree(&root) {
            // Removed since the walk (a temporary file of the running service): nothing to check.
            let Ok(meta) = fs::symlink_metadata(&path) else {
                continue;
            };
            let m = meta.permissions().mode() & 0o7777;
            if meta.is_dir() {
                assert_eq!(m & 0o077, 0, "{} is {m:o}", path.display());
            } else if meta.is_file() {
                assert_eq!(m & 0o077, 0, "{} is {m:o}", path.display());
                checked += 1;
            }
        }
    }
    let journal_files = tree(&site.data.join("journal"))
        .into_iter()
        .filter(|p| p.is_file())
        .collect::<Vec<_>>();
    assert!(!journal_files.is_empty());
    for f in &journal_files {
        assert_eq!(mode(f), 0o600, "{}", f.display());
    }
    assert!(
        checked > journal_files.len(),
        "collections were checked too"
    );
    // Each command is logged with the peer's uid.
    let log = serve.log();
    assert!(
        log.lines()
            .any(|l| l.contains("control command") && l.contains("uid=")),
        "{log}"
    );
}

#[test]
fn the_service_never_opens_a_file_for_a_client() {
    let site = Site::new();
    let serve = Serve::start(&site);
    let secret = site.root.join("secret.jsonl");
    fs::write(&secret, "SECRET-MARKER-41c9 is not a change\n").unwrap();
    let request = serde_json::json!({
        "args": ["crm", "apply", secret.to_str().unwrap()],
        "input": null,
    });
    let frames = raw_request(&site.socket(), &request.to_string());
    let text = serde_json::to_string(&frames).unwrap();
    assert!(!text.contains("SECRET-MARKER"), "{text}");
    assert!(text.contains("refused"), "{text}");
    assert_eq!(frames.last().unwrap()["exit"], 2, "{text}");
    // The client of the binary sends the content: the same file is read by it, and refused by
    // the service for what it says, with its line.
    let out = site.run(&["crm", "apply", secret.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    drop(serve);
}

#[test]
fn many_idle_connections_do_not_stop_a_real_command_from_being_answered() {
    let site = Site::new();
    let serve = Serve::start(&site);
    let idle: Vec<UnixStream> = (0..400)
        .filter_map(|_| UnixStream::connect(site.socket()).ok())
        .collect();
    assert!(idle.len() > 100, "{} connections", idle.len());
    let started = Instant::now();
    let out = site.run(&["mailbox", "list"]);
    assert!(
        out.status.success(),
        "{}\nserve log:\n{}",
        stderr(&out),
        serve.log()
    );
    assert!(stdout(&out).contains("mbx-") || !stdout(&out).is_empty());
    assert!(started.elapsed() < DEADLINE);
    drop(idle);
}

/// Runs `program args` as uid/gid 65534 (nobody) with no supplementary group.
fn as_nobody(program: &str, args: &[&str]) -> std::process::Output {
    Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", program])
        .args(args)
        .env_remove("LEDGERSYNC_DATA")
        .env_remove("LEDGERSYNC_CONFIG")
        .output()
        .expect("setpriv")
}

#[test]
fn an_unprivileged_user_can_neither_read_the_journal_nor_use_the_socket() {
    assert!(
        process_uid() == 0 && Command::new("setpriv").arg("--version").output().is_ok(),
        "this test acts as an unprivileged user with setpriv (util-linux): run it as root, as ./scripts/test and CI do"
    );
    let site = Site::new();
    let serve = Serve::start(&site);
    let out = site.run(&["crm", "apply", site.example_changes().to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    // The way to the data directory is open to everybody (like /srv or /var/lib): its own mode
    // is what keeps others out.
    fs::set_permissions(&site.root, fs::Permissions::from_mode(0o755)).unwrap();
    let journal_file = tree(&site.data.join("journal"))
        .into_iter()
        .find(|p| p.is_file())
        .expect("a journal file");
    let bin = env!("CARGO_BIN_EXE_ledgersync");
    let data = site.data.to_str().unwrap();
    let before = site.run(&["--json", "mailbox", "list"]);
    assert!(before.status.success(), "{}", stderr(&before));

    let cat = as_nobody("cat", &[journal_file.to_str().unwrap()]);
    assert!(!cat.status.success(), "nobody read the journal");
    let ls = as_nobody("ls", &[data]);
    assert!(!ls.status.success(), "nobody listed the data directory");
    let list = as_nobody(bin, &["--data", data, "mailbox", "list"]);
    assert!(!list.status.success(), "nobody used the service");
    let err = stderr(&list);
    assert!(err.to_lowercase().contains("permission denied"), "{err}");
    let disable = as_nobody(bin, &["--data", data, "mailbox", "disable", "mbx-jayne"]);
    assert!(!disable.status.success());

    // Even when the modes are opened by mistake, the peer check refuses the connection.
    fs::set_permissions(&site.data, fs::Permissions::from_mode(0o755)).unwrap();
    fs::set_permissions(site.socket(), fs::Permissions::from_mode(0o666)).unwrap();
    let disable = as_nobody(bin, &["--data", data, "mailbox", "disable", "mbx-jayne"]);
    assert!(!disable.status.success());
    let err = stderr(&disable);
    assert!(
        err.contains("refused") && err.contains("uid 65534"),
        "{err}"
    );
    serve.wait_for("the refusal in the log", || {
        serve
            .log()
            .lines()
            .any(|l| l.contains("control connection refused") && l.contains("uid=65534"))
            .then_some(())
    });
    // Nothing was changed: every workload of every mailbox is as enabled as before (a cycle
    // may have run meanwhile: its times are not compared).
    let after = site.run(&["--json", "mailbox", "list"]);
    let statuses = |out: &std::process::Output| -> Vec<(String, String, String)> {
        let v: serde_json::Value = serde_json::from_str(&stdout(out)).unwrap();
        let mut out = Vec::new();
        for m in v.as_array().unwrap() {
            for (workload, w) in m["workloads"].as_object().unwrap() {
                out.push((
                    m["mailbox"].to_string(),
                    workload.clone(),
                    w["status"].to_string(),
                ));
            }
        }
        out
    };
    assert_eq!(statuses(&after), statuses(&before));
    assert!(
        statuses(&after).iter().all(|(_, _, s)| s == "\"enabled\""),
        "{}",
        stdout(&after)
    );
}

#[test]
fn with_data_group_the_group_may_read_the_journal_and_use_the_socket() {
    assert!(
        process_uid() == 0 && Command::new("setpriv").arg("--version").output().is_ok(),
        "this test acts as a member of the group with setpriv (util-linux): run it as root, as ./scripts/test and CI do"
    );
    let site = Site::new();
    let text = fs::read_to_string(&site.config).unwrap();
    // gid 65534 (nogroup on Debian, nobody elsewhere): the group named by number.
    let text = text.replacen("[data]\n", "[data]\ngroup = \"65534\"\n", 1);
    fs::write(&site.config, text).unwrap();
    let serve = Serve::start(&site);
    fs::set_permissions(&site.root, fs::Permissions::from_mode(0o755)).unwrap();
    assert_eq!(mode(&site.data), 0o2750, "the data directory");
    assert_eq!(mode(&site.socket()) & 0o777, 0o660, "the control socket");
    let journal_file = tree(&site.data.join("journal"))
        .into_iter()
        .find(|p| p.is_file())
        .expect("a journal file");
    assert_eq!(mode(&journal_file), 0o640, "{}", journal_file.display());
    let bin = env!("CARGO_BIN_EXE_ledgersync");
    let data = site.data.to_str().unwrap();
    // A member of the group (here by its primary gid) reads and uses the service...
    let cat = as_nobody("cat", &[journal_file.to_str().unwrap()]);
    assert!(cat.status.success(), "{}", stderr(&cat));
    let list = as_nobody(bin, &["--data", data, "mailbox", "list"]);
    assert!(list.status.success(), "{}\n{}", stderr(&list), serve.log());
    // ... another user outside it does not.
    let other = Command::new("setpriv")
        .args(["--reuid=65533", "--regid=65533", "--clear-groups", bin])
        .args(["--data", data, "mailbox", "list"])
        .output()
        .expect("setpriv");
    assert!(!other.status.success());
    assert!(
        stderr(&other).to_lowercase().contains("permission denied"),
        "{}",
        stderr(&other)
    );
}

/// The uid of this test process (from /proc, no unsafe code).
fn process_uid() -> u32 {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|u| u.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(u32::MAX)
}
