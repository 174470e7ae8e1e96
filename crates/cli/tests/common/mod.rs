//! Running the real `ledgersync` binary from the CLI tests, as a user runs it.
#![allow(dead_code)] // each test file uses its own subset

use std::path::PathBuf;
use std::process::{Command, Output};

/// Runs `ledgersync ARGS` without the environment's data and config overrides.
pub fn ledgersync(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ledgersync"))
        .args(args)
        .env_remove("LEDGERSYNC_DATA")
        .env_remove("LEDGERSYNC_CONFIG")
        .output()
        .expect("run ledgersync")
}

/// Its standard output.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Its standard error.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A temporary site for `serve`: a data directory, and a configuration with the example's two
/// mailboxes (Jayne's and Paul's vdir calendars and address books, one Maildir root).
pub struct Site {
    _tmp: tempfile::TempDir,
    pub root: PathBuf,
    pub data: PathBuf,
    pub config: PathBuf,
}

impl Site {
    pub fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_path_buf();
        let data = root.join("data");
        let config = root.join("ledgersync.toml");
        let mut text = format!("[data]\ndir = \"{}\"\n", data.display());
        for user in ["jayne", "paul"] {
            text.push_str(&format!(
                "\n[[mailbox]]\nid = \"mbx-{user}\"\ncalendar = \"{r}/vdir/{user}/calendar\"\naddress_book = \"{r}/vdir/{user}/contacts\"\nmaildirs = \"{r}/maildir\"\n",
                r = root.display()
            ));
        }
        std::fs::write(&config, text).unwrap();
        Self {
            _tmp: tmp,
            root,
            data,
            config,
        }
    }

    /// A site whose configuration names the broker at `url` as its bus (`[bus] kind =
    /// "amqp"`).
    pub fn on_bus(url: &str) -> Self {
        let site = Self::new();
        let text = std::fs::read_to_string(&site.config).unwrap();
        std::fs::write(
            &site.config,
            format!("[bus]\nkind = \"amqp\"\nurl = \"{url}\"\n\n{text}"),
        )
        .unwrap();
        site
    }

    /// `crm apply FILE` with this site's configuration on a broker (`Site::on_bus`): the lines
    /// published to the CRM queue; their message ids.
    pub fn publish(&self, file: &std::path::Path) -> Vec<String> {
        let out = ledgersync(&[
            "--config",
            self.config.to_str().unwrap(),
            "--json",
            "crm",
            "apply",
            file.to_str().unwrap(),
        ]);
        assert!(out.status.success(), "crm apply: {}", stderr(&out));
        let answer: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("JSON");
        assert_eq!(answer["queue"], "ledgersync.crm", "{answer}");
        answer["message_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect()
    }

    /// Every event of the journal, as `events --json` prints them.
    pub fn journal(&self) -> Vec<serde_json::Value> {
        let out = self.run(&["--json", "events"]);
        assert!(out.status.success(), "events: {}", stderr(&out));
        stdout(&out)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// `ledgersync --data <data> ARGS`.
    pub fn run(&self, args: &[&str]) -> Output {
        let mut all = vec!["--data", self.data.to_str().unwrap()];
        all.extend_from_slice(args);
        ledgersync(&all)
    }

    /// The README's example organization as `ledgersync example` prints it today (its meeting
    /// is tomorrow), written to a file in the site.
    pub fn example_changes(&self) -> PathBuf {
        let out = ledgersync(&["example"]);
        assert!(out.status.success(), "ledgersync example: {}", stderr(&out));
        let file = self.root.join("example.jsonl");
        std::fs::write(&file, &out.stdout).unwrap();
        file
    }
}

/// How long a wait for a running service may take before the test fails: generous, since a
/// test machine can be busy (a wait ends as soon as what it waits for is there).
pub const DEADLINE: std::time::Duration = std::time::Duration::from_secs(180);

/// A running `ledgersync serve`, killed when the test ends; its log is printed if the test
/// fails.
pub struct Serve {
    child: Option<std::process::Child>,
    log: PathBuf,
}

impl Serve {
    /// Starts `serve` with the configuration `config` (and `extra` arguments), its log in `log`;
    /// does not wait for it.
    pub fn spawn(config: &std::path::Path, log: PathBuf, extra: &[&str]) -> Self {
        Self::spawn_with_env(config, log, extra, &[])
    }

    /// [`Serve::spawn`] with these environment variables set for `serve` (the passwords an
    /// example configuration names with `password_env`).
    pub fn spawn_with_env(
        config: &std::path::Path,
        log: PathBuf,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Self {
        let file = std::fs::File::create(&log).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_ledgersync"))
            .args(["--config", config.to_str().unwrap(), "serve"])
            .args(extra)
            .envs(env.iter().copied())
            .env_remove("LEDGERSYNC_DATA")
            .env_remove("LEDGERSYNC_CONFIG")
            .env_remove("RUST_LOG")
            .stdout(std::process::Stdio::null())
            .stderr(file)
            .spawn()
            .expect("start ledgersync serve");
        Self {
            child: Some(child),
            log,
        }
    }

    /// Starts `serve` on `site`, its log in `<site>/<log_name>`, and waits until it is ready.
    pub fn start(site: &Site, log_name: &str) -> Self {
        let serve = Self::spawn(&site.config, site.root.join(log_name), &[]);
        serve.wait_for("serve ready", || {
            serve.log().contains("ready:").then_some(())
        });
        serve
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Polls `check` until it answers `Some`, failing with `what` and the log at [`DEADLINE`].
    pub fn wait_for<T>(&self, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
        let started = std::time::Instant::now();
        loop {
            if let Some(v) = check() {
                return v;
            }
            assert!(
                started.elapsed() < DEADLINE,
                "timed out waiting for {what}; serve log:\n{}",
                self.log()
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }

    /// SIGTERM; the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
        let started = std::time::Instant::now();
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                started.elapsed() < DEADLINE,
                "serve did not stop after SIGTERM:\n{}",
                self.log()
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// SIGKILL: no graceful stop at all.
    pub fn kill(&mut self) {
        let mut child = self.child.take().expect("running");
        child.kill().expect("kill -9");
        child.wait().expect("reaped");
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            eprintln!("serve log:\n{}", self.log());
        }
    }
}
