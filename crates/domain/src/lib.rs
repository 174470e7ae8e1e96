//! The pure decision core of ledgersync.
//!
//! No I/O, no clock, no randomness: time and ids are arguments. Everything a sync decision
//! depends on is in this crate, and every decision names the rule (`R1` … `R82`) that made it.
#![warn(missing_docs)]

pub mod address;
pub mod alerting;
pub mod crm;
pub mod decide;
pub mod dedupe;
pub mod email;
pub mod envelope;
pub mod error_kind;
pub mod event;
pub mod filter;
pub mod ids;
pub mod limits;
pub mod org;
pub mod policy;
pub mod records;
pub mod rules;
pub mod sequence;
pub mod settings;
pub mod state;
pub mod time;

pub use alerting::decide_org;
pub use decide::{Context, Decision, decide};
pub use dedupe::{Contradiction, RecentIds, Recorded};
pub use envelope::{DecodeError, Envelope, EventType, NewEvent};
pub use error_kind::ErrorKind;
pub use event::Event;
pub use ids::*;
pub use limits::Limits;
pub use org::OrgState;
pub use rules::RuleId;
pub use settings::{OrgSettings, SettingKey, SettingsVersion};
pub use state::{EventMeta, MailboxState};
pub use time::{Duration, Timestamp};
