//! The same change twice is recorded once: whether a CRM-side or administrative change is
//! already recorded in the organization ([`OrgState::already_recorded`]), and the ids of the
//! changes recorded last ([`RecentIds`]). Pure rules; the shell (`engine::org::OrgCore`) carries
//! them out: a change already recorded is acknowledged and neither appended nor routed.
//!
//! What counts as the same change (`docs/crm-changes.md`, "Exactly once"):
//!
//! - a row change (`record_upserted`, `owner_changed`) with the version the organization holds
//!   for the row and the same content (a 64-bit hash of the snapshot); an **older** version is
//!   stale and not recorded either; the same version with **other** content is a
//!   [`Contradiction`] (field `record.version`): the CRM must increase the version when the
//!   content changes;
//! - a `record_deleted` of a row the organization recorded deleted (or a delete already
//!   recorded for a row it never saw), and a row change not newer than the version the row had
//!   when it was deleted (a change sent before the delete arriving late or again);
//! - a `setting_changed` to the value in force; a `filter_changed` with the user's recorded
//!   list for that table; an `access_lost` / `access_regained` identical to the user's last
//!   access change; a `user_registered`, `profile_registered`, `mailbox_registered` identical to
//!   what is recorded; a `profile_alerting_set`, `address_approved` or `mailbox_mapped` that
//!   says what the organization already holds;
//! - any change whose message id is one of the last [`RecentIds::CAPACITY`] recorded (checked
//!   by the shell).
//!
//! `mailbox_tested`, `disable_requested` and `deletes_approved` are events, not values (a Test
//! & Enable run again after a failure re-enables a workload; an approval approves the deletes
//! held when it arrives), so they are recognised by message id only.

use crate::event::Event;
use crate::ids::{EventId, RecordId};
use crate::org::OrgState;
use crate::records::Record;
use std::cmp::Ordering;
use std::collections::{HashSet, VecDeque};
use std::fmt;

/// The content hash of a row snapshot: FNV-1a 64 of its bincode encoding (the journal's own
/// codec, versioned by its rules), so it is the same in every build and may be kept in a
/// snapshot of the organization.
pub fn content_hash(record: &Record) -> u64 {
    stable_hash(record)
}

/// The same stable hash of any other recorded value (filters, access changes) compared by
/// content.
pub fn stable_hash<T: serde::Serialize + ?Sized>(value: &T) -> u64 {
    let bytes = bincode::serde::encode_to_vec(value, bincode::config::standard())
        .expect("encoding a value to a Vec cannot fail");
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Why a change needs no record: it, or a newer one, is already recorded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Recorded {
    /// The row's version is recorded with the same content.
    SameRow {
        /// The row.
        row: RecordId,
        /// Its version.
        version: u64,
    },
    /// A newer version of the row is recorded: this one is stale.
    Stale {
        /// The row.
        row: RecordId,
        /// The version sent.
        version: u64,
        /// The version recorded.
        recorded: u64,
    },
    /// The row is recorded deleted at a version not older than this change's: a change sent
    /// before the delete, arriving late (or again).
    DeletedRow {
        /// The row.
        row: RecordId,
        /// The version sent.
        version: u64,
        /// The version the row had when it was deleted.
        deleted: u64,
    },
    /// The row is already recorded deleted.
    AlreadyDeleted {
        /// The row.
        row: RecordId,
    },
    /// The organization already holds what the change says.
    SameValue {
        /// What it holds, in words.
        what: String,
    },
    /// A change with this message id is recorded.
    SameId,
}

impl fmt::Display for Recorded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Recorded::SameRow { .. } => {
                f.write_str("already recorded: same row version and content, nothing done")
            }
            Recorded::Stale {
                row,
                version,
                recorded,
            } => write!(
                f,
                "already recorded: version {version} of row `{row}` is older than the recorded \
                 version {recorded} (stale), nothing done"
            ),
            Recorded::DeletedRow {
                row,
                version,
                deleted,
            } => write!(
                f,
                "already recorded: row `{row}` is deleted (at version {deleted}); version \
                 {version} is not newer, nothing done"
            ),
            Recorded::AlreadyDeleted { row } => {
                write!(f, "already recorded: row `{row}` is deleted, nothing done")
            }
            Recorded::SameValue { what } => write!(f, "already recorded: {what}, nothing done"),
            Recorded::SameId => {
                f.write_str("already recorded: a change with this message id, nothing done")
            }
        }
    }
}

