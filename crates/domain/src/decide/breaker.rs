//! The delete breaker (R25, `docs/decisions/0016-delete-breaker.md`): one cycle that would
//! delete too many of a mailbox's linked items deletes nothing on either side until an
//! administrator approves the deletes or the items come back.
//!
//! A complete listing reports `deletions_listed` (the server ids it is about to report gone)
//! before its `item_gone`s. [`trips`] weighs the ones that are actively linked against the
//! mailbox's linked items and the settings `delete_breaker_percent` and
//! `delete_breaker_items`. When it trips: `breaker_tripped` and an alert; while it is open each
//! `item_gone` of a linked item decides `no_action` and is held in the state, and the deletes
//! and cancellations to the mail server are held too ([`MailboxState::held_by_breaker`]).
//! `deletes_approved` closes it and decides every held item as its `item_gone` would have; an
//! `item_seen` of the last held item closes it with nothing deleted.
//!
//! | state  | entered by | left by |
//! |--------|------------|---------|
//! | closed | (initial); `breaker_closed` | `breaker_tripped`, decided on a `deletions_listed` that [`trips`] (a connector's complete listing) |
//! | open   | `breaker_tripped` | `breaker_closed` (approved), decided on `deletes_approved` (an administrator, `ledgersync mailbox approve-deletes`); `breaker_closed` (not approved), decided on the `item_seen` of the last held item (the items came back) |
//!
//! While open, a `deletions_listed` decides nothing (each gone is held as it comes).

use super::*;

/// How the reason of the `no_action` of a held delete begins (for readers that word it).
pub const HELD: &str = "the delete breaker holds this delete";

/// Why one cycle's deletes trip the breaker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trip {
    /// Every linked item would be deleted: the collection was emptied (even of its last item),
    /// a share of 100 %.
    Emptied,
    /// More than `delete_breaker_items` items.
    Items,
    /// More than `delete_breaker_percent` percent of the linked items.
    Percent,
}

/// Whether `deletes` deletes of linked items in one cycle, out of `linked` linked items, trip
/// the breaker under `percent` (`delete_breaker_percent`) and `items`
/// (`delete_breaker_items`). It trips when the cycle would delete
/// - more than `items` items (two at least, since `items` is 1 or more), or
/// - every linked item — an emptied collection, even of its single last item — unless
///   `percent` is 100 (the share turned off), or
/// - two items or more, and more than `percent` percent of the linked items.
///
/// A single deletion that leaves linked items never trips: a user deleting one meeting needs
/// no administrator.
pub fn trips(deletes: usize, linked: usize, percent: u8, items: u32) -> Option<Trip> {
    let percent = usize::from(percent.min(100));
    if deletes == 0 {
        None
    } else if deletes > items as usize {
        Some(Trip::Items)
    } else if deletes >= linked && percent < 100 {
        Some(Trip::Emptied)
    } else if deletes >= 2 && deletes * 100 > percent * linked {
        Some(Trip::Percent)
    } else {
        None
    }
}

