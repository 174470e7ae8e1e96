//! The email address grammar: what the CRM may name as an address (a contact's email, a party
//! of an activity) so that a mail server can carry it out.
//!
//! An address is an RFC 5321/5322 `addr-spec`, `local-part "@" domain`:
//!
//! - the local part is a **dot-atom** (atoms of `atext` separated by single dots, none empty)
//!   or a **quoted string** (`"..."` of printable characters, no quoted pairs), at most 64
//!   bytes;
//! - the domain is **dot-separated labels** (letters, digits and `-`, 1–63 bytes each, no
//!   leading or trailing `-`, at most 253 bytes in all) or an **address literal**
//!   (`[192.0.2.1]`, `[IPv6:2001:db8::1]`);
//! - the whole address is at most 254 bytes.
//!
//! Letters beyond ASCII are accepted in atoms and labels (internationalized addresses, RFC
//! 6531/6532). Path separators (`/`, `\`) and control characters are refused everywhere, even
//! where RFC 5322 would allow `/` in an atom: an address ends up in file and folder names of
//! the local backends, and one that could name a path is input that can never be carried out.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

/// Why a text is not an email address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddressError(String);

impl fmt::Display for AddressError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for AddressError {}

fn err(why: impl Into<String>) -> Result<(), AddressError> {
    Err(AddressError(why.into()))
}

/// Checks `s` against the address grammar (see the module doc).
pub fn check(s: &str) -> Result<(), AddressError> {
    if s.len() > 254 {
        return err("is longer than 254 bytes");
    }
    // The local part may be quoted and contain '@': the domain follows the last '@'.
    let Some((local, domain)) = s.rsplit_once('@') else {
        return err("has no '@' (expected local-part@domain)");
    };
    check_local(local)?;
    check_domain(domain)
}

/// Whether `s` is an email address (see the module doc).
pub fn is_valid(s: &str) -> bool {
    check(s).is_ok()
}

fn is_atext(c: char) -> bool {
    c.is_ascii_alphanumeric()
        || "!#$%&'*+-=?^_`{|}~".contains(c)
        || (!c.is_ascii() && c.is_alphanumeric())
}

/// A character of a quoted local part: a space, printable ASCII or a printable non-ASCII
/// character (quotes, backslashes and slashes are refused afterwards).
fn is_qtext(c: char) -> bool {
    c == ' ' || c.is_ascii_graphic() || (!c.is_ascii() && !c.is_control())
}

fn check_local(local: &str) -> Result<(), AddressError> {
    if local.is_empty() {
        return err("has an empty local part before '@'");
    }
    if local.len() > 64 {
        return err("has a local part longer than 64 bytes");
    }
    if let Some(inner) = local
        .strip_prefix('"')
        .and_then(|l| l.strip_suffix('"'))
        .filter(|_| local.len() >= 2)
    {
        return match inner
            .chars()
            .find(|&c| !is_qtext(c))
            .or_else(|| inner.chars().find(|&c| matches!(c, '"' | '\\' | '/')))
        {
            Some(c) => err(format!("has {c:?} in its quoted local part")),
            None => Ok(()),
        };
    }
    for atom in local.split('.') {
        if atom.is_empty() {
            return err("has an empty atom in its local part (a leading, trailing or double dot)");
        }
        if let Some(c) = atom.chars().find(|&c| !is_atext(c)) {
            return err(format!("has {c:?} in its local part"));
        }
    }
    Ok(())
}

fn check_domain(domain: &str) -> Result<(), AddressError> {
    if domain.is_empty() {
        return err("has an empty domain after '@'");
    }
    if let Some(literal) = domain.strip_prefix('[') {
        let Some(literal) = literal.strip_suffix(']') else {
            return err("has an address literal without its closing ']'");
        };
        let ok = match literal.strip_prefix("IPv6:") {
            Some(v6) => v6.parse::<Ipv6Addr>().is_ok(),
            None => literal.parse::<Ipv4Addr>().is_ok(),
        };
        return if ok {
            Ok(())
        } else {
            err(format!(
                "has \"[{literal}]\", not an IPv4 or IPv6 address literal"
            ))
        };
    }
    if domain.len() > 253 {
        return err("has a domain longer than 253 bytes");
    }
    for label in domain.split('.') {
        if label.is_empty() {
            return err("has an empty label in its domain (a leading, trailing or double dot)");
        }
        if label.len() > 63 {
            return err("has a domain label longer than 63 bytes");
        }
        if label.starts_with('-') || label.ends_with('-') {
            return err(format!(
                "has the domain label \"{label}\" starting or ending with '-'"
            ));
        }
        if let Some(c) = label.chars().find(|&c| {
            !(c == '-' || c.is_ascii_alphanumeric() || (!c.is_ascii() && c.is_alphanumeric()))
        }) {
            return err(format!("has {c:?} in its domain"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_addresses_are_accepted() {
        for s in [
            "mal@serenity.example",
            "inara@guild.example",
            "first.last+tag@sub.example.org",
            "o'brien@example.ie",
            "x@localhost",
            "\"john smith\"@example.com",
            "\"a@b\"@example.com",
            "user@[192.0.2.1]",
            "user@[IPv6:2001:db8::1]",
            "jürgen@müller.example",
            "a-b_c!#$%&*=?^`{|}~@xn--mller-kva.example",
        ] {
            assert_eq!(check(s), Ok(()), "{s}");
        }
    }

    #[test]
    fn paths_and_malformed_addresses_are_refused() {
        for s in [
            "x@../../tmp/evil",
            "x@..",
            "../../etc@example.com",
            "a/b@example.com",
            "a\\b@example.com",
            "a@b/c",
            "a@b\\c",
            "\"a/b\"@example.com",
            "\"a\\\"b\"@example.com",
            "",
            "plain",
            "@example.com",
            "a@",
            "a..b@example.com",
            ".a@example.com",
            "a.@example.com",
            "a@.example.com",
            "a@example.com.",
            "a@exa mple.com",
            "a b@example.com",
            "a@-example.com",
            "a@example-.com",
            "a@[300.1.1.1]",
            "a@[IPv6:zz::1]",
            "a@[192.0.2.1",
            "a\n@example.com",
            "a@example.com\u{0}",
        ] {
            assert!(check(s).is_err(), "{s:?} accepted");
        }
        let long_local = format!("{}@example.com", "a".repeat(65));
        assert!(check(&long_local).is_err());
        let long_label = format!("a@{}.com", "b".repeat(64));
        assert!(check(&long_label).is_err());
        assert!(is_valid("a@b.c") && !is_valid("a@b..c"));
    }

    #[test]
    fn an_error_says_what_is_wrong() {
        let e = check("x@../../tmp/evil").unwrap_err().to_string();
        assert!(e.contains("empty label"), "{e}");
        let e = check("a/b@example.com").unwrap_err().to_string();
        assert!(e.contains("'/'"), "{e}");
    }
}