/// A change that contradicts what the organization recorded: refused, with the field at fault.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Contradiction {
    /// The field, as a path (`record.version`).
    pub field: &'static str,
    /// What is wrong and what to do.
    pub message: String,
}

impl OrgState {
    /// Whether `event` is already recorded (`Ok(Some)`: acknowledge it, record nothing), new
    /// (`Ok(None)`), or contradicts a recorded row version (`Err`).
    pub fn already_recorded(&self, event: &Event) -> Result<Option<Recorded>, Contradiction> {
        let same = |what: String| Ok(Some(Recorded::SameValue { what }));
        match event {
            Event::RecordUpserted(p) => self.row_recorded(&p.record),
            Event::OwnerChanged(p) => self.row_recorded(&p.record),
            Event::RecordDeleted(p) => {
                if self.deleted.contains_key(&p.id) {
                    Ok(Some(Recorded::AlreadyDeleted { row: p.id.clone() }))
                } else {
                    Ok(None)
                }
            }
            Event::SettingChanged(p) => {
                let mut s = self.settings.clone();
                match s.set(&p.key, &p.value) {
                    Ok(()) if s == self.settings => {
                        same(format!("setting `{}` is already `{}`", p.key, p.value))
                    }
                    _ => Ok(None),
                }
            }
            Event::FilterChanged(p) => {
                let recorded = self.filters.get(&p.user).and_then(|m| m.get(&p.entity));
                if recorded == Some(&stable_hash(&p.filters)) {
                    same(format!(
                        "the {} filters of `{}` are already these",
                        p.entity, p.user
                    ))
                } else {
                    Ok(None)
                }
            }
            Event::AccessLost(p) if self.access.get(&p.user) == Some(&stable_hash(event)) => {
                same(format!("`{}` lost access to these rows last", p.user))
            }
            Event::AccessRegained(p) if self.access.get(&p.user) == Some(&stable_hash(event)) => {
                same(format!("`{}` regained access to these rows last", p.user))
            }
            Event::UserRegistered(p) => match self.users.get(&p.user) {
                Some(u) if u.name == p.name && u.email == p.email => {
                    same(format!("user `{}` is registered so", p.user))
                }
                _ => Ok(None),
            },
            Event::ProfileRegistered(p) => match self.profiles.get(&p.profile) {
                Some(i)
                    if i.name == p.name
                        && i.server_type == p.server_type
                        && i.max_connections == p.max_connections =>
                {
                    same(format!("profile `{}` is registered so", p.profile))
                }
                _ => Ok(None),
            },
            Event::ProfileAlertingSet(p) => match self.profiles.get(&p.profile) {
                Some(i) if i.send_alert == p.send_alert => same(format!(
                    "the alert option of profile `{}` is already {}",
                    p.profile, p.send_alert
                )),
                _ => Ok(None),
            },
            Event::MailboxRegistered(p) => match self.mailboxes.get(&p.mailbox) {
                Some(m) if m.address == p.address && m.profile == p.profile => {
                    same(format!("mailbox `{}` is registered so", p.mailbox))
                }
                _ => Ok(None),
            },
            Event::MailboxMapped(p) => {
                let mapped = self.user_mailbox.get(&p.user) == Some(&p.mailbox)
                    && self
                        .mailboxes
                        .get(&p.mailbox)
                        .is_some_and(|m| m.owner.as_ref() == Some(&p.user));
                if mapped {
                    same(format!("mailbox `{}` is mapped to `{}`", p.mailbox, p.user))
                } else {
                    Ok(None)
                }
            }
            Event::AddressApproved(p) => match self.mailboxes.get(&p.mailbox) {
                Some(m) if m.approved == Some(p.approved) => same(format!(
                    "the address of `{}` is already {}",
                    p.mailbox,
                    if p.approved {
                        "approved"
                    } else {
                        "not approved"
                    }
                )),
                _ => Ok(None),
            },
            _ => Ok(None),
        }
    }

