//! The live side of ledgersync. This crate grows into the mailbox actors, the registry and the
//! scheduler; it starts with the connection throttle every connector call goes through.
#![warn(missing_docs)]

pub mod actor;
pub mod registry;
pub mod throttle;

pub use actor::{ActorError, CheckIdle, Inspect, MailboxActor, MailboxView, Observe};
pub use registry::{
    InspectMailbox, ObserveMailbox, PassivateIdle, Registry, RegistryConfig, RuntimeStats,
    SharedSettings, Shutdown, StatsSnapshot,
};
pub use throttle::{ConnectionLimit, Credential, Permit, Throttle, ThrottleError};
