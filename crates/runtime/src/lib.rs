//! The live side of ledgersync, on actix: one mailbox actor per mailbox (activated on demand
//! from its snapshot and log, one message at a time, passivated when idle, restarted from the
//! log after an error), the registry that routes to them with a bound on concurrent
//! recoveries, the scheduler that runs each mailbox's connector when its cycle is due, and
//! the per-credential connection throttle every connector call goes through, and the consumer
//! loop that feeds the organization and mailbox actors from the bus (`ledgersync-bus`).
//! `docs/runtime.md` has the actor lifecycle.
#![warn(missing_docs)]

pub mod actor;
pub mod consumer;
pub mod driver;
pub mod idle;
pub mod org;
pub mod registry;
pub mod scheduler;
pub mod service;
pub mod sink;
pub mod throttle;
pub mod watch;

pub use actor::{ActorError, CheckIdle, Inspect, MailboxActor, MailboxView, Observe};
pub use consumer::{ConsumerConfig, Settled, Targets, consume, settle_one, spawn_consumers};
pub use driver::{CycleReport, Driver, DriverError, ExecuteReport};
pub use org::{
    BatchRouted, CheckChanges, CrmChange, CrmChanges, InspectDirectory, InspectOrg, KnownMailboxes,
    LookupEmailFacts, OrgActor, OrgDirectory, OrgError, OrgView, Routed,
};
pub use registry::{
    InspectMailbox, ObserveMailbox, ObserveMailboxAll, PassivateIdle, Registry, RegistryConfig,
    RuntimeStats, SharedSettings, Shutdown, StatsSnapshot,
};
pub use scheduler::{Ran, Scheduler, SchedulerConfig, SchedulerError, Signal, TickReport};
pub use service::{BusConfig, LineOutcome, MailboxEndpoint, Service, ServiceConfig, ServiceError};
pub use sink::{BusSink, Publish, Replies, Reply, Sink};
pub use throttle::{ConnectionLimit, Credential, Permit, Throttle, ThrottleError};
