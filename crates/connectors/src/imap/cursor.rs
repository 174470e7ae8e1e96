//! The reading position of every tracked folder, as a small line-based text.
//!
//! ```text
//! imap-cursor 2
//! folder INBOX 1796596752 42 117 - k=7,31
//! folder INBOX/Customers 1796596753 7 - =F2b0c1 -
//! ```
//!
//! The first line names the format and its version. Then one `folder` line per folder, seven
//! fields separated by one space: the folder name, UIDVALIDITY, UIDNEXT, HIGHESTMODSEQ (`-`
//! when the server has no CONDSTORE), the RFC 8474 MAILBOXID (`-` when unknown, else `=`
//! followed by the id) and the UIDs of the messages that carried the tracking keyword at the
//! last read (`-` when none, else `k=` and the UIDs, comma-separated, ascending). A version-1
//! text (six fields, no keyword UIDs) still reads. The name and the id are escaped so that a field never holds a space
//! or a line break: `%` is written `%25`, a space `%20`, CR `%0D` and LF `%0A`. Folders are
//! written in name order; a folder named twice, an unknown line or a bad number is an error.

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// The first line of every cursor text: the format and its version.
pub const CURSOR_HEADER: &str = "imap-cursor 2";

/// The first line of a cursor written before the keyword UIDs were kept.
const CURSOR_HEADER_V1: &str = "imap-cursor 1";

/// Where the reading of one folder stands.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct FolderCursor {
    /// The RFC 8474 MAILBOXID seen at the last read, when the server has one.
    pub mailbox_id: Option<String>,
    /// The folder's UIDVALIDITY at the last read: UIDs are only comparable under the same one.
    pub uidvalidity: u32,
    /// The folder's UIDNEXT at the last read: every message read had a smaller UID.
    pub uidnext: u32,
    /// The folder's HIGHESTMODSEQ at the last read (CONDSTORE), for keyword changes.
    pub highestmodseq: Option<u64>,
    /// The UIDs of the messages that carried the tracking keyword at the last read: a keyword
    /// change is reported for these (removed) and for the others that gain it (added).
    pub tracked: std::collections::BTreeSet<u32>,
}

/// Where the reading of every tracked folder stands, by folder name.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ImapCursor {
    /// One entry per folder read at least once.
    pub folders: BTreeMap<String, FolderCursor>,
}

/// Why a cursor text could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CursorError {
    /// The 1-based line at fault (0: the text as a whole).
    pub line: usize,
    /// What is wrong with it.
    pub message: String,
}

impl std::fmt::Display for CursorError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "IMAP cursor, line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for CursorError {}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '%' => out.push_str("%25"),
            ' ' => out.push_str("%20"),
            '\r' => out.push_str("%0D"),
            '\n' => out.push_str("%0A"),
            c => out.push(c),
        }
    }
    out
}

fn unescape(field: &str) -> Option<String> {
    let mut out = String::with_capacity(field.len());
    let mut rest = field;
    while let Some(at) = rest.find('%') {
        out.push_str(&rest[..at]);
        let code = rest.get(at + 1..at + 3)?;
        out.push(match code {
            "25" => '%',
            "20" => ' ',
            "0D" => '\r',
            "0A" => '\n',
            _ => return None,
        });
        rest = &rest[at + 3..];
    }
    out.push_str(rest);
    Some(out)
}

impl ImapCursor {
    /// The cursor as text (see the module doc); [`ImapCursor::from_text`] reads it back.
    pub fn to_text(&self) -> String {
        let mut out = String::from(CURSOR_HEADER);
        out.push('\n');
        for (name, f) in &self.folders {
            let modseq = f.highestmodseq.map_or("-".to_string(), |m| m.to_string());
            let id = f
                .mailbox_id
                .as_deref()
                .map_or("-".to_string(), |id| format!("={}", escape(id)));
            let tracked = if f.tracked.is_empty() {
                "-".to_string()
            } else {
                let uids: Vec<String> = f.tracked.iter().map(u32::to_string).collect();
                format!("k={}", uids.join(","))
            };
            let _ = writeln!(
                out,
                "folder {} {} {} {modseq} {id} {tracked}",
                escape(name),
                f.uidvalidity,
                f.uidnext
            );
        }
        out
    }

