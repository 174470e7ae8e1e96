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