impl Decider<'_> {
    fn approve_command(&self) -> String {
        format!("ledgersync mailbox approve-deletes {}", self.mailbox_id())
    }

    /// `deletions_listed`: the cycle's deletes weighed against the breaker.
    pub(super) fn deletions_listed(&mut self, p: &DeletionsListed) {
        let s = self.state;
        if !self.act_enabled() || s.breaker.is_some() {
            // While open, every gone of a linked item is held as it comes.
            return;
        }
        let deletes = p
            .remotes
            .iter()
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .filter(|r| s.actively_linked(r))
            .count();
        let linked = s.linked_items();
        let settings = self.ctx.settings;
        let used = vec![
            setting(settings, SettingKey::DeleteBreakerPercent),
            setting(settings, SettingKey::DeleteBreakerItems),
        ];
        let Some(trip) = trips(
            deletes,
            linked,
            settings.delete_breaker_percent,
            settings.delete_breaker_items,
        ) else {
            return;
        };
        let why = match trip {
            Trip::Emptied => format!(
                "every linked item: the collection was emptied, more than {} % (setting delete_breaker_percent)",
                settings.delete_breaker_percent
            ),
            Trip::Items => format!(
                "more than {} items (setting delete_breaker_items)",
                settings.delete_breaker_items
            ),
            Trip::Percent => format!(
                "more than {} % (setting delete_breaker_percent)",
                settings.delete_breaker_percent
            ),
        };
        let reason = format!(
            "{deletes} of {linked} linked items would have been deleted in one cycle ({}), {why}; \
             deletes held until `{}` or the items come back",
            p.workload,
            self.approve_command()
        );
        self.push(
            R25,
            Event::BreakerTripped(BreakerTripped {
                basis: basis(reason, used.clone()),
                deletes: deletes as u32,
            }),
        );
        self.alert_with(
            R25,
            AlertLevel::Warning,
            format!(
                "The delete breaker of the mailbox {} tripped: {deletes} of {linked} linked items would have been \
                 deleted in one cycle ({why}). Nothing is deleted on either side until an administrator runs \
                 `{}` or the items come back.",
                s.address,
                self.approve_command()
            ),
            used,
        );
    }

    /// An `item_gone` while the breaker is open: held, nothing deleted (true when it was).
    pub(super) fn held_gone(&mut self, remote: &RemoteId) -> bool {
        let s = self.state;
        let Some(b) = &s.breaker else { return false };
        if self.approved_by.is_some() || !s.actively_linked(remote) {
            return false;
        }
        let record = s.by_remote.get(remote).cloned();
        self.push(
            R25,
            Event::NoAction(NoAction {
                basis: basis(
                    format!("{HELD}, nothing is deleted on either side: {}", b.reason),
                    vec![],
                ),
                record,
                remote: Some(remote.clone()),
            }),
        );
        true
    }

    /// An `item_seen` while the breaker is open: the last held item back closes it.
    pub(super) fn item_back(&mut self, remote: &RemoteId) {
        let Some(b) = &self.state.breaker else { return };
        if b.held.len() == 1 && b.held.contains(remote) {
            self.push(
                R25,
                Event::BreakerClosed(BreakerClosed {
                    basis: basis(
                        format!(
                            "the last item the delete breaker held ({remote}) came back: every held item is \
                             back, the breaker closes, nothing was deleted and the links are kept"
                        ),
                        vec![],
                    ),
                    workload: b.workload,
                    approved: false,
                }),
            );
        }
    }

    /// `deletes_approved`: the breaker closes and every held item is decided as its
    /// `item_gone` would have been (R19, R21–R23, R27, R36, R42, R43, R45, R46 as usual).
    pub(super) fn deletes_approved(&mut self, p: &DeletesApproved) {
        let s = self.state;
        if s.id.as_ref() != Some(&p.mailbox) {
            return;
        }
        let Some(b) = &s.breaker else {
            self.push(
                R25,
                Event::NoAction(NoAction {
                    basis: basis(
                        format!(
                            "{} approved the held deletes of {}, but its delete breaker is closed: nothing is held",
                            p.by,
                            self.mailbox_id()
                        ),
                        vec![],
                    ),
                    record: None,
                    remote: None,
                }),
            );
            return;
        };
        self.push(
            R25,
            Event::BreakerClosed(BreakerClosed {
                basis: basis(
                    format!(
                        "{} approved the deletes held by the delete breaker: {} held item(s) are decided as \
                         deleted on the mail server, and held deletes to the mail server are carried out",
                        p.by,
                        b.held.len()
                    ),
                    vec![],
                ),
                workload: b.workload,
                approved: true,
            }),
        );
        self.approved_by = Some(p.by.clone());
        for remote in &b.held {
            let from = self.out.len();
            self.item_gone(remote);
            let note = format!("; held by the delete breaker, approved by {}", p.by);
            for d in &mut self.out[from..] {
                if let Some(basis) = basis_mut(&mut d.event) {
                    basis.reason.push_str(&note);
                }
            }
        }
        self.approved_by = None;
    }

    /// The note a delete or cancellation to the mail server carries while the breaker holds it.
    pub(super) fn held_note(&self) -> Option<String> {
        self.state.breaker.as_ref().map(|_| {
            format!(
                "held while the delete breaker is open: carried out after `{}` or once the held items come back",
                self.approve_command()
            )
        })
    }
}

/// The basis of the decisions a held `item_gone` can make.
fn basis_mut(e: &mut Event) -> Option<&mut Basis> {
    match e {
        Event::DeleteIntent(p) => Some(&mut p.basis),
        Event::Unlinked(p) => Some(&mut p.basis),
        Event::NoAction(p) => Some(&mut p.basis),
        _ => None,
    }
}
