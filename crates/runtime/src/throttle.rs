//! The connection throttle (R15): never more concurrent connections to a mail server than its
//! server profile allows (default 10, allowed 1–300: the domain's
//! [`ledgersync_domain::policy::connections`]), counted per credential; mailboxes waiting
//! for a connection are served in the order they asked (fair); a server's Retry-After holds back
//! every mailbox that uses the same credential, not only the one that was told.
//!
//! # States of one credential's gate
//!
//! | state    | means                                          | left by                              |
//! |----------|------------------------------------------------|--------------------------------------|
//! | open     | fewer connections in use than the limit        | an `acquire` that takes the last one |
//! | full     | every connection in use; callers queue (FIFO)  | a `Permit` dropped                   |
//! | held     | a Retry-After is in force until an instant     | the instant passes                   |
//!
//! `acquire` waits out a Retry-After first, then queues for a connection; a Retry-After that
//! arrives while a caller queues is honoured before the connection is handed out. Lowering a
//! profile's limit takes effect as connections are returned (they are retired instead of
//! reused), raising it at once. Time is tokio's clock, so tests can run with paused time.

use ledgersync_domain::ProfileId;
use ledgersync_domain::policy::connections::{
    DEFAULT_CONNECTIONS, MAX_CONNECTIONS, MIN_CONNECTIONS, check_max_connections,
};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// A profile's maximum of concurrent connections per credential: 1 to 300, default 10
/// (SSS `maxconcurrentconnections`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionLimit(u16);

impl ConnectionLimit {
    /// The SSS default.
    pub const DEFAULT: ConnectionLimit = ConnectionLimit(DEFAULT_CONNECTIONS);

    /// A limit the domain allows (R15).
    pub fn new(n: u16) -> Result<Self, ThrottleError> {
        check_max_connections(n)
            .map(Self)
            .map_err(|e| ThrottleError::InvalidLimit(e.0))
    }

    /// The number.
    pub fn get(self) -> u16 {
        self.0
    }
}

impl Default for ConnectionLimit {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// What can be wrong with throttle settings.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ThrottleError {
    /// A connection limit outside 1–300 (R15).
    #[error(
        "max concurrent connections must be between {min} and {max}, got {0}",
        min = MIN_CONNECTIONS,
        max = MAX_CONNECTIONS
    )]
    InvalidLimit(u16),
}

/// Whose connections are counted together: a server profile and the account that logs in.
/// With credentials in the profile every mailbox of the profile shares one; with credentials
/// per user each mailbox has its own.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Credential {
    /// The server profile (gives the limit).
    pub profile: ProfileId,
    /// The account that logs in.
    pub account: String,
}

struct Gate {
    connections: Arc<Semaphore>,
    counts: Mutex<Counts>,
}

#[derive(Default)]
struct Counts {
    /// The limit the gate is converging to.
    limit: usize,
    /// Connections that exist (in use or available) above the limit, to retire when returned.
    excess: usize,
    /// Connections in use.
    in_use: usize,
    /// Most connections ever in use at once.
    peak: usize,
    /// Nobody gets a connection before this instant (Retry-After).
    not_before: Option<Instant>,
}

/// A connection slot; returned to its credential's gate when dropped.
pub struct Permit {
    gate: Arc<Gate>,
    permit: Option<OwnedSemaphorePermit>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut c = self.gate.counts.lock().expect("throttle lock");
        c.in_use -= 1;
        if c.excess > 0 {
            c.excess -= 1;
            if let Some(p) = self.permit.take() {
                p.forget();
            }
        }
    }
}

/// The throttle shared by every connector of a node.
#[derive(Default)]
pub struct Throttle {
    limits: Mutex<HashMap<ProfileId, ConnectionLimit>>,
    gates: Mutex<HashMap<Credential, Arc<Gate>>>,
}

impl Throttle {
    /// A throttle where every profile has the default limit until told otherwise.
    pub fn new() -> Self {
        Self::default()
    }

    fn limit_of(&self, profile: &ProfileId) -> ConnectionLimit {
        self.limits
            .lock()
            .expect("throttle lock")
            .get(profile)
            .copied()
            .unwrap_or_default()
    }

    /// Sets a profile's limit, for its credentials in use and to come.
    pub fn set_limit(&self, profile: &ProfileId, limit: ConnectionLimit) {
        self.limits
            .lock()
            .expect("throttle lock")
            .insert(profile.clone(), limit);
        let gates = self.gates.lock().expect("throttle lock");
        for (cred, gate) in gates.iter() {
            if &cred.profile != profile {
                continue;
            }
            let mut c = gate.counts.lock().expect("throttle lock");
            let target = limit.get() as usize;
            let existing = c.limit + c.excess;
            if target > existing {
                gate.connections.add_permits(target - existing);
                c.excess = 0;
            } else {
                // Retire what is idle now; the rest is retired as it comes back.
                let retired = gate.connections.forget_permits(existing - target);
                c.excess = existing - target - retired;
            }
            c.limit = target;
        }
    }

    fn gate(&self, cred: &Credential) -> Arc<Gate> {
        let limit = self.limit_of(&cred.profile).get() as usize;
        self.gates
            .lock()
            .expect("throttle lock")
            .entry(cred.clone())
            .or_insert_with(|| {
                Arc::new(Gate {
                    connections: Arc::new(Semaphore::new(limit)),
                    counts: Mutex::new(Counts {
                        limit,
                        ..Counts::default()
                    }),
                })
            })
            .clone()
    }

    /// Waits for a connection slot of `cred`: after any Retry-After in force, then in the
    /// order callers asked.
    pub async fn acquire(&self, cred: &Credential) -> Permit {
        let gate = self.gate(cred);
        loop {
            let wait = gate.counts.lock().expect("throttle lock").not_before;
            if let Some(t) = wait
                && t > Instant::now()
            {
                tokio::time::sleep_until(t).await;
            }
            let permit = gate
                .connections
                .clone()
                .acquire_owned()
                .await
                .expect("the throttle never closes a gate");
            let mut c = gate.counts.lock().expect("throttle lock");
            if c.not_before.is_some_and(|t| t > Instant::now()) {
                drop(c);
                drop(permit); // a Retry-After arrived while queueing: wait it out first
                continue;
            }
            c.in_use += 1;
            c.peak = c.peak.max(c.in_use);
            drop(c);
            return Permit {
                gate: gate.clone(),
                permit: Some(permit),
            };
        }
    }

    /// Honours a server's Retry-After for every mailbox on `cred`: nobody gets a connection
    /// before `until` (a later Retry-After extends it, an earlier one does not shorten it).
    pub fn retry_after(&self, cred: &Credential, until: Instant) {
        let gate = self.gate(cred);
        let mut c = gate.counts.lock().expect("throttle lock");
        c.not_before = Some(c.not_before.map_or(until, |t| t.max(until)));
    }

    /// Connections of `cred` in use now.
    pub fn in_use(&self, cred: &Credential) -> usize {
        self.gate(cred).counts.lock().expect("throttle lock").in_use
    }

    /// The most connections of `cred` ever in use at once (for monitoring and tests).
    pub fn peak(&self, cred: &Credential) -> usize {
        self.gate(cred).counts.lock().expect("throttle lock").peak
    }
}