    /// Reads a text written by [`ImapCursor::to_text`]; anything else is an error, never a
    /// panic.
    pub fn from_text(text: &str) -> Result<ImapCursor, CursorError> {
        let err = |line: usize, message: String| CursorError { line, message };
        let mut lines = text.lines().enumerate();
        let v1 = match lines.next() {
            Some((_, first)) if first == CURSOR_HEADER => false,
            Some((_, first)) if first == CURSOR_HEADER_V1 => true,
            Some((_, first)) => {
                return Err(err(
                    1,
                    format!(
                        "expected `{CURSOR_HEADER}`, found `{}`",
                        first.escape_debug()
                    ),
                ));
            }
            None => return Err(err(0, "the text is empty".into())),
        };
        let mut cursor = ImapCursor::default();
        for (i, line) in lines {
            let n = i + 1;
            let fields: Vec<&str> = line.split(' ').collect();
            let (kind, name, uidvalidity, uidnext, modseq, id, keyworded) = match (v1, &fields[..])
            {
                (true, [k, n, v, x, m, i]) => (*k, *n, *v, *x, *m, *i, "-"),
                (false, [k, n, v, x, m, i, t]) => (*k, *n, *v, *x, *m, *i, *t),
                (true, _) => return Err(err(n, "expected `folder` and five fields".into())),
                (false, _) => return Err(err(n, "expected `folder` and six fields".into())),
            };
            if kind != "folder" {
                return Err(err(n, format!("unknown line `{}`", kind.escape_debug())));
            }
            let name = unescape(name).ok_or_else(|| err(n, "bad escape in the name".into()))?;
            let number = |field: &str, what: &str| {
                field.parse::<u32>().map_err(|_| {
                    err(
                        n,
                        format!("{what} `{}` is not a number", field.escape_debug()),
                    )
                })
            };
            let uidvalidity = number(uidvalidity, "UIDVALIDITY")?;
            let uidnext = number(uidnext, "UIDNEXT")?;
            let highestmodseq = match modseq {
                "-" => None,
                m => Some(m.parse::<u64>().map_err(|_| {
                    err(
                        n,
                        format!("HIGHESTMODSEQ `{}` is not a number", m.escape_debug()),
                    )
                })?),
            };
            let mailbox_id = match id {
                "-" => None,
                id => match id.strip_prefix('=').and_then(unescape) {
                    Some(id) => Some(id),
                    None => return Err(err(n, "the MAILBOXID must be `-` or `=<id>`".into())),
                },
            };
            let tracked = match keyworded {
                "-" => std::collections::BTreeSet::new(),
                t => match t.strip_prefix("k=") {
                    Some(list) => list
                        .split(',')
                        .map(|u| number(u, "a keyword UID"))
                        .collect::<Result<_, _>>()?,
                    None => {
                        return Err(err(n, "the keyword UIDs must be `-` or `k=<uid>,…`".into()));
                    }
                },
            };
            let folder = FolderCursor {
                mailbox_id,
                uidvalidity,
                uidnext,
                highestmodseq,
                tracked,
            };
            if cursor.folders.insert(name.clone(), folder).is_some() {
                return Err(err(
                    n,
                    format!("folder `{}` is named twice", name.escape_debug()),
                ));
            }
        }
        Ok(cursor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_round_trip() {
        for s in ["", "a b", "50%", "x\r\ny", "%20", "INBOX/Kunden Ä"] {
            assert_eq!(unescape(&escape(s)).as_deref(), Some(s));
        }
        assert_eq!(unescape("%2"), None);
        assert_eq!(unescape("%zz"), None);
    }

    #[test]
    fn reads_what_the_module_doc_shows() {
        let text = "imap-cursor 2\nfolder INBOX 1796596752 42 117 - k=7,31\n\
                    folder INBOX/Customers 1796596753 7 - =F2b0c1 -\n";
        let c = ImapCursor::from_text(text).unwrap();
        assert_eq!(c.folders["INBOX"].highestmodseq, Some(117));
        assert_eq!(
            c.folders["INBOX/Customers"].mailbox_id.as_deref(),
            Some("F2b0c1")
        );
        assert_eq!(c.folders["INBOX"].tracked, [7, 31].into());
        assert_eq!(c.to_text(), text);
    }

    #[test]
    fn a_version_1_cursor_reads_with_no_keyword_uids() {
        let text = "imap-cursor 1\nfolder INBOX 1796596752 42 117 -\n";
        let c = ImapCursor::from_text(text).unwrap();
        assert_eq!(c.folders["INBOX"].uidnext, 42);
        assert!(c.folders["INBOX"].tracked.is_empty());
        assert!(
            ImapCursor::from_text("imap-cursor 2\nfolder INBOX 1 2 - -\n").is_err(),
            "version 2 has seven fields"
        );
    }
}