    fn row_recorded(&self, rec: &Record) -> Result<Option<Recorded>, Contradiction> {
        let Some(row) = self.rows.get(&rec.id) else {
            return Ok(match self.deleted.get(&rec.id) {
                Some(&deleted) if rec.version <= deleted => Some(Recorded::DeletedRow {
                    row: rec.id.clone(),
                    version: rec.version,
                    deleted,
                }),
                _ => None,
            });
        };
        match rec.version.cmp(&row.version) {
            Ordering::Greater => Ok(None),
            Ordering::Less => Ok(Some(Recorded::Stale {
                row: rec.id.clone(),
                version: rec.version,
                recorded: row.version,
            })),
            Ordering::Equal if content_hash(rec) == row.hash => Ok(Some(Recorded::SameRow {
                row: rec.id.clone(),
                version: rec.version,
            })),
            Ordering::Equal => Err(Contradiction {
                field: "record.version",
                message: format!(
                    "row `{}` version {} is already recorded with other content; the CRM must \
                     increase the version when the content changes: send version {} or more \
                     (or the content recorded for version {})",
                    rec.id,
                    rec.version,
                    rec.version + 1,
                    rec.version
                ),
            }),
        }
    }
}

/// The ids of the changes recorded last, oldest first out: a change delivered again with the
/// same id (an at-least-once bus) is recognised among the last [`RecentIds::CAPACITY`].
/// About 40 bytes an id.
#[derive(Clone, Debug, Default)]
pub struct RecentIds {
    order: VecDeque<EventId>,
    set: HashSet<EventId>,
}

impl RecentIds {
    /// How many ids are kept.
    pub const CAPACITY: usize = 10_000;

    /// Remembers `id`, forgetting the oldest beyond the capacity.
    pub fn insert(&mut self, id: EventId) {
        if !self.set.insert(id) {
            return;
        }
        self.order.push_back(id);
        if self.order.len() > Self::CAPACITY
            && let Some(old) = self.order.pop_front()
        {
            self.set.remove(&old);
        }
    }

    /// Whether `id` is one of the ids kept.
    pub fn contains(&self, id: &EventId) -> bool {
        self.set.contains(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recent_ids_keep_the_last_capacity_ids() {
        let mut ids = RecentIds::default();
        let id = |n: usize| {
            let mut b = [0u8; 16];
            b[..8].copy_from_slice(&(n as u64).to_be_bytes());
            EventId(b)
        };
        for n in 0..RecentIds::CAPACITY + 5 {
            ids.insert(id(n));
        }
        ids.insert(id(RecentIds::CAPACITY + 4)); // again: no second place
        assert!(!ids.contains(&id(4)), "the oldest are forgotten");
        assert!(ids.contains(&id(5)));
        assert!(ids.contains(&id(RecentIds::CAPACITY + 4)));
        assert_eq!(ids.order.len(), RecentIds::CAPACITY);
        assert_eq!(ids.set.len(), RecentIds::CAPACITY);
    }

    #[test]
    fn the_content_hash_sees_every_field_but_not_the_instance() {
        use crate::records::{Contact, ContactState, RecordBody};
        let rec = |name: &str| Record {
            id: "con-1".into(),
            owner: "jayne".into(),
            version: 1,
            body: RecordBody::Contact(Contact {
                full_name: name.into(),
                email: String::new(),
                phone: String::new(),
                company: String::new(),
                state: ContactState::Active,
            }),
        };
        assert_eq!(content_hash(&rec("Linda")), content_hash(&rec("Linda")));
        assert_ne!(
            content_hash(&rec("Linda")),
            content_hash(&rec("Linda Park"))
        );
    }
}
