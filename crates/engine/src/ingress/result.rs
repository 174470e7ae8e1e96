//! Result lines: the CRM's answer to a CRM command, a line kind of its own (`command_result`) in
//! the same JSON-lines files as the CRM changes (`docs/crm-commands.md`).
//!
//! ```json
//! {"kind": "command_result", "key": "mbx-jayne/01934f6a-…", "status": "done", "record": "apt-42", "version": 1}
//! {"kind": "command_result", "key": "mbx-jayne/01934f6a-…", "status": "failed", "retryable": true, "reason": "CRM in maintenance"}
//! ```
//!
//! [`split_results`] takes the result lines out of a file (leaving blank lines in their place,
//! so the change lines keep their numbers) and checks each by itself and against the
//! organization: the shape of the line and of its key, and that the key's mailbox is
//! registered. Whether the key names an open command, and whether the result fits it, is the
//! domain's to say (`ledgersync_domain::crm::settle`), on the mailbox's state.

use super::{LineError, Problem, oversized, parse_time, take_tag, wire};
use ledgersync_domain::crm::{CommandKey, CommandResult, ResultStatus};
use ledgersync_domain::{Limits, OrgState, RecordId};
use serde::Deserialize;
use serde_json::Value;

/// The `"kind"` of a result line.
pub const RESULT_KIND: &str = "command_result";

/// One valid result line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResultLine {
    /// 1-based line number.
    pub line: usize,
    /// The result.
    pub result: CommandResult,
}

/// A file split into its change lines and its result lines.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Split {
    /// The text of the change lines, with a blank line in place of each result line (so
    /// `parse_changes` numbers the lines as the file does).
    pub changes: String,
    /// The valid result lines, in order.
    pub results: Vec<ResultLine>,
    /// The bad result lines.
    pub errors: Vec<LineError>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ResultWire {
    key: String,
    status: StatusWire,
    record: Option<String>,
    version: Option<u64>,
    reason: Option<String>,
    code: Option<String>,
    retryable: Option<bool>,
    retry_after: Option<String>,
}

#[derive(Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum StatusWire {
    Done,
    Failed,
}

/// Whether `text` (one line) is a result line: a JSON object whose `"kind"` is
/// [`RESULT_KIND`]. A line that is not JSON is left to the change parser, which names it.
fn is_result_line(text: &str) -> bool {
    let trimmed = text.trim_start();
    trimmed.starts_with('{')
        && trimmed.contains(RESULT_KIND)
        && serde_json::from_str::<Value>(text)
            .is_ok_and(|v| v.get("kind").and_then(Value::as_str) == Some(RESULT_KIND))
}

/// Takes the result lines out of `text` and checks each against `org` (see the module doc).
pub fn split_results(text: &str, org: &OrgState, limits: &Limits) -> Split {
    let mut split = Split::default();
    for (i, raw) in text.lines().enumerate() {
        if !is_result_line(raw) {
            split.changes.push_str(raw);
            split.changes.push('\n');
            continue;
        }
        split.changes.push('\n');
        let line = i + 1;
        match parse_result_within(raw, org, limits) {
            Ok(result) => split.results.push(ResultLine { line, result }),
            Err(p) => split.errors.push(LineError {
                line,
                field: p.field,
                message: p.message,
            }),
        }
    }
    split
}

