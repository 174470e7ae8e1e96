//! The delete breaker (R25, `docs/decisions/0016-delete-breaker.md`): one cycle that would
//! delete too many linked items deletes nothing on either side until an administrator approves
//! the deletes or the items come back.

use super::*;
use ledgersync_domain::Decision;
use ledgersync_domain::decide::{Trip, trips};

/// A mailbox of jayne's with `n` linked contacts she owns (a server delete of one deletes the
/// CRM contact, R43), and their server ids.
fn with_contacts(n: usize) -> (Mailbox, Vec<Record>, Vec<RemoteId>) {
    let mut mb = Mailbox::ready("jayne");
    let rows: Vec<Record> = (1..=n)
        .map(|i| contact(&format!("c{i}"), "jayne"))
        .collect();
    let remotes = rows.iter().map(|r| mb.sync_new(r)).collect();
    (mb, rows, remotes)
}

/// A complete listing reports `remotes` gone: the count first, then an `item_gone` each. The
/// decisions of the count, and of each gone.
fn listed_gone(mb: &mut Mailbox, remotes: &[RemoteId]) -> (Vec<Decision>, Vec<Vec<Decision>>) {
    let first = mb.feed(Event::DeletionsListed(DeletionsListed {
        workload: Workload::Act,
        remotes: remotes.to_vec(),
    }));
    let each = remotes.iter().map(|r| mb.feed(gone(r))).collect();
    (first, each)
}

fn approve(mb: &mut Mailbox) -> Vec<Decision> {
    let obs = Event::DeletesApproved(DeletesApproved {
        mailbox: mb.id.clone(),
        by: "administrator".into(),
    });
    mb.feed(obs)
}

