//! Mail-side connectors of ledgersync.
//!
//! A connector turns what a mail or groupware server holds into observations
//! (`item_seen`, `item_gone`, `listing_*`) and carries out the intents the engine decided,
//! answering each with its outcome. It never decides. The contract is the [`Connector`] trait;
//! [`VdirConnector`] is the first backend: a local vdir calendar and address book (the format
//! of vdirsyncer, khal and khard). Meeting invitations and cancellations (iMIP) go to the
//! attendees through a [`MeetingDelivery`]: a directory of Maildirs, or an SMTP server
//! ([`SmtpConfig`]). See `docs/connectors.md`.
#![warn(missing_docs)]

mod compose;
mod connector;
mod dav;
mod delivery;
mod factory;
mod fsutil;
mod hash;
pub mod imap;
mod imip;
mod lines;
mod maildir;
mod outgoing;
mod parse;
pub mod pop3;
mod secret;
mod smtp;
mod tls;
mod vdir;
mod writes;
mod zone;

#[doc(hidden)]
pub use connector::BeforeWrite;
pub use connector::{
    Connector, Cursor, Intent, IntentCall, ItemFailure, Listing, ListingEnd, Observation, Outcome,
};
pub use dav::{DavConfig, DavConnector};
pub use delivery::MeetingDelivery;
pub use factory::ConnectorConfig;
pub use hash::fnv1a64;
pub use outgoing::{OutgoingConfig, OutgoingConnector};
pub use secret::Secret;
pub use smtp::{SmtpConfig, SmtpTls, kind_of_reply};
pub use vdir::{DEFAULT_TRACKING_CATEGORY, VdirConfig, VdirConnector};
pub use writes::{OWN_DIR, UNSUPPORTED};
pub use zone::time_zone;
