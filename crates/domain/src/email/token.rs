//! Tracking tokens in email subjects (R63, R64).
//!
//! A token is the prefix (1–20 characters, default `CRM:`), one designator digit (`0`, fixed),
//! the user number (the deployment base plus the user's index, zero-padded to the configured
//! digits) and the per-activity counter (zero-padded, wrapping to zero after its maximum):
//! `CRM:0001001` is user 1's first email with the defaults.

use std::fmt;

/// The designator digit: a legacy online/offline marker, always `0`.
const DESIGNATOR: char = '0';

/// Where the parts of a token come from (system settings, "Configure email correlation").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenFormat {
    /// The prefix: 1 to 20 characters. Default `CRM:`.
    pub prefix: String,
    /// The deployment base tracking number: 0 to 2,147,483,647. Default 0 (the first user is 1).
    pub base: u32,
    /// Digits of the user number: 1 to 10. Default 3.
    pub user_digits: u8,
    /// Digits of the message counter: 1 to 9. Default 3.
    pub counter_digits: u8,
}

impl Default for TokenFormat {
    fn default() -> Self {
        Self {
            prefix: "CRM:".to_string(),
            base: 0,
            user_digits: 3,
            counter_digits: 3,
        }
    }
}

/// A token format outside the documented ranges.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("tracking token: {0}")]
pub struct TokenFormatError(String);

/// A token found in a subject: the user number and the counter it carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FoundToken {
    /// The token as it appears in the subject.
    pub text: String,
    /// The user number (base plus user index).
    pub user_number: u64,
    /// The activity counter.
    pub counter: u64,
}

/// A subject with the token added (or not), as R64 decides.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenedSubject {
    /// The subject to send.
    pub subject: String,
    /// Whether the token is in it.
    pub token_added: bool,
    /// Whether the subject was cut to fit.
    pub truncated: bool,
}

impl TokenFormat {
    /// Checks the documented ranges.
    pub fn validate(&self) -> Result<(), TokenFormatError> {
        let chars = self.prefix.chars().count();
        if !(1..=20).contains(&chars) {
            return Err(TokenFormatError(format!(
                "the prefix {:?} has {chars} characters; it needs 1 to 20",
                self.prefix
            )));
        }
        if self
            .prefix
            .chars()
            .last()
            .is_some_and(|c| c.is_ascii_digit())
        {
            return Err(TokenFormatError(format!(
                "the prefix {:?} ends with a digit, which a reader could not tell from the number",
                self.prefix
            )));
        }
        if self.base > 2_147_483_647 {
            return Err(TokenFormatError(format!(
                "the base {} is above 2,147,483,647",
                self.base
            )));
        }
        if !(1..=10).contains(&self.user_digits) {
            return Err(TokenFormatError(format!(
                "{} user-number digits; 1 to 10 are allowed",
                self.user_digits
            )));
        }
        if !(1..=9).contains(&self.counter_digits) {
            return Err(TokenFormatError(format!(
                "{} counter digits; 1 to 9 are allowed",
                self.counter_digits
            )));
        }
        Ok(())
    }

    /// The token of the `counter`-th email activity of the user at `user_index` (1 for the
    /// first user). The counter wraps to zero after its maximum (999 → 000 with 3 digits); a
    /// user number wider than its digits is written whole.
    pub fn token(&self, user_index: u32, counter: u64) -> String {
        let user = u64::from(self.base) + u64::from(user_index);
        let wrap = 10u64.pow(u32::from(self.counter_digits));
        format!(
            "{}{DESIGNATOR}{user:0uw$}{:0cw$}",
            self.prefix,
            counter % wrap,
            uw = usize::from(self.user_digits),
            cw = usize::from(self.counter_digits),
        )
    }

    /// The first token of this format in `subject`: the prefix, the designator digit, then
    /// exactly as many digits as the user number and the counter take, not followed by
    /// another digit. The prefix matches case-insensitively (mail clients change case).
    pub fn find(&self, subject: &str) -> Option<FoundToken> {
        let prefix: Vec<char> = self.prefix.chars().collect();
        let chars: Vec<char> = subject.chars().collect();
        let digits = 1 + usize::from(self.user_digits) + usize::from(self.counter_digits);
        let mut start = 0;
        while start + prefix.len() + digits <= chars.len() {
            let matches_prefix = chars[start..start + prefix.len()]
                .iter()
                .zip(&prefix)
                .all(|(a, b)| a.to_lowercase().eq(b.to_lowercase()));
            let number = &chars[start + prefix.len()..start + prefix.len() + digits];
            let after = chars.get(start + prefix.len() + digits);
            if matches_prefix
                && number[0] == DESIGNATOR
                && number.iter().all(char::is_ascii_digit)
                && !after.is_some_and(char::is_ascii_digit)
            {
                let user: String = number[1..=usize::from(self.user_digits)].iter().collect();
                let counter: String = number[1 + usize::from(self.user_digits)..].iter().collect();
                return Some(FoundToken {
                    text: chars[start..start + prefix.len() + digits].iter().collect(),
                    user_number: user.parse().ok()?,
                    counter: counter.parse().ok()?,
                });
            }
            start += 1;
        }
        None
    }
}

