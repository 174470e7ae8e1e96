//! Running the real `ledgersync` binary from the CLI tests, as a user runs it.
#![allow(dead_code)] // each test file uses its own subset

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
