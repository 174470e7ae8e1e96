//! The iCalendar `SEQUENCE` of a meeting (RFC 5545 §3.8.7.4, RFC 5546 §2.1.5), one per meeting
//! and not per mailbox (R26, R29).
//!
//! An attendee's calendar client keeps the message with the highest `SEQUENCE` for a UID and
//! ignores one below it; a `CANCEL` with the same `SEQUENCE` as the `REQUEST` it follows still
//! applies. Every mailbox that writes a copy of a meeting, or cancels it, therefore derives the
//! number from the same two facts — the CRM row's version and whether the mailbox's owner is the
//! row's organizer at that version — and never from the number in its own file:
//!
//! `SEQUENCE = 2 · version + (1 if the writing mailbox's owner organizes the row at that version)`
//!
//! With Jayne organizing version 1: her invitation and her copy carry 3, an attendee's copy 2,
//! and her cancellation of version 1 (R22, logical delete) 3, which applies. When the organizer
//! becomes Paul at version 2 (R29), Jayne's cancellation is 4 and Paul's update 5: a client that
//! reads the cancellation after the update ignores it as stale, one that reads it before
//! re-creates the meeting from the update. A cancellation Paul sends at version 3 is 7. The number
//! never decreases while versions increase, and is identical in every mailbox for the same
//! version and role.

use crate::records::Appointment;

/// R26, R29: the `SEQUENCE` a mailbox writes into its copy of a meeting, into the update it
/// sends, or into the cancellation it sends, for CRM row `version` — `organizer` says whether
/// the mailbox's owner is the row's organizer at that version (see the module doc).
pub const fn meeting_sequence(version: u64, organizer: bool) -> u64 {
    version.saturating_mul(2).saturating_add(organizer as u64)
}

/// True when `address` (a mailbox owner's address) is the organizer's address of `a`, compared
/// without regard to case or surrounding blanks: what a connector that knows only its owner's
/// address passes to [`meeting_sequence`].
pub fn organized_by_address(a: &Appointment, address: &str) -> bool {
    let address = address.trim();
    !address.is_empty()
        && a.organizer
            .as_ref()
            .is_some_and(|o| o.email.trim().eq_ignore_ascii_case(address))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn r29_organizer_change_puts_the_new_organizers_update_above_the_old_ones_cancel() {
        let jayne_request_v1 = meeting_sequence(1, true);
        let jayne_cancel_v1 = meeting_sequence(1, true);
        let attendee_copy_v1 = meeting_sequence(1, false);
        assert_eq!(
            (jayne_request_v1, jayne_cancel_v1, attendee_copy_v1),
            (3, 3, 2)
        );
        // Version 2: Paul organizes; Jayne's logical delete cancels, Paul sends the update.
        let jayne_cancel_v2 = meeting_sequence(2, false);
        let paul_request_v2 = meeting_sequence(2, true);
        assert_eq!((jayne_cancel_v2, paul_request_v2), (4, 5));
        assert!(paul_request_v2 > jayne_cancel_v2);
        assert!(jayne_cancel_v2 > jayne_request_v1);
        // Paul cancels at version 3.
        assert_eq!(meeting_sequence(3, true), 7);
    }

    #[test]
    fn the_organizer_is_recognised_by_address_without_case() {
        use crate::records::{ActivityState, Party, Priority, ShowAs};
        let mut a = Appointment {
            subject: "Bike repair".into(),
            organizer: Some(Party {
                user: None,
                email: "Jayne@Serenity.example".into(),
                name: "Jayne Cobb".into(),
            }),
            required: vec![],
            optional: vec![],
            start: crate::Timestamp(0),
            end: crate::Timestamp(0),
            all_day: false,
            location: String::new(),
            body: String::new(),
            state: ActivityState::Scheduled,
            show_as: ShowAs::Busy,
            priority: Priority::Normal,
            regarding: None,
            service: false,
            recurrence: None,
        };
        assert!(organized_by_address(&a, " jayne@serenity.example "));
        assert!(!organized_by_address(&a, "paul@serenity.example"));
        assert!(!organized_by_address(&a, ""));
        a.organizer = None;
        assert!(!organized_by_address(&a, "jayne@serenity.example"));
    }

    #[test]
    fn r26_sequence_is_monotonic_in_the_version_whatever_the_role() {
        for v in 0..1000u64 {
            for a in [false, true] {
                for b in [false, true] {
                    assert!(meeting_sequence(v + 1, b) > meeting_sequence(v, a));
                }
            }
        }
        assert_eq!(meeting_sequence(u64::MAX, true), u64::MAX);
    }
}
