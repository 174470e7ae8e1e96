//! Identifiers. All are plain strings chosen by the CRM or the mail server, except event ids,
//! which are UUIDs chosen by the shell (the domain never generates an id itself).

use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        pub struct $name(pub String);

        impl $name {
            /// Wraps a string.
            pub fn new(s: impl Into<String>) -> Self {
                Self(s.into())
            }
            /// The id as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                Self(s.to_owned())
            }
        }
    };
}

string_id!(
    /// A CRM organization.
    OrgId
);
string_id!(
    /// A CRM user (system user).
    UserId
);
string_id!(
    /// A mailbox: one user's mailbox on one mail server.
    MailboxId
);
string_id!(
    /// An email server profile.
    ProfileId
);
string_id!(
    /// A CRM row (appointment, contact, task, email, ...).
    RecordId
);
string_id!(
    /// An item on the mail server (CalDAV href, IMAP UIDVALIDITY/UID, vdir file name, ...).
    RemoteId
);
string_id!(
    /// A saved sync filter.
    FilterId
);

/// An event id: a UUID (v7 in production, chosen by the shell), stored as 16 bytes in binary
/// formats and written as hyphenated UUID text in human-readable ones (JSON).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EventId(pub [u8; 16]);

impl Serialize for EventId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.collect_str(self)
        } else {
            self.0.serialize(s)
        }
    }
}

impl<'de> Deserialize<'de> for EventId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            let text = String::deserialize(d)?;
            EventId::parse(&text)
                .ok_or_else(|| serde::de::Error::custom(format!("`{text}` is not a UUID")))
        } else {
            <[u8; 16]>::deserialize(d).map(EventId)
        }
    }
}

impl EventId {
    /// The id as a u128 (big-endian reading of the 16 bytes).
    pub fn as_u128(&self) -> u128 {
        u128::from_be_bytes(self.0)
    }
    /// Builds an id from a u128.
    pub fn from_u128(v: u128) -> Self {
        Self(v.to_be_bytes())
    }
    /// Parses hyphenated (or plain) hexadecimal UUID text.
    pub fn parse(text: &str) -> Option<Self> {
        let hex: String = text.chars().filter(|c| *c != '-').collect();
        if hex.len() != 32 {
            return None;
        }
        u128::from_str_radix(&hex, 16).ok().map(Self::from_u128)
    }
}

impl fmt::Display for EventId {
    /// Hyphenated lowercase UUID text.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = &self.0;
        for (i, byte) in b.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                f.write_str("-")?;
            }
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

/// A stream of the journal: `mailbox/<id>` or `org/<id>`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct StreamId(pub String);

impl StreamId {
    /// The stream of one mailbox.
    pub fn mailbox(id: &MailboxId) -> Self {
        Self(format!("mailbox/{}", id.0))
    }
    /// The stream of one organization.
    pub fn org(id: &OrgId) -> Self {
        Self(format!("org/{}", id.0))
    }
    /// The mailbox id if this is a mailbox stream.
    pub fn as_mailbox(&self) -> Option<MailboxId> {
        self.0.strip_prefix("mailbox/").map(MailboxId::new)
    }
    /// The stream name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A key of the journal's item index: every event that concerns a CRM row or a mail-server item
/// is indexed under it, so `explain` finds an item's history without a scan.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ItemKey {
    /// A CRM row.
    Crm(RecordId),
    /// A mail-server item.
    Remote(RemoteId),
    /// A normalized (lowercase) subject, for subject search.
    Subject(String),
}

impl ItemKey {
    /// The index key text: `crm:<id>`, `remote:<id>` or `subject:<lowercase subject>`.
    pub fn to_key(&self) -> String {
        match self {
            ItemKey::Crm(id) => format!("crm:{}", id.0),
            ItemKey::Remote(id) => format!("remote:{}", id.0),
            ItemKey::Subject(s) => format!("subject:{}", s.to_lowercase()),
        }
    }
}