fn tripped(ds: &[Decision]) -> &BreakerTripped {
    ds.iter()
        .find_map(|d| match &d.event {
            Event::BreakerTripped(p) => Some(p),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no breaker_tripped in {:#?}", summary(ds)))
}

#[test]
fn r25_breaker_trips_above_the_share_and_not_at_it() {
    // 2 of 10 is 20 %: not more than the default share, deleted as usual.
    let (mut mb, _, remotes) = with_contacts(10);
    let (first, each) = listed_gone(&mut mb, &remotes[..2]);
    assert!(first.is_empty(), "{first:#?}");
    for ds in &each {
        assert_eq!(summary(ds), [(43, "delete_intent")]);
    }
    assert!(mb.state.breaker.is_none());

    // 3 of 10 is more than 20 %: the breaker trips, with an alert naming the count.
    let (mut mb, _, remotes) = with_contacts(10);
    let (first, _) = listed_gone(&mut mb, &remotes[..3]);
    assert_eq!(
        summary(&first),
        [(25, "breaker_tripped"), (25, "alert_raised")]
    );
    let t = tripped(&first);
    assert_eq!(t.deletes, 3);
    assert!(
        t.basis
            .reason
            .starts_with("3 of 10 linked items would have been deleted in one cycle")
            && t.basis
                .reason
                .contains("more than 20 % (setting delete_breaker_percent)")
            && t.basis
                .reason
                .contains("`ledgersync mailbox approve-deletes mbx-jayne`"),
        "{}",
        t.basis.reason
    );
    let (_, alert) = one(alerts(&first), &first);
    assert_eq!(alert.level, AlertLevel::Warning);
    assert!(
        alert.text.contains("3 of 10 linked items"),
        "{}",
        alert.text
    );
    let b = mb.state.breaker.as_ref().expect("open");
    assert_eq!((b.workload, b.deletes), (Workload::Act, 3));

    // The count: more than `delete_breaker_items` trips whatever the share.
    assert_eq!(trips(50, 1000, 20, 50), None);
    assert_eq!(trips(51, 1000, 20, 50), Some(Trip::Items));
    assert_eq!(trips(8, 40, 20, 50), None);
    assert_eq!(trips(9, 40, 20, 50), Some(Trip::Percent));
    assert_eq!(trips(37, 40, 100, 50), None);
    assert_eq!(trips(40, 40, 100, 50), None);
    assert_eq!(trips(40, 40, 20, 50), Some(Trip::Emptied));
    assert_eq!(trips(1, 1, 20, 50), Some(Trip::Emptied));
    assert_eq!(trips(1, 2, 1, 1), None);
    assert_eq!(trips(2, 2, 100, 1), Some(Trip::Items));
    assert_eq!(trips(0, 40, 1, 1), None);
}

#[test]
fn r25_breaker_settings_are_named_in_the_basis() {
    let (mut mb, _, remotes) = with_contacts(4);
    mb.settings.delete_breaker_items = 2;
    mb.settings.delete_breaker_percent = 100;
    let (first, _) = listed_gone(&mut mb, &remotes[..3]);
    let t = tripped(&first);
    let used: Vec<(String, String)> = t
        .basis
        .settings
        .iter()
        .map(|u| (u.key.clone(), u.value.clone()))
        .collect();
    assert_eq!(
        used,
        [
            ("delete_breaker_percent".to_string(), "100".to_string()),
            ("delete_breaker_items".to_string(), "2".to_string())
        ]
    );
    assert!(
        t.basis
            .reason
            .contains("more than 2 items (setting delete_breaker_items)"),
        "{}",
        t.basis.reason
    );
}

#[test]
fn r25_a_single_deletion_does_not_trip_the_breaker() {
    // 1 of 2 is 50 %, far more than 20 %: a user deleting one item needs no administrator.
    let (mut mb, rows, remotes) = with_contacts(2);
    let (first, each) = listed_gone(&mut mb, &remotes[..1]);
    assert!(first.is_empty(), "{first:#?}");
    assert_eq!(summary(&each[0]), [(43, "delete_intent")]);
    assert!(mb.state.breaker.is_none());
    assert_eq!(mb.link(&rows[0].id).status, LinkStatus::Deleting);
}

#[test]
fn r25_an_emptied_collection_trips_the_breaker() {
    // Every linked item gone trips under any share below 100 %...
    let (mut mb, _, remotes) = with_contacts(4);
    mb.settings.delete_breaker_percent = 99;
    let (first, _) = listed_gone(&mut mb, &remotes);
    let reason = &tripped(&first).basis.reason;
    assert!(
        reason.contains("every linked item: the collection was emptied, more than 99 %"),
        "{reason}"
    );
    // ... but not with the share turned off (100 %).
    let (mut mb, _, remotes) = with_contacts(4);
    mb.settings.delete_breaker_percent = 100;
    let (first, _) = listed_gone(&mut mb, &remotes);
    assert!(first.is_empty(), "{first:#?}");
    // The last linked item is a collection emptied too.
    let (mut mb, _, remotes) = with_contacts(1);
    let (first, each) = listed_gone(&mut mb, &remotes);
    assert_eq!(tripped(&first).deletes, 1);
    assert_eq!(summary(&each[0]), [(25, "no_action")]);
    // Items never linked are not deletes of linked items.
    let (mut mb, _, _) = with_contacts(2);
    let ds = mb.feed(Event::DeletionsListed(DeletionsListed {
        workload: Workload::Act,
        remotes: vec![RemoteId::new("calendar/unknown.ics")],
    }));
    assert!(ds.is_empty(), "{ds:#?}");
}

#[test]
fn r25_held_gones_decide_no_action() {
    let (mut mb, rows, remotes) = with_contacts(5);
    let (_, each) = listed_gone(&mut mb, &remotes);
    for (i, ds) in each.iter().enumerate() {
        assert_eq!(summary(ds), [(25, "no_action")]);
        let (_, n) = one(no_actions(ds), ds);
        assert_eq!(n.remote.as_ref(), Some(&remotes[i]));
        assert_eq!(n.record.as_ref(), Some(&rows[i].id));
        assert!(
            n.basis
                .reason
                .starts_with("the delete breaker holds this delete")
                && n.basis.reason.contains("5 of 5 linked items"),
            "{}",
            n.basis.reason
        );
        assert_eq!(mb.link(&rows[i].id).status, LinkStatus::Linked);
    }
    let b = mb.state.breaker.as_ref().expect("open");
    assert_eq!(b.held.len(), 5);
    // The next cycles change nothing while nobody approves.
    assert_eq!(
        summary(&mb.listing_completed(Workload::Act)),
        [(9, "cycle_scheduled")]
    );
    assert_eq!(mb.state.breaker.as_ref().map(|b| b.held.len()), Some(5));
}

#[test]
fn r25_approval_decides_the_held_deletes_with_the_usual_rules() {
    let mut mb = Mailbox::ready("jayne");
    let meeting = team_meeting("a1", "jayne", mb.now);
    let theirs = appointment(
        "a2",
        crm_user("zoe"),
        vec![crm_user("jayne")],
        vec![],
        mb.now + Duration::days(2),
    );
    let mine = contact("c1", "jayne");
    let t = task("t1", "jayne", mb.now);
    let remotes: Vec<RemoteId> = [&meeting, &theirs, &mine, &t]
        .iter()
        .map(|r| mb.sync_new(r))
        .collect();
    let (first, _) = listed_gone(&mut mb, &remotes);
    assert_eq!(tripped(&first).deletes, 4);

    let ds = approve(&mut mb);
    assert_eq!(
        summary(&ds),
        [
            (25, "breaker_closed"),
            (36, "delete_intent"),
            (36, "unlinked"),
            (43, "delete_intent"),
            (46, "delete_intent")
        ]
    );
    for (_, d) in deletes(&ds) {
        assert_eq!(d.target, Side::Crm);
        assert!(
            d.basis
                .reason
                .ends_with("held by the delete breaker, approved by administrator"),
            "{}",
            d.basis.reason
        );
    }
    assert!(mb.state.breaker.is_none());
    assert_eq!(mb.link(&theirs.id).status, LinkStatus::Unlinked);
    assert_eq!(mb.link(&mine.id).status, LinkStatus::Deleting);
    // Nothing is held any more: an approval again decides nothing but says so.
    assert_eq!(summary(&approve(&mut mb)), [(25, "no_action")]);
}

#[test]
fn r25_items_coming_back_close_the_breaker_without_churn() {
    let (mut mb, rows, remotes) = with_contacts(3);
    listed_gone(&mut mb, &remotes);
    // The share comes back unchanged: no delete, no update, the links are kept.
    for (i, remote) in remotes.iter().enumerate() {
        let ds = mb.feed(seen(remote_item(remote, 1, written_fields(&rows[i]))));
        if i + 1 < remotes.len() {
            assert!(ds.is_empty(), "{ds:#?}");
        } else {
            assert_eq!(summary(&ds), [(25, "breaker_closed")]);
        }
    }
    assert!(mb.state.breaker.is_none());
    for r in &rows {
        assert_eq!(mb.link(&r.id).status, LinkStatus::Linked);
    }
    // Deletes flow again as usual.
    let ds = mb.feed(Event::DeletionsListed(DeletionsListed {
        workload: Workload::Act,
        remotes: vec![remotes[0].clone()],
    }));
    assert!(ds.is_empty());
    assert_eq!(
        summary(&mb.feed(gone(&remotes[0]))),
        [(43, "delete_intent")]
    );
}

#[test]
fn r25_crm_side_deletes_are_held_while_the_breaker_is_open() {
    let mut mb = Mailbox::ready("jayne");
    let meeting = team_meeting("a1", "jayne", mb.now);
    mb.sync_new(&meeting);
    let (_, _, remotes) = (0, 0, {
        let rows: Vec<Record> = (1..=3)
            .map(|i| contact(&format!("c{i}"), "jayne"))
            .collect();
        rows.iter().map(|r| mb.sync_new(r)).collect::<Vec<_>>()
    });
    listed_gone(&mut mb, &remotes);
    assert!(mb.state.breaker.is_some());

    // The CRM deletes the meeting: decided as usual, held until the breaker closes.
    let ds = mb.feed(deleted(&meeting));
    assert_eq!(summary(&ds), [(27, "delete_intent"), (27, "cancel_intent")]);
    let (_, d) = one(deletes(&ds), &ds);
    assert!(
        d.basis
            .reason
            .contains("held while the delete breaker is open"),
        "{}",
        d.basis.reason
    );
    let pending: Vec<_> = mb.state.intents.values().collect();
    assert_eq!(pending.len(), 2);
    assert!(pending.iter().all(|p| mb.state.held_by_breaker(p)));

    approve(&mut mb);
    let pending: Vec<_> = mb.state.intents.values().filter(|p| !p.to_crm).collect();
    assert_eq!(pending.len(), 2);
    assert!(pending.iter().all(|p| !mb.state.held_by_breaker(p)));
}

#[test]
fn r25_cursor_reset_reconciles_by_server_id_without_churn() {
    let (mut mb, rows, remotes) = with_contacts(3);
    mb.feed(Event::CursorReset(CursorReset {
        workload: Workload::Act,
        reason: "the stored cursor could not be read".into(),
    }));
    // The listing from the initial cursor shows every item again, with new version tags: each
    // is matched to its link by server id, nothing is deleted, re-created or updated.
    for (i, remote) in remotes.iter().enumerate() {
        let mut item = remote_item(remote, 1, written_fields(&rows[i]));
        item.etag = format!("\"after-reset-{i}\"");
        assert!(mb.feed(seen(item)).is_empty());
    }
    assert_eq!(
        summary(&mb.listing_completed(Workload::Act)),
        [(9, "cycle_scheduled")]
    );
    for r in &rows {
        assert_eq!(mb.link(&r.id).status, LinkStatus::Linked);
    }
    assert!(mb.state.breaker.is_none() && mb.state.intents.is_empty());
}