/// Maps one result line, checking its key against the mailboxes of `org`.
pub fn parse_result_within(
    text: &str,
    org: &OrgState,
    limits: &Limits,
) -> Result<CommandResult, Problem> {
    if text.len() as u64 > limits.max_line_bytes {
        return Err(Problem::line(format!(
            "the line is {} bytes, more than the limit of {} (max_line_bytes in the [limits] \
             table of the configuration); shorten its text fields or raise the limit",
            text.len(),
            limits.max_line_bytes
        )));
    }
    let Ok(Value::Object(mut map)) = serde_json::from_str::<Value>(text) else {
        return Err(Problem::line(
            "not a JSON object; each line must be one object with a \"kind\"",
        ));
    };
    for (key, v) in &map {
        oversized(v, key, key, limits)?;
    }
    take_tag(&mut map, "kind", &[RESULT_KIND], "")?;
    let w: ResultWire = wire(Value::Object(map), "")?;
    let key = CommandKey::parse(w.key.trim()).map_err(|e| Problem::at("key", e.to_string()))?;
    if !org.mailboxes.contains_key(&key.mailbox) {
        return Err(Problem::at(
            "key",
            format!(
                "names mailbox `{}`, which this organization has not registered; copy the key \
                 as `ledgersync crm pending` prints it",
                key.mailbox
            ),
        ));
    }
    let status = match w.status {
        StatusWire::Done => {
            refuse_given(
                &[
                    ("reason", w.reason.is_some()),
                    ("code", w.code.is_some()),
                    ("retryable", w.retryable.is_some()),
                    ("retry_after", w.retry_after.is_some()),
                ],
                "only a \"failed\" result has it; a \"done\" result gives \"record\" and \
                 \"version\"",
            )?;
            let record = match w.record {
                Some(r) if !r.trim().is_empty() => RecordId::new(r),
                Some(_) => return Err(Problem::at("record", "is empty; give the CRM row id")),
                None => {
                    return Err(Problem::at(
                        "record",
                        "missing; a \"done\" result names the CRM row (for a track_* command, \
                         the id of the row the CRM created)",
                    ));
                }
            };
            let version = match w.version {
                Some(v) if v >= 1 => v,
                Some(_) => {
                    return Err(Problem::at(
                        "version",
                        "must be at least 1 (the row version the CRM holds after the command)",
                    ));
                }
                None => {
                    return Err(Problem::at(
                        "version",
                        "missing; a \"done\" result gives the row version the CRM holds after \
                         the command (for a delete, the version deleted)",
                    ));
                }
            };
            ResultStatus::Done { record, version }
        }
        StatusWire::Failed => {
            refuse_given(
                &[
                    ("record", w.record.is_some()),
                    ("version", w.version.is_some()),
                ],
                "only a \"done\" result has it; a \"failed\" result gives \"reason\" and \
                 \"retryable\"",
            )?;
            let reason = match w.reason {
                Some(r) if !r.trim().is_empty() => r,
                Some(_) => return Err(Problem::at("reason", "is empty; say why it failed")),
                None => {
                    return Err(Problem::at(
                        "reason",
                        "missing; a \"failed\" result says why, for the people who read it",
                    ));
                }
            };
            let Some(retryable) = w.retryable else {
                return Err(Problem::at(
                    "retryable",
                    "missing; say whether the same command may be tried again (true) or is \
                     refused for good (false)",
                ));
            };
            let retry_after = w
                .retry_after
                .as_deref()
                .map(|t| {
                    parse_time(t).ok_or_else(|| {
                        Problem::at(
                            "retry_after",
                            format!(
                                "\"{t}\" is not an RFC 3339 time (expected e.g. \
                                 \"2026-12-01T09:30:00Z\")"
                            ),
                        )
                    })
                })
                .transpose()?;
            if retry_after.is_some() && !retryable {
                return Err(Problem::at(
                    "retry_after",
                    "a command refused for good (\"retryable\": false) is not tried again; \
                     leave retry_after out or set \"retryable\": true",
                ));
            }
            ResultStatus::Failed {
                reason,
                code: w.code.filter(|c| !c.trim().is_empty()),
                retryable,
                retry_after,
            }
        }
    };
    Ok(CommandResult { key, status })
}

/// The first of `fields` that is given, refused with `why`: a field of the other status.
fn refuse_given(fields: &[(&'static str, bool)], why: &str) -> Result<(), Problem> {
    match fields.iter().find(|(_, given)| *given) {
        Some((field, _)) => Err(Problem::at(*field, why)),
        None => Ok(()),
    }
}