/// R64: the subject with `token` appended after a space, cut to `limit` characters
/// (`MaximumSubjectLengthOnMailServer`, 255 to 400, default 255). When subject and token do
/// not fit, the subject is cut; when the token alone does not fit, the subject is cut to the
/// limit and no token is added.
pub fn with_token(subject: &str, token: &str, limit: usize) -> TokenedSubject {
    let subject_len = subject.chars().count();
    let token_len = token.chars().count();
    if token_len + 1 > limit {
        let truncated = subject_len > limit;
        return TokenedSubject {
            subject: subject.chars().take(limit).collect(),
            token_added: false,
            truncated,
        };
    }
    if subject.is_empty() {
        return TokenedSubject {
            subject: token.to_string(),
            token_added: true,
            truncated: false,
        };
    }
    let room = limit - token_len - 1;
    let truncated = subject_len > room;
    let kept: String = subject.chars().take(room).collect();
    TokenedSubject {
        subject: format!("{} {token}", kept.trim_end()),
        token_added: true,
        truncated,
    }
}

impl fmt::Display for FoundToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_default_token_of_the_first_user_is_crm_0001001() {
        let f = TokenFormat::default();
        assert_eq!(f.token(1, 1), "CRM:0001001");
        assert_eq!(f.token(12, 345), "CRM:0012345");
        // The counter wraps to zero after its maximum (R63).
        assert_eq!(f.token(1, 999), "CRM:0001999");
        assert_eq!(f.token(1, 1000), "CRM:0001000");
        // The base is added to the user index: base 500, first user 501.
        let f = TokenFormat {
            base: 500,
            ..TokenFormat::default()
        };
        assert_eq!(f.token(1, 7), "CRM:0501007");
    }

    #[test]
    fn a_token_is_found_in_a_reply_subject_whatever_the_case_of_its_prefix() {
        let f = TokenFormat::default();
        let found = f.find("RE: Quarterly review crm:0001042").unwrap();
        assert_eq!(found.user_number, 1);
        assert_eq!(found.counter, 42);
        assert_eq!(found.text, "crm:0001042");
        // Too few digits, too many, or no designator digit: no token.
        assert_eq!(f.find("RE: CRM:000104"), None);
        assert_eq!(f.find("RE: CRM:00010420"), None);
        assert_eq!(f.find("RE: CRM:1001042"), None);
        assert_eq!(f.find("No token here"), None);
    }

    #[test]
    fn formats_outside_the_documented_ranges_are_refused() {
        let ok = TokenFormat::default();
        assert!(ok.validate().is_ok());
        for bad in [
            TokenFormat {
                prefix: String::new(),
                ..ok.clone()
            },
            TokenFormat {
                prefix: "x".repeat(21),
                ..ok.clone()
            },
            TokenFormat {
                prefix: "CRM1".into(),
                ..ok.clone()
            },
            TokenFormat {
                user_digits: 11,
                ..ok.clone()
            },
            TokenFormat {
                counter_digits: 0,
                ..ok.clone()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn r64_the_subject_is_cut_to_fit_and_the_token_left_out_when_it_alone_does_not_fit() {
        let fits = with_token("Quarterly review", "CRM:0001001", 255);
        assert_eq!(fits.subject, "Quarterly review CRM:0001001");
        assert!(fits.token_added && !fits.truncated);

        let long = "a".repeat(300);
        let cut = with_token(&long, "CRM:0001001", 255);
        assert_eq!(cut.subject.chars().count(), 255);
        assert!(cut.subject.ends_with(" CRM:0001001"));
        assert!(cut.token_added && cut.truncated);

        let huge_token = "T".repeat(300);
        let none = with_token(&long, &huge_token, 255);
        assert_eq!(none.subject, "a".repeat(255));
        assert!(!none.token_added && none.truncated);
    }

    proptest! {
        #[test]
        fn every_token_built_is_found_again(
            prefix in "[A-Za-z:#-]{1,20}",
            base in 0u32..1000,
            user_digits in 1u8..=10,
            counter_digits in 1u8..=9,
            index in 1u32..1000,
            counter in 0u64..10_000_000_000,
            before in "[a-zA-Z :]{0,40}",
        ) {
            let f = TokenFormat { prefix, base, user_digits, counter_digits };
            prop_assume!(f.validate().is_ok());
            let token = f.token(index, counter);
            // A user number wider than its digits cannot be read back; within them it is.
            let user = u64::from(base) + u64::from(index);
            prop_assume!(user < 10u64.pow(u32::from(user_digits)));
            let found = f.find(&format!("{before} {token}")).unwrap();
            let wrap = 10u64.pow(u32::from(counter_digits));
            prop_assert_eq!(found.counter, counter % wrap);
            prop_assert_eq!(found.user_number, user);
        }

        #[test]
        fn a_tokened_subject_never_exceeds_the_limit(
            subject in "[a-zA-Z0-9 äé]{0,500}",
            token_len in 1usize..420,
            limit in 255usize..=400,
        ) {
            let token = "T".repeat(token_len);
            let out = with_token(&subject, &token, limit);
            prop_assert!(out.subject.chars().count() <= limit);
            prop_assert_eq!(out.token_added, token_len < limit);
        }
    }
}
