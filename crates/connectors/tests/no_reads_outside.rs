//! Nothing outside a collection is ever read, and no item's content is quoted into an error: a
//! symbolic link in a vdir (to a file outside it, to `/proc/self/environ`) is never followed but
//! reported as an item failure naming the file, and a malformed item is described by its file,
//! line and property, never by its text.

mod support;

use ledgersync_connectors::Cursor;
use ledgersync_domain::ErrorKind;
use std::fs;
use std::os::unix::fs::symlink;
use support::*;

const MARKER: &str = "SECRET-MARKER-7f3a9c";

/// Everything a listing hands on (observations bound for the journal, failures bound for the
/// journal and the log), as text.
fn everything(l: &ledgersync_connectors::Listing) -> String {
    format!("{:?} {:?} {}", events(l), l.failures, l.cursor.as_str())
}

#[test]
fn links_out_of_a_collection_are_never_followed_and_are_reported_by_name() {
    let mut f = Fixture::new();
    let outside = tempfile::tempdir().unwrap();
    // A valid, tracked calendar object outside the collection, holding a secret: followed, it
    // would be imported.
    let secret = outside.path().join("secret.ics");
    fs::write(&secret, event_ics("s", MARKER)).unwrap();
    symlink(&secret, f.calendar.join("leak.ics")).unwrap();
    let card = outside.path().join("card.vcf");
    fs::write(&card, card_vcf("c", MARKER)).unwrap();
    symlink(&card, f.contacts.join("leak.vcf")).unwrap();
    // The process environment, with the marker in it.
    let environ = fs::read_to_string("/proc/self/environ").unwrap_or_default();
    symlink("/proc/self/environ", f.calendar.join("environ.ics")).unwrap();
    // A link to a file inside the collection is refused too (simplest and safest).
    write_aged(&f.calendar.join("real.ics"), &event_ics("r", "Real"), 60);
    symlink(f.calendar.join("real.ics"), f.calendar.join("alias.ics")).unwrap();

    let l = f.list(&Cursor::initial());
    let text = everything(&l);
    assert!(
        !text.contains(MARKER),
        "the secret reached the listing: {text}"
    );
    // Not one line of the environment either (PATH, HOME, ...).
    for var in environ.split('\0').filter(|v| v.len() > 8) {
        assert!(
            !text.contains(var),
            "the environment reached the listing: {var}"
        );
    }
    let json = serde_json::to_string(&events(&l)).unwrap();
    assert!(!json.contains(MARKER), "{json}");

    // Only the real file is seen.
    let items = seen(&l);
    assert_eq!(items.len(), 1, "{items:?}");
    assert_eq!(items[0].remote.0, "calendar/real.ics");
    // Each link is an item failure that names its file.
    for name in [
        "calendar/leak.ics",
        "calendar/environ.ics",
        "calendar/alias.ics",
        "contacts/leak.vcf",
    ] {
        let failure = l
            .failures
            .iter()
            .find(|x| x.item == name)
            .unwrap_or_else(|| panic!("no failure for {name}: {:?}", l.failures));
        assert_eq!(failure.kind, ErrorKind::Forbidden);
        assert!(failure.error.contains("symbolic link"), "{failure}");
        let file = name.split_once('/').unwrap().1;
        assert!(failure.error.contains(file), "{failure}");
    }
    assert_eq!(terminal(&l), "listing_completed");

    // Again on the next cycle: still refused, nothing read, nothing gone.
    let again = f.list(&l.cursor);
    assert!(!everything(&again).contains(MARKER));
    assert!(gone(&again).is_empty());
    assert_eq!(again.failures.len(), 4);
}

#[test]
fn a_file_replaced_by_a_link_stays_known_and_is_never_read() {
    let mut f = Fixture::new();
    write_aged(&f.calendar.join("a.ics"), &event_ics("a", "A"), 60);
    write_aged(&f.calendar.join("b.ics"), &event_ics("b", "B"), 60);
    let first = f.list(&Cursor::initial());
    assert_eq!(seen(&first).len(), 2);
    let outside = tempfile::tempdir().unwrap();
    let secret = outside.path().join("x.ics");
    fs::write(&secret, event_ics("a", MARKER)).unwrap();
    fs::remove_file(f.calendar.join("a.ics")).unwrap();
    symlink(&secret, f.calendar.join("a.ics")).unwrap();
    let second = f.list(&first.cursor);
    assert!(!everything(&second).contains(MARKER));
    assert!(gone(&second).is_empty(), "a refused link is not a delete");
    assert!(seen(&second).is_empty());
    assert_eq!(second.failures.len(), 1);
    assert_eq!(second.failures[0].item, "calendar/a.ics");
}

#[test]
fn a_malformed_item_is_named_by_file_line_and_property_never_quoted() {
    let mut f = Fixture::new();
    // Junk before the calendar object: the first line is not a content line a parser accepts
    // where a BEGIN should be.
    let bad = format!("X-LEAK;P=1:{MARKER}\r\n{}", event_ics("a", "A"));
    write_aged(&f.calendar.join("bad.ics"), &bad, 60);
    let junk = format!("BEGIN:VCARD\nVERSION:3.0\n{MARKER}\nEND:VCARD\n");
    write_aged(&f.contacts.join("junk.vcf"), &junk, 60);
    let nameless = format!("{MARKER} with no property at all\n");
    write_aged(&f.calendar.join("nameless.ics"), &nameless, 60);

    let l = f.list(&Cursor::initial());
    let text = everything(&l);
    assert!(
        !text.contains(MARKER),
        "an item's content reached the listing: {text}"
    );
    let bad = l
        .failures
        .iter()
        .find(|x| x.item == "calendar/bad.ics")
        .unwrap_or_else(|| panic!("{:?}", l.failures));
    assert_eq!(bad.kind, ErrorKind::Malformed);
    assert!(bad.error.contains("bad.ics"), "{bad}");
    assert!(bad.error.contains("line 1"), "{bad}");
    assert!(bad.error.contains("X-LEAK"), "{bad}");
    let nameless = l
        .failures
        .iter()
        .find(|x| x.item == "calendar/nameless.ics")
        .unwrap_or_else(|| panic!("{:?}", l.failures));
    assert!(nameless.error.contains("line 1"), "{nameless}");
}
