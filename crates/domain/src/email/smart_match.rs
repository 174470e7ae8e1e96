//! Smart matching (R65): an email correlates with an earlier one whose subject words and
//! addresses hash alike. Off by default ("not recommended" by SSS): subjects repeat across
//! unrelated threads.
//!
//! The subject loses its leading reply and forward prefixes first (SSS's `HashFilterKeywords`
//! default, `^[\s]*([\w]+\s?:[\s]*)+`: any run of `word:` or `word :` at the start, so `RE:`,
//! `FW: RE:` and `AW:` go; a colon later in the subject stays). Words and addresses are
//! compared without case. Hashes are 64-bit FNV-1a: stable across processes and versions, so
//! hashes recorded with an email compare with hashes computed years later.

use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// The smart-matching settings (`HashMaxCount`, `HashDeltaSubjectCount`, `HashMinAddressCount`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SmartMatchSettings {
    /// At most this many subject words and this many unique addresses are hashed. Default 20.
    pub max_count: usize,
    /// The subject-hash counts of two emails may differ by at most this. Default 0.
    pub delta_subject_count: usize,
    /// At least this many address hashes must match. Default 2.
    pub min_address_count: usize,
}

impl Default for SmartMatchSettings {
    fn default() -> Self {
        Self {
            max_count: 20,
            delta_subject_count: 0,
            min_address_count: 2,
        }
    }
}

/// The hashes of one email.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hashes {
    /// One per subject word (after the prefixes), at most `max_count`, in order.
    pub subject: Vec<u64>,
    /// One per unique address (From, To, Cc, Bcc), at most `max_count`.
    pub addresses: BTreeSet<u64>,
}

/// The subject without its leading `word:` prefixes.
pub fn strip_prefixes(subject: &str) -> &str {
    let mut rest = subject.trim_start();
    loop {
        let word_end = rest
            .char_indices()
            .find(|(_, c)| !(c.is_alphanumeric() || *c == '_'))
            .map_or(rest.len(), |(i, _)| i);
        if word_end == 0 {
            return rest;
        }
        let after_word = &rest[word_end..];
        // `\s?` then `:`.
        let after_space = after_word
            .strip_prefix(|c: char| c.is_whitespace())
            .unwrap_or(after_word);
        match after_space.strip_prefix(':') {
            Some(after) => rest = after.trim_start(),
            None => return rest,
        }
    }
}

/// 64-bit FNV-1a of `text`: stable across processes and versions.
pub(crate) fn fnv1a(text: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The hashes of an email with `subject` and `addresses` (every From, To, Cc and Bcc).
pub fn hashes<'a>(
    subject: &str,
    addresses: impl IntoIterator<Item = &'a str>,
    s: &SmartMatchSettings,
) -> Hashes {
    let subject = strip_prefixes(subject)
        .split_whitespace()
        .take(s.max_count)
        .map(|w| fnv1a(&w.to_lowercase()))
        .collect();
    let mut unique = BTreeSet::new();
    for a in addresses {
        let a = a.trim().to_lowercase();
        if !a.is_empty() && unique.len() < s.max_count {
            unique.insert(a);
        }
    }
    Hashes {
        subject,
        addresses: unique.iter().map(|a| fnv1a(a)).collect(),
    }
}

/// How two emails compare.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Comparison {
    /// Subject hashes of the new email not in the earlier one's, and the other way round:
    /// the larger of the two.
    pub subject_difference: usize,
    /// Address hashes in common.
    pub common_addresses: usize,
}

impl Comparison {
    /// Whether it is a match under `s`: subject-hash counts within the delta (an empty subject
    /// never matches) and enough common addresses.
    pub fn matches(&self, s: &SmartMatchSettings) -> bool {
        self.subject_difference <= s.delta_subject_count
            && self.common_addresses >= s.min_address_count
    }
}

/// Compares a new email's hashes with an earlier one's.
pub fn compare(new: &Hashes, earlier: &Hashes) -> Comparison {
    let a: BTreeSet<u64> = new.subject.iter().copied().collect();
    let b: BTreeSet<u64> = earlier.subject.iter().copied().collect();
    let subject_difference = if a.is_empty() || b.is_empty() {
        usize::MAX
    } else {
        a.difference(&b).count().max(b.difference(&a).count())
    };
    Comparison {
        subject_difference,
        common_addresses: new.addresses.intersection(&earlier.addresses).count(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_and_forward_prefixes_are_stripped_a_colon_later_stays() {
        assert_eq!(strip_prefixes("RE: Cargo audit"), "Cargo audit");
        assert_eq!(strip_prefixes("  FW: RE: Re : Cargo audit"), "Cargo audit");
        assert_eq!(strip_prefixes("AW: Angebot: Fracht"), "Fracht");
        assert_eq!(strip_prefixes("Cargo audit: week 3"), "Cargo audit: week 3");
        assert_eq!(strip_prefixes("Out of office: Paul"), "Out of office: Paul");
        assert_eq!(strip_prefixes("RE:"), "");
    }

    #[test]
    fn a_reply_with_the_same_words_and_two_addresses_in_common_matches() {
        let s = SmartMatchSettings::default();
        let sent = hashes(
            "Cargo audit",
            ["paul@serenity.example", "zoe@customer.example"],
            &s,
        );
        let reply = hashes(
            "RE: cargo AUDIT",
            ["Zoe@Customer.example", "paul@serenity.example"],
            &s,
        );
        assert!(compare(&reply, &sent).matches(&s));

        // One address in common is not enough (default 2).
        let other = hashes(
            "RE: Cargo audit",
            ["zoe@customer.example", "river@customer.example"],
            &s,
        );
        let c = compare(&other, &sent);
        assert_eq!(c.common_addresses, 1);
        assert!(!c.matches(&s));

        // A word more: the subject counts differ by one, above the default delta 0.
        let longer = hashes(
            "RE: Cargo audit results",
            ["paul@serenity.example", "zoe@customer.example"],
            &s,
        );
        assert!(!compare(&longer, &sent).matches(&s));
        let lenient = SmartMatchSettings {
            delta_subject_count: 1,
            ..s
        };
        assert!(compare(&longer, &sent).matches(&lenient));
    }

    #[test]
    fn at_most_max_count_words_and_addresses_are_hashed_and_empty_subjects_never_match() {
        let s = SmartMatchSettings {
            max_count: 3,
            ..SmartMatchSettings::default()
        };
        let h = hashes("one two three four five", ["a@x", "b@x", "c@x", "d@x"], &s);
        assert_eq!(h.subject.len(), 3);
        assert_eq!(h.addresses.len(), 3);
        let empty = hashes("RE:", ["a@x", "b@x"], &s);
        assert!(!compare(&empty, &empty).matches(&s));
    }

    #[test]
    fn hashes_are_stable_across_processes() {
        // Recorded with an email and compared later: the function must never change.
        assert_eq!(fnv1a(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a("a"), 0xaf63_dc4c_8601_ec8c);
    }
}
