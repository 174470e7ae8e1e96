//! The imperative shell of ledgersync around the pure domain: it routes CRM changes to
//! mailboxes, runs `decide`, appends observations and decisions to the journal, and reads the
//! journal back to replay, explain and re-decide under other settings (what-if).
#![warn(missing_docs)]

pub mod clock;
pub mod command_json;
pub mod describe;
pub mod engine;
pub mod error;
pub mod explain;
pub mod ingress;
pub mod log;
pub mod mailbox;
pub mod org;
pub mod projection;
pub mod replay;
pub mod scenario;
pub mod settings_history;
pub mod settle;
pub mod whatif;

pub use clock::{Clock, IdGen, ManualClock, SystemClock};
pub use engine::{Appended, Engine, Processed};
pub use error::EngineError;
pub use explain::{Explanation, explain};
pub use mailbox::{Incoming, MailboxCore};
pub use org::OrgCore;
pub use replay::{ReplayReport, replay};
pub use settings_history::SettingsHistory;
pub use settle::Settled;
pub use whatif::{WhatIfReport, what_if};
