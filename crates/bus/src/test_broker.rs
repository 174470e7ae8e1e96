//! For tests that need RabbitMQ: the broker on 127.0.0.1:5672 (guest/guest) and a vhost of
//! the test's own, created and deleted with `rabbitmqctl`. A missing broker fails the test
//! and says how to start one; nothing is skipped. Compiled with the `test-broker` feature
//! (the bus's own tests include this file).

use std::net::TcpStream;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// Fails the test, saying how to start RabbitMQ, unless something listens on 5672.
pub fn require_broker() {
    if TcpStream::connect_timeout(&"127.0.0.1:5672".parse().unwrap(), Duration::from_secs(2))
        .is_err()
    {
        panic!(
            "RabbitMQ is not running on 127.0.0.1:5672, and the AMQP tests need it (they never \
             skip): run `scripts/services.sh start` (as root; it installs rabbitmq-server with \
             apt when missing), or `./scripts/test`, which runs it first"
        );
    }
}

/// `rabbitmqctl`, on the real clock: the broker's tools are not ledgersync, and a test run under
/// libfaketime (scripts/test runs the command-line tests a year ahead) must not hand its
/// preload to them (each of their processes would leave a semaphore behind).
pub fn rabbitmqctl_command() -> Command {
    let mut c = Command::new("rabbitmqctl");
    c.env_remove("LD_PRELOAD").env_remove("FAKETIME");
    c
}

/// Runs `rabbitmqctl -q ARGS`, failing the test with its output when it fails.
pub fn rabbitmqctl(args: &[&str]) -> String {
    let out = rabbitmqctl_command()
        .arg("-q")
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "rabbitmqctl could not run ({e}): the AMQP tests manage their vhosts with it; \
                 run `scripts/services.sh start` (as root), which installs and starts RabbitMQ"
            )
        });
    assert!(
        out.status.success(),
        "rabbitmqctl {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

static VHOSTS: AtomicUsize = AtomicUsize::new(0);

/// A vhost of one test, deleted (with everything in it) when dropped.
pub struct Vhost {
    /// Its name.
    pub name: String,
}

impl Vhost {
    /// A new vhost, guest allowed everything in it.
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        require_broker();
        if VHOSTS.load(Ordering::Relaxed) == 0 {
            remove_vhosts_of_dead_runs();
        }
        let name = format!(
            "ledgersync-test-{}-{}",
            std::process::id(),
            VHOSTS.fetch_add(1, Ordering::Relaxed)
        );
        rabbitmqctl(&["add_vhost", &name]);
        rabbitmqctl(&["set_permissions", "-p", &name, "guest", ".*", ".*", ".*"]);
        Self { name }
    }

    /// The URL of the vhost as guest.
    pub fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:5672/{}", self.name)
    }
}

impl Drop for Vhost {
    fn drop(&mut self) {
        let _ = rabbitmqctl_command()
            .args(["-q", "delete_vhost", &self.name])
            .output();
    }
}

/// Deletes the vhosts of test processes that died before cleaning up.
fn remove_vhosts_of_dead_runs() {
    for line in rabbitmqctl(&["list_vhosts", "name"]).lines() {
        let name = line.trim();
        let Some(rest) = name.strip_prefix("ledgersync-test-") else {
            continue;
        };
        let pid = rest.split('-').next().unwrap_or_default();
        if !pid.is_empty() && !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = rabbitmqctl_command()
                .args(["-q", "delete_vhost", name])
                .output();
        }
    }
}
