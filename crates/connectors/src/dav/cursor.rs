//! The DAV cursor: per collection, its href, the sync token of its last listing and the
//! known items, so that a listing whose token is refused can diff a full ETag listing against
//! them.
//!
//! ```text
//! dav 1
//! C␉/alice/work/␉http://radicale.org/ns/sync/5d41…   a collection and its token ("" = none)
//! I␉/alice/work/a.ics␉"e3b0…"                         a known item and its ETag
//! I␉/alice/work/b.ics␉"9f86…"␉failing                 known, its current version unreadable
//! I␉/alice/work/c.ics␉␉failing                        unreadable, never known
//! I␉/alice/work/e.ics␉"5e88…"␉too_large               known, its current version over the limit
//! I␉/alice/work/d.ics␉"2c26…"␉deleted                 known, deleted by ledgersync
//! ```
//!
//! Fields are separated by a tab (`␉` above). Items follow their collection's line. An item ledgersync created and no listing saw yet has
//! the version `unlisted` (never an ETag, which is quoted).

use crate::connector::{Cursor, IntentCall, Outcome};
use std::collections::BTreeMap;

const HEADER: &str = "dav 1";

/// The version of an item created by ledgersync and not listed yet.
pub(crate) const UNLISTED: &str = "unlisted";

/// What the cursor says of one item.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Known {
    /// The version last reported (`None`: never reported: an item that failed from the start).
    pub(crate) etag: Option<String>,
    /// The item's current version could not be read or understood: fetched again every listing.
    pub(crate) failing: bool,
    /// Failing because it is larger than `max_item_bytes` (never fetched again while unchanged).
    pub(crate) too_large: bool,
    /// ledgersync deleted it (a delete intent succeeded): its absence is explained.
    pub(crate) deleted: bool,
}

/// One collection of the cursor.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Collection {
    pub(crate) token: String,
    pub(crate) items: BTreeMap<String, Known>,
}

impl Collection {
    /// The items known (reported before), failing or not.
    pub(crate) fn known(&self) -> impl Iterator<Item = (&String, &Known)> {
        self.items.iter().filter(|(_, k)| k.etag.is_some())
    }
}

/// The whole cursor: collection href → state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct State {
    pub(crate) collections: BTreeMap<String, Collection>,
}

impl State {
    pub(crate) fn decode(cursor: &Cursor) -> Result<State, String> {
        let mut state = State::default();
        if cursor.is_initial() {
            return Ok(state);
        }
        let mut lines = cursor.as_str().lines();
        if lines.next() != Some(HEADER) {
            return Err(
                "the cursor is not a CalDAV/CardDAV cursor (no `dav 1` header); start again from \
                 the initial cursor (a cursor reset)"
                    .into(),
            );
        }
        let mut current: Option<String> = None;
        for (n, line) in lines.enumerate() {
            let bad = || {
                format!(
                    "the CalDAV/CardDAV cursor is damaged at line {}; start again from the \
                     initial cursor (a cursor reset)",
                    n + 2
                )
            };
            let fields: Vec<&str> = line.split('\t').collect();
            match fields.as_slice() {
                ["C", href, token] => {
                    state.collections.entry(href.to_string()).or_default().token =
                        token.to_string();
                    current = Some(href.to_string());
                }
                ["I", href, etag, rest @ ..] if rest.len() <= 1 => {
                    let flag = rest.first().copied().unwrap_or("");
                    let known = Known {
                        etag: (!etag.is_empty()).then(|| etag.to_string()),
                        failing: matches!(flag, "failing" | "too_large"),
                        too_large: flag == "too_large",
                        deleted: flag == "deleted",
                    };
                    if !matches!(flag, "" | "failing" | "too_large" | "deleted") {
                        return Err(bad());
                    }
                    let Some(c) = &current else { return Err(bad()) };
                    state
                        .collections
                        .get_mut(c)
                        .expect("inserted")
                        .items
                        .insert(href.to_string(), known);
                }
                _ => return Err(bad()),
            }
        }
        Ok(state)
    }

    pub(crate) fn encode(&self) -> Cursor {
        let mut text = String::from(HEADER);
        text.push('\n');
        for (href, c) in &self.collections {
            text.push_str(&format!("C\t{href}\t{}\n", c.token));
            for (item, k) in &c.items {
                let flag = if k.too_large {
                    "\ttoo_large"
                } else if k.failing {
                    "\tfailing"
                } else if k.deleted {
                    "\tdeleted"
                } else {
                    ""
                };
                text.push_str(&format!(
                    "I\t{item}\t{}{flag}\n",
                    k.etag.as_deref().unwrap_or("")
                ));
            }
        }
        Cursor::from_text(text)
    }

    /// The collection an item href belongs to (the longest collection href it starts with).
    fn collection_of(&mut self, href: &str) -> Option<&mut Collection> {
        let key = self
            .collections
            .keys()
            .filter(|c| href.starts_with(c.as_str()) && href.len() > c.len())
            .max_by_key(|c| c.len())?
            .clone();
        self.collections.get_mut(&key)
    }
}

/// The collection href of an item href: everything up to its last `/`.
fn parent(href: &str) -> Option<&str> {
    href.rfind('/').map(|i| &href[..=i])
}

