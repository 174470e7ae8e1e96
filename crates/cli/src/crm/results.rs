//! Result lines in `crm apply`: the CRM's answers to CRM commands (`docs/crm-commands.md`),
//! checked with the changes of the same file (all or nothing) and recorded in the mailbox of
//! their key, in the order of the file.

use super::per_mailbox;
use ledgersync_domain::crm::{CommandResult, ResultStatus};
use ledgersync_domain::{Limits, OrgState};
use ledgersync_engine::Settled;
use ledgersync_engine::describe::describe;
use ledgersync_engine::ingress::{LineError, RESULT_KIND, ResultLine, Split, split_results};
use ledgersync_engine::settle::settlement;
use ledgersync_engine::{Engine, EngineError};
use serde_json::{Value, json};

/// Takes the result lines out of `text` and checks them: by themselves and against `org`
/// (`ingress::split_results`), then against the state of their key's mailbox in `engine`
/// (`None`: no journal yet), where a result that contradicts its command is a bad line naming
/// the field. A file without result lines is returned whole.
pub fn split(text: &str, org: &OrgState, engine: Option<&Engine>, limits: &Limits) -> Split {
    if !text.contains(RESULT_KIND) {
        return Split {
            changes: text.to_string(),
            ..Split::default()
        };
    }
    let mut split = split_results(text, org, limits);
    let Some(engine) = engine else {
        return split;
    };
    let mut kept = Vec::with_capacity(split.results.len());
    for r in split.results {
        match settlement(engine.mailbox(&r.result.key.mailbox), &r.result) {
            Ok(_) => kept.push(r),
            Err(EngineError::InvalidField { field, message }) => split.errors.push(LineError {
                line: r.line,
                field: Some(field),
                message,
            }),
            Err(e) => split.errors.push(LineError {
                line: r.line,
                field: None,
                message: e.to_string(),
            }),
        }
    }
    split.results = kept;
    split
}

/// The result's status in words ("done: row apt-42 version 1").
fn status_text(result: &CommandResult) -> String {
    match &result.status {
        ResultStatus::Done { record, version } => format!("done: row {record} version {version}"),
        ResultStatus::Failed {
            reason, retryable, ..
        } => format!(
            "failed ({}): {reason}",
            if *retryable {
                "retryable"
            } else {
                "not retryable"
            }
        ),
    }
}

/// What one applied result line did, as JSON (like a change's report: the text form is
/// rendered from it).
pub fn report(line: &ResultLine, settled: &Settled) -> Value {
    let key = line.result.key.to_string();
    match settled {
        Settled::Recorded {
            event, processed, ..
        } => {
            let mut mailboxes = per_mailbox(processed, None);
            for m in &mut mailboxes {
                if m["summary"] == "nothing" {
                    m["summary"] = json!("recorded as the command's outcome");
                }
            }
            json!({
                "line": line.line,
                "kind": RESULT_KIND,
                "key": key,
                "event_id": Value::Null,
                "description": describe(event),
                "already_recorded": Value::Null,
                "mailboxes": mailboxes,
            })
        }
        Settled::Acknowledged(why) => json!({
            "line": line.line,
            "kind": RESULT_KIND,
            "key": key,
            "event_id": Value::Null,
            "description": format!("CRM result for command {key}: {}", status_text(&line.result)),
            "already_recorded": why.reason(),
            "mailboxes": [],
        }),
    }
}
