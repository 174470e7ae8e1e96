//! No file content crashes a listing or turns into a delete (R25): arbitrary bytes, and valid
//! items cut at any point, are item failures at worst.

mod support;

use ledgersync_connectors::Cursor;
use proptest::prelude::*;
use std::fs;
use support::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn any_bytes_in_a_known_item_never_yield_item_gone(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let mut f = Fixture::new();
        write_aged(&f.calendar.join("a.ics"), &event_ics("a", "a"), 60);
        write_aged(&f.calendar.join("b.ics"), &event_ics("b", "b"), 60);
        write_aged(&f.contacts.join("k.vcf"), &card_vcf("k", "Kaylee"), 60);
        let first = f.list(&Cursor::initial());
        fs::write(f.calendar.join("a.ics"), &bytes).unwrap();
        fs::write(f.contacts.join("k.vcf"), &bytes).unwrap();
        let second = f.list(&first.cursor);
        prop_assert!(gone(&second).is_empty());
        prop_assert_eq!(terminal(&second), "listing_completed");
    }

    #[test]
    fn a_valid_item_cut_anywhere_is_at_worst_an_item_failure(cut in 0usize..400, card in any::<bool>()) {
        let mut f = Fixture::new();
        let (dir, name, text) = if card {
            (f.contacts.clone(), "k.vcf", card_vcf("k", "Kaylee Frye"))
        } else {
            (f.calendar.clone(), "a.ics", event_ics("a", "Quarterly review"))
        };
        let cut = cut.min(text.len());
        fs::write(dir.join(name), &text.as_bytes()[..cut]).unwrap();
        let l = f.list(&Cursor::initial());
        // The file is either understood or reported, never silently dropped.
        prop_assert_eq!(seen(&l).len() + l.failures.len(), 1);
        prop_assert!(gone(&l).is_empty());
    }
}