/// The cursor after ledgersync's own write (see `Connector::remember`): a created item becomes
/// known as `unlisted` (the next listing reports it seen, or gone if someone deleted it
/// meanwhile); a deleted one is marked deleted by ledgersync (its absence is explained to the
/// mass-delete guard). Updates are left to the listing.
pub(crate) fn remember(cursor: &Cursor, intent: IntentCall<'_>, outcome: &Outcome) -> Cursor {
    let Outcome::Succeeded(done) = outcome else {
        return cursor.clone();
    };
    let Some(remote) = &done.remote else {
        return cursor.clone();
    };
    let Ok(mut state) = State::decode(cursor) else {
        return cursor.clone();
    };
    let href = remote.0.as_str();
    if !href.starts_with('/') || href.ends_with('/') {
        // Not a collection item (a cancellation delivered to Maildirs).
        return cursor.clone();
    }
    match intent {
        IntentCall::Create(_) => {
            if state.collection_of(href).is_none() {
                let Some(p) = parent(href) else {
                    return cursor.clone();
                };
                state.collections.entry(p.to_string()).or_default();
            }
            let c = state.collection_of(href).expect("inserted");
            if c.items.get(href).is_some_and(|k| k.etag.is_some()) {
                return cursor.clone();
            }
            c.items.insert(
                href.to_string(),
                Known {
                    etag: Some(UNLISTED.to_string()),
                    ..Known::default()
                },
            );
        }
        IntentCall::Delete(_) => {
            let Some(c) = state.collection_of(href) else {
                return cursor.clone();
            };
            match c.items.get_mut(href) {
                Some(k) if k.etag.is_some() => k.deleted = true,
                _ => return cursor.clone(),
            }
        }
        IntentCall::Update(_) | IntentCall::Cancel(_) => return cursor.clone(),
    }
    state.encode()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_damage() {
        let mut state = State::default();
        let c = state
            .collections
            .entry("/alice/work/".to_string())
            .or_default();
        c.token = "http://radicale.org/ns/sync/abc".into();
        c.items.insert(
            "/alice/work/a.ics".into(),
            Known {
                etag: Some("\"1\"".into()),
                ..Known::default()
            },
        );
        c.items.insert(
            "/alice/work/b.ics".into(),
            Known {
                etag: None,
                failing: true,
                too_large: false,
                deleted: false,
            },
        );
        c.items.insert(
            "/alice/work/c.ics".into(),
            Known {
                etag: Some("\"3\"".into()),
                failing: false,
                too_large: false,
                deleted: true,
            },
        );
        c.items.insert(
            "/alice/work/e.ics".into(),
            Known {
                etag: Some("\"5\"".into()),
                failing: true,
                too_large: true,
                deleted: false,
            },
        );
        state.collections.entry("/alice/book/".into()).or_default();
        assert_eq!(State::decode(&state.encode()), Ok(state));
        assert_eq!(State::decode(&Cursor::initial()), Ok(State::default()));
        assert!(State::decode(&Cursor::from_text("calendar/a.ics\t1-00\n")).is_err());
        assert!(State::decode(&Cursor::from_text("dav 1\nI\t/a/x.ics\t\"1\"\n")).is_err());
        assert!(State::decode(&Cursor::from_text("dav 1\nX\n")).is_err());
    }

    fn outcome(remote: &str) -> Outcome {
        Outcome::Succeeded(ledgersync_domain::event::IntentSucceeded {
            intent: ledgersync_domain::EventId::from_u128(1),
            remote: Some(ledgersync_domain::RemoteId::new(remote)),
            etag: Some("\"9\"".into()),
            crm: None,
        })
    }

    #[test]
    fn remember_knows_a_created_item_as_unlisted_and_marks_a_delete() {
        use ledgersync_domain::event::{Basis, CreateIntent, DeleteIntent, ItemWrite, Side};
        use ledgersync_domain::records::ShowAs;
        let create = CreateIntent {
            basis: Basis::default(),
            record: ledgersync_domain::RecordId::new("apt-1"),
            remote: None,
            target: Side::MailServer,
            item: ItemWrite {
                title: "x".into(),
                version: 1,
                show_as: Some(ShowAs::Busy),
                reminder: false,
                notify_attendees: false,
                attendees: 0,
                completed: false,
                actual_start: None,
            },
            key: "k".into(),
        };
        let create = IntentCall::Create(&create);
        // Before any listing: the collection becomes known, without a token.
        let c = remember(&Cursor::initial(), create, &outcome("/alice/work/a.ics"));
        let state = State::decode(&c).unwrap();
        let work = &state.collections["/alice/work/"];
        assert_eq!(work.token, "");
        assert_eq!(
            work.items["/alice/work/a.ics"].etag.as_deref(),
            Some(UNLISTED)
        );

        let delete = DeleteIntent {
            basis: Basis::default(),
            record: ledgersync_domain::RecordId::new("apt-1"),
            remote: None,
            target: Side::MailServer,
            key: "k2".into(),
        };
        let delete = IntentCall::Delete(&delete);
        let c = remember(&c, delete, &outcome("/alice/work/a.ics"));
        assert!(
            State::decode(&c).unwrap().collections["/alice/work/"].items["/alice/work/a.ics"]
                .deleted
        );
        // Not an item (a cancellation), or a failure: unchanged.
        assert_eq!(remember(&c, delete, &outcome("mail/x")), c);
    }
}
