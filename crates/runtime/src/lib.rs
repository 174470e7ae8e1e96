//! The live side of ledgersync. This crate grows into the mailbox actors, the registry and the
//! scheduler; it starts with the connection throttle every connector call goes through.
#![warn(missing_docs)]

pub mod throttle;

pub use throttle::{ConnectionLimit, Credential, Permit, Throttle, ThrottleError};
