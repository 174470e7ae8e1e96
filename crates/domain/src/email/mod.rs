//! The email rules (R49–R69): whether an incoming email is tracked into the CRM, which row it
//! is regarding, how it correlated, who its parties and its owner are — each step named by
//! its rule, so `explain` can say why an email was or was not tracked.
//!
//! Pure functions over the message's headers, the organization's directory of email-enabled
//! rows ([`resolve::Directory`]), the tracked emails ([`correlate::EmailIndex`]) and the
//! settings. The order is SSS's (section 3.1): scope (R49, R50, R59), correlation (R60–R62,
//! R65), resolution (R66–R68), acceptance (R52–R58), ownership (R69).

pub mod accept;
pub mod correlate;
pub mod directory;
pub mod outgoing;
pub mod resolve;
pub mod smart_match;
pub mod token;

pub use accept::{
    Acceptor, EmailSettings, Folder, IncomingFilter, Manual, Outcome, Processing, Tracked,
    decide_email,
};

use crate::time::Timestamp;

/// An email as the rules see it: its headers, parsed by the connector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// Message-ID.
    pub message_id: String,
    /// In-Reply-To (its first Message-ID).
    pub in_reply_to: Option<String>,
    /// References, oldest first.
    pub references: Vec<String>,
    /// Thread-Index (Outlook's conversation header), base64.
    pub thread_index: Option<String>,
    /// Subject.
    pub subject: String,
    /// The sender's address.
    pub from: String,
    /// To addresses.
    pub to: Vec<String>,
    /// Cc addresses.
    pub cc: Vec<String>,
    /// Bcc addresses (known for sent mail only).
    pub bcc: Vec<String>,
    /// When the server received it (IMAP INTERNALDATE).
    pub received: Timestamp,
    /// Protected by information rights management.
    pub irm_protected: bool,
}

impl From<&crate::event::EmailReceived> for Message {
    /// The headers of an `email_received`, as the rules and the facts lookup read them.
    fn from(e: &crate::event::EmailReceived) -> Self {
        Message {
            message_id: e.message_id.clone(),
            in_reply_to: e.in_reply_to.clone(),
            references: e.references.clone(),
            thread_index: e.thread_index.clone(),
            subject: e.subject.clone(),
            from: e.from.clone(),
            to: e.to.clone(),
            cc: e.cc.clone(),
            bcc: e.bcc.clone(),
            received: e.received,
            irm_protected: e.irm_protected,
        }
    }
}

impl Message {
    /// Every address of the message: From, To, Cc, Bcc, in that order.
    pub fn addresses(&self) -> Vec<String> {
        std::iter::once(&self.from)
            .chain(&self.to)
            .chain(&self.cc)
            .chain(&self.bcc)
            .map(|a| resolve::normalize(a))
            .collect()
    }
}
