//! `ledgersync mailbox list|show|approve|approve-deletes|test-enable|enable|disable`: the
//! mailbox lifecycle on the embedded journal. `list` and `show` read the mailbox states; the
//! others record a lifecycle observation (`address_approved`, `deletes_approved`,
//! `mailbox_tested`, `disable_requested`) through the
//! organization stream, exactly as a `crm apply` line would, and print what was decided.

use crate::crm::per_mailbox;
use crate::ctx::{Ctx, Recorder};
use anyhow::{Result, bail};
use ledgersync_domain::crm::CommandKey;
use ledgersync_domain::event::{
    AddressApproved, DeletesApproved, DisableReason, DisableRequested, MailboxTested, TestResult,
    Workload,
};
use ledgersync_domain::state::{IntentKind, LinkStatus, WorkloadState};
use ledgersync_domain::{Event, MailboxId, MailboxState, OrgId, Timestamp};
use ledgersync_engine::Engine;
use ledgersync_engine::describe::describe;
use serde_json::{Value, json};
use std::fmt::Write as _;
use std::process::ExitCode;

/// What `mailbox` was asked to do.
#[derive(Debug, Clone)]
pub enum Action {
    /// Every mailbox with its workloads.
    List,
    /// One mailbox with its links and pending intents.
    Show(String),
    /// Approve (or withdraw the approval of) the address.
    Approve { mailbox: String, withdraw: bool },
    /// Approve the deletes the delete breaker holds (R25).
    ApproveDeletes { mailbox: String },
    /// Record a Test & Enable result.
    Test {
        mailbox: String,
        fail: Vec<Workload>,
        act_org: Option<String>,
        override_other_org: bool,
        /// Connect to the mailbox's server when the configuration has its `[[mailbox]]` table
        /// (`test-enable` without `--fail` or `--act-org`); else record the results as given.
        connect: bool,
    },
    /// Run one cycle of the mailbox now.
    Sync(String),
    /// Ask to disable workloads.
    Disable {
        mailbox: String,
        workload: Option<Workload>,
    },
}

pub fn run(ctx: &mut Ctx, action: Action) -> Result<ExitCode> {
    if let Action::Sync(mailbox) = action {
        return sync(ctx, &mailbox);
    }
    let mut recorder = ctx.recorder(false)?;
    let json = ctx.json;
    let config = ctx.config;
    let data = ctx.data_dir()?;
    let out = &mut *ctx.out;
    match action {
        Action::List => {
            let engine = recorder.engine()?;
            let journal = journal_health(engine.journal().commit_stats());
            let all: Vec<Value> = engine
                .org()
                .mailboxes
                .keys()
                .map(|m| {
                    let mut v = mailbox_json(engine, m, false);
                    v["journal"] = journal.clone();
                    v
                })
                .collect();
            if !json && let Some(line) = journal_line(&journal) {
                writeln!(out, "{line}")?;
            }
            if json {
                writeln!(out, "{}", serde_json::to_string_pretty(&all)?)?;
            } else if all.is_empty() {
                writeln!(
                    out,
                    "no mailboxes; register them with `ledgersync crm apply` (mailbox_registered)"
                )?;
            } else {
                for m in &all {
                    write!(out, "{}", render_mailbox(m))?;
                }
            }
        }
        Action::Show(m) => {
            let engine = recorder.engine()?;
            let id = known(engine, &m)?;
            let v = mailbox_json(engine, &id, true);
            if json {
                writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
            } else {
                write!(out, "{}", render_mailbox(&v))?;
                write!(out, "{}", render_details(&v))?;
            }
        }
        Action::Approve { mailbox, withdraw } => {
            let id = known(recorder.engine()?, &mailbox)?;
            let event = Event::AddressApproved(AddressApproved {
                mailbox: id.clone(),
                approved: !withdraw,
            });
            record(&mut recorder, out, &id, vec![event], json)?;
        }
        Action::ApproveDeletes { mailbox } => {
            let id = known(recorder.engine()?, &mailbox)?;
            let event = Event::DeletesApproved(DeletesApproved {
                mailbox: id.clone(),
                by: "administrator".into(),
            });
            record(&mut recorder, out, &id, vec![event], json)?;
        }
        Action::Test {
            mailbox,
            fail,
            act_org,
            override_other_org,
            connect,
        } => {
            let id = known(recorder.engine()?, &mailbox)?;
            let configured = config.mailboxes.iter().find(|m| m.id == mailbox);
            let (results, connection) = match configured.filter(|_| connect) {
                Some(m) => {
                    let address = recorder.engine()?.org().mailboxes[&id].address.clone();
                    let (results, connection) =
                        test_connections(m, config, &data, &address, json, out)?;
                    (results, Some(connection))
                }
                None => {
                    let result = |w| {
                        if fail.contains(&w) {
                            TestResult::Failure
                        } else {
                            TestResult::Success
                        }
                    };
                    (
                        [
                            result(Workload::Incoming),
                            result(Workload::Outgoing),
                            result(Workload::Act),
                        ],
                        None,
                    )
                }
            };
            let [incoming, outgoing, act] = results;
            let event = Event::MailboxTested(MailboxTested {
                mailbox: id.clone(),
                incoming,
                outgoing,
                act,
                act_org_marker: act_org.map(OrgId::new),
                override_other_org,
            });
            record_with(&mut recorder, out, &id, vec![event], json, connection)?;
        }
        Action::Sync(_) => unreachable!("handled before the journal is opened"),
        Action::Disable { mailbox, workload } => {
            let id = known(recorder.engine()?, &mailbox)?;
            let workloads = match workload {
                Some(w) => vec![w],
                None => Workload::ALL.to_vec(),
            };
            let events = workloads
                .into_iter()
                .map(|workload| {
                    Event::DisableRequested(DisableRequested {
                        mailbox: id.clone(),
                        workload,
                        by: "administrator".into(),
                    })
                })
                .collect();
            record(&mut recorder, out, &id, events, json)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Parses `incoming,outgoing,act` (also `ACT`, spaces allowed).
pub fn parse_workloads(text: &str) -> Result<Vec<Workload>> {
    text.split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| parse_workload(s.trim()))
        .collect()
}

/// Parses one workload name.
pub fn parse_workload(text: &str) -> Result<Workload> {
    Ok(match text.to_ascii_lowercase().as_str() {
        "incoming" => Workload::Incoming,
        "outgoing" => Workload::Outgoing,
        "act" => Workload::Act,
        other => bail!("unknown workload `{other}`; allowed values: incoming, outgoing, act"),
    })
}

/// `mailbox sync M`: one cycle now. In a running service, a push of the mailbox (the service
/// runs it at once); else the service is started for this mailbox alone, runs it and stops.
fn sync(ctx: &mut Ctx, mailbox: &str) -> Result<ExitCode> {
    if let Some(live) = ctx.live {
        // The workload its configuration runs (a mailbox unknown to it: ACT).
        let workload = ctx
            .config
            .mailboxes
            .iter()
            .find(|m| m.id == mailbox)
            .map_or(Workload::Act, |m| crate::serve::workload_of(m, ctx.config));
        live.service.push(MailboxId::new(mailbox), workload);
        if ctx.json {
            writeln!(ctx.out, "{}", json!({"mailbox": mailbox, "pushed": true}))?;
        } else {
            writeln!(
                ctx.out,
                "`{mailbox}` pushed: the running service syncs it now; `ledgersync mailbox show \
                 {mailbox}` shows the cycle's result"
            )?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let started = std::time::Instant::now();
    let r = crate::serve::sync_once(&ctx.data_dir()?, ctx.config, mailbox)?;
    let seconds = started.elapsed().as_secs_f64();
    if ctx.json {
        writeln!(
            ctx.out,
            "{}",
            json!({
                "mailbox": mailbox,
                "listing": r.terminal,
                "reason": r.reason,
                "seen": r.seen,
                "gone": r.gone,
                "unreadable": r.failures,
                "intents_executed": r.executed,
                "intents_succeeded": r.succeeded,
                "decisions": r.decisions,
                "seconds": seconds,
            })
        )?;
    } else {
        writeln!(
            ctx.out,
            "{mailbox}: {} in {seconds:.2} s: {} item(s) seen, {} gone, {} unreadable; {} \
             intent(s) carried out ({} succeeded); {} decision(s) recorded",
            r.terminal.replace('_', " "),
            r.seen,
            r.gone,
            r.failures.len(),
            r.executed,
            r.succeeded,
            r.decisions
        )?;
        if let Some(reason) = &r.reason {
            writeln!(ctx.out, "  {reason}")?;
        }
        for f in &r.failures {
            writeln!(ctx.out, "  unreadable: {f}")?;
        }
    }
    Ok(if r.terminal == "listing_failed" {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

fn known(engine: &Engine, m: &str) -> Result<MailboxId> {
    let id = MailboxId::new(m);
    if engine.org().mailboxes.contains_key(&id) {
        return Ok(id);
    }
    let names: Vec<&str> = engine
        .org()
        .mailboxes
        .keys()
        .map(MailboxId::as_str)
        .collect();
    bail!(
        "unknown mailbox `{m}`; this organization has: {}",
        if names.is_empty() {
            "none (register one with `ledgersync crm apply`)".to_string()
        } else {
            names.join(", ")
        }
    )
}

fn record(
    recorder: &mut Recorder,
    out: &mut dyn std::io::Write,
    id: &MailboxId,
    events: Vec<Event>,
    json: bool,
) -> Result<()> {
    record_with(recorder, out, id, events, json, None)
}

/// Test & Enable against the servers (R6): builds each connector the configuration gives the
/// mailbox (ACT for vdir and CalDAV; incoming email for IMAP and POP3, and outgoing email when
/// the profile names an SMTP server) and asks it to connect, authenticate and find what it
/// works on. Each workload succeeds or fails with its connector; the others are not run.
/// Prints the results (text mode) and returns them with the JSON answer: `connection` is the
/// mailbox's main connector, `connections` every one.
fn test_connections(
    m: &crate::config::MailboxConfig,
    config: &crate::config::Config,
    data: &std::path::Path,
    address: &str,
    json: bool,
    out: &mut dyn std::io::Write,
) -> Result<([TestResult; 3], Value)> {
    let mut results = [TestResult::NotRun; 3];
    let mut connections = Vec::new();
    for connector in crate::serve::connector_configs(m, config, data)? {
        let connector = connector.with_owner(address);
        let kind = connector.kind();
        let workload = connector.workload();
        let name = workload_name(workload);
        let answer = connector.build().test_connection();
        let (result, connection) = match &answer {
            Ok(found) => (
                TestResult::Success,
                json!({"connector": kind, name: "success", "detail": found}),
            ),
            Err(e) => (
                TestResult::Failure,
                json!({"connector": kind, name: "failure", "code": e.code, "detail": e.message}),
            ),
        };
        results[workload.index()] = result;
        connections.push(connection);
        if !json {
            match &answer {
                Ok(found) => writeln!(
                    out,
                    "{kind} connection of `{}`: {name} succeeded: {found}",
                    m.id
                )?,
                Err(e) => writeln!(
                    out,
                    "{kind} connection of `{}`: {name} failed ({}): {}",
                    m.id, e.code, e.message
                )?,
            }
        }
    }
    if !json {
        let others: Vec<&str> = Workload::ALL
            .into_iter()
            .filter(|w| results[w.index()] == TestResult::NotRun)
            .map(workload_name)
            .collect();
        if !others.is_empty() {
            writeln!(
                out,
                "  {}: not run ({})",
                others.join(", "),
                if results[Workload::Act.index()] == TestResult::NotRun {
                    "an IMAP/SMTP or POP3/SMTP profile runs email only (R4); outgoing email \
                     needs the profile's [profiles.<id>.smtp] server"
                } else {
                    "email workloads need an IMAP/SMTP or POP3/SMTP profile"
                }
            )?;
        }
    }
    let mut connection = connections.first().cloned().unwrap_or_else(|| json!({}));
    connection["connections"] = Value::Array(connections);
    Ok((results, connection))
}

fn record_with(
    recorder: &mut Recorder,
    out: &mut dyn std::io::Write,
    id: &MailboxId,
    events: Vec<Event>,
    json: bool,
    connection: Option<Value>,
) -> Result<()> {
    let mut observed = Vec::new();
    for event in events {
        let text = describe(&event);
        let processed = recorder.crm(event)?;
        let mailboxes = per_mailbox(&processed, None);
        observed.push(json!({
            "event_id": processed.org_event.map(|e| e.to_string()),
            "observation": text,
            "mailboxes": mailboxes,
        }));
    }
    let after = mailbox_json(recorder.engine()?, id, false);
    if json {
        writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&json!({
                "recorded": observed,
                "mailbox": after,
                "connection": connection,
            }))?
        )?;
        return Ok(());
    }
    for o in &observed {
        writeln!(out, "{}", o["observation"].as_str().unwrap_or_default())?;
        let mut any = false;
        for m in o["mailboxes"].as_array().into_iter().flatten() {
            for d in m["decisions"].as_array().into_iter().flatten() {
                any = true;
                writeln!(
                    out,
                    "  {:<4} {} in {}: {}",
                    d["rule"].as_str().unwrap_or_default(),
                    d["type"].as_str().unwrap_or_default().replace('_', " "),
                    m["mailbox"].as_str().unwrap_or_default(),
                    d["reason"].as_str().unwrap_or_default()
                )?;
            }
        }
        if !any {
            writeln!(out, "  no decision: nothing changes")?;
        }
    }
    write!(out, "{}", render_mailbox(&after))?;
    Ok(())
}

// ───────────────────────────── JSON view of a mailbox ─────────────────────────────

pub(crate) fn rfc3339(t: Timestamp) -> String {
    chrono::DateTime::from_timestamp_millis(t.0)
        .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_else(|| t.to_string())
}

fn reason_name(r: &DisableReason) -> &'static str {
    match r {
        DisableReason::PermanentError => "permanent_error",
        DisableReason::TransientLimit => "transient_limit",
        DisableReason::TestFailed => "test_failed",
        DisableReason::NotApproved => "not_approved",
        DisableReason::OtherOrganization => "other_organization",
        DisableReason::Remapped => "remapped",
        DisableReason::Administrator => "administrator",
        DisableReason::Unsupported => "unsupported",
    }
}

fn test_name(t: TestResult) -> &'static str {
    match t {
        TestResult::NotRun => "not_run",
        TestResult::Success => "success",
        TestResult::Failure => "failure",
    }
}

fn workload_name(w: Workload) -> &'static str {
    match w {
        Workload::Incoming => "incoming",
        Workload::Outgoing => "outgoing",
        Workload::Act => "act",
    }
}

/// The items of a mailbox that failed (R12, R79): pending intents retried after a transient
/// failure, and intents given up (a permanent error, or the retry limit reached).
fn item_errors(state: &MailboxState) -> Vec<Value> {
    let retrying = state
        .intents
        .iter()
        .filter(|(_, i)| i.failures > 0)
        .map(|(id, i)| {
            json!({
                "intent": id.to_string(),
                "status": "retrying",
                "kind": intent_kind(i.kind),
                "record": i.record.as_str(),
                "remote": i.remote.as_ref().map(|r| r.as_str()),
                "target": if i.to_crm { "crm" } else { "mail_server" },
                "attempts": i.failures,
                "error": i.last_error.as_ref().map(|e| json!({"code": e.code, "message": e.message})),
                "at": i.last_failed.map(rfc3339),
                "next_attempt": i.retry_at.map(rfc3339),
            })
        });
    let given_up = state.failed_intents.iter().map(|(id, f)| {
        json!({
            "intent": id.to_string(),
            "status": "given_up",
            "kind": intent_kind(f.kind),
            "record": f.record.as_str(),
            "remote": f.remote.as_ref().map(|r| r.as_str()),
            "target": if f.to_crm { "crm" } else { "mail_server" },
            "attempts": f.attempts,
            "error": json!({"code": f.error.code, "message": f.error.message}),
            "at": rfc3339(f.at),
            "next_attempt": Value::Null,
        })
    });
    retrying.chain(given_up).collect()
}

/// How many items of workload `w` are failing: pending intents that failed (item errors are
/// the ACT workload's) and intents given up.
fn item_error_count(state: &MailboxState, w: Workload) -> usize {
    let retrying = if w == Workload::Act {
        state.intents.values().filter(|i| i.failures > 0).count()
    } else {
        0
    };
    retrying
        + state
            .failed_intents
            .values()
            .filter(|f| f.workload == w)
            .count()
}

fn workload_json(w: &WorkloadState) -> Value {
    let status = if w.enabled {
        "enabled"
    } else if w.disabled_reason.is_some() {
        "disabled"
    } else {
        "not_enabled"
    };
    json!({
        "status": status,
        "enabled": w.enabled,
        "disabled_reason": w.disabled_reason.as_ref().map(reason_name),
        "test": w.test.map(test_name),
        "consecutive_errors": w.consecutive_errors,
        "last_error": w.last_error.as_ref().map(|e| json!({"code": e.code, "message": e.message})),
        "last_success": w.last_success.map(rfc3339),
        "next_run": w.next_run.map(rfc3339),
    })
}

fn mailbox_json(engine: &Engine, id: &MailboxId, details: bool) -> Value {
    let info = engine.org().mailboxes.get(id);
    let empty = MailboxState::default();
    let state = engine.mailbox(id).unwrap_or(&empty);
    let mut v = json!({
        "mailbox": id.as_str(),
        "user": info.and_then(|i| i.owner.as_ref()).map(|u| u.as_str()),
        "address": info.map(|i| i.address.as_str()).unwrap_or(state.address.as_str()),
        "profile": info.map(|i| i.profile.as_str()),
        "approved": state.approved,
        "workloads": Workload::ALL.iter().map(|w| {
            let mut v = workload_json(state.workload(*w));
            v["item_errors"] = json!(item_error_count(state, *w));
            (workload_name(*w).to_string(), v)
        }).collect::<serde_json::Map<_, _>>(),
        "item_errors": item_errors(state),
        "delete_breaker": state.breaker.as_ref().map(|b| json!({
            "workload": workload_name(b.workload),
            "deletes": b.deletes,
            "since": rfc3339(b.since),
            "held": b.held.iter().map(|r| r.as_str()).collect::<Vec<_>>(),
            "reason": b.reason,
        })),
    });
    if details {
        let links: Vec<Value> = state
            .links
            .iter()
            .map(|(record, link)| {
                json!({
                    "record": record.as_str(),
                    // A row created from a server item the CRM has not sent yet: the item's.
                    "title": state
                        .records
                        .get(record)
                        .unwrap_or(&link.synced)
                        .title()
                        .to_string(),
                    "remote": link.remote.as_ref().map(|r| r.as_str()),
                    "status": link_status(link.status),
                })
            })
            .collect();
        let intents: Vec<Value> = state
            .intents
            .iter()
            .map(|(intent, i)| {
                json!({
                    "intent": intent.to_string(),
                    "kind": intent_kind(i.kind),
                    "record": i.record.as_str(),
                    "remote": i.remote.as_ref().map(|r| r.as_str()),
                    "target": if i.to_crm { "crm" } else { "mail_server" },
                    // An intent for the CRM is a CRM command (`crm pending`), known by its key.
                    "command": i.command.as_ref().map(|c| c.command.name()),
                    "key": i
                        .command
                        .as_ref()
                        .map(|_| CommandKey::new(id.clone(), *intent).to_string()),
                    "attempts": i.failures,
                    "next_attempt": i.retry_at.map(rfc3339),
                })
            })
            .collect();
        let filters: Vec<Value> = state
            .filters
            .filters()
            .map(|f| json!({"id": f.id.as_str(), "name": f.name, "entity": f.entity.name(), "enabled": f.enabled, "expr": f.expr}))
            .collect();
        v["links"] = Value::Array(links);
        v["pending_intents"] = Value::Array(intents);
        v["filters"] = Value::Array(filters);
    }
    v
}

fn link_status(s: LinkStatus) -> &'static str {
    match s {
        LinkStatus::Creating => "creating",
        LinkStatus::Linked => "linked",
        LinkStatus::Deleting => "deleting",
        LinkStatus::Unlinked => "unlinked",
        LinkStatus::Deleted => "deleted",
    }
}

fn intent_kind(k: IntentKind) -> &'static str {
    match k {
        IntentKind::Create => "create",
        IntentKind::Update => "update",
        IntentKind::Delete => "delete",
        IntentKind::Cancel => "cancel",
    }
}

/// The write health of the journal every mailbox records into (the service's own when live):
/// a full disk or an I/O error fails every mailbox's writes until space is back.
pub fn journal_health(stats: ledgersync_journal::CommitStats) -> Value {
    json!({
        "writing": stats.failing_commits == 0,
        "failing_commits": stats.failing_commits,
        "failed_commits": stats.failed_commits,
    })
}

/// The line `mailbox list` and `alerts` print when the journal's writes fail or failed.
pub fn journal_line(health: &Value) -> Option<String> {
    let failing = health["failing_commits"].as_u64().unwrap_or(0);
    let failed = health["failed_commits"].as_u64().unwrap_or(0);
    if failing > 0 {
        Some(format!(
            "ERROR journal: the last {failing} writes failed (a full disk or an I/O error; see \
             the service log): nothing is recorded until they succeed again, which the journal \
             retries with every write once space is back (docs/journal-storage.md, Full disk)"
        ))
    } else if failed > 0 {
        Some(format!(
            "journal: {failed} writes failed since the service started; it writes again"
        ))
    } else {
        None
    }
}

// ───────────────────────────── text ─────────────────────────────

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or("-")
}

fn render_mailbox(m: &Value) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{}  user {}  {}  {}",
        s(&m["mailbox"]),
        s(&m["user"]),
        s(&m["address"]),
        if m["approved"].as_bool() == Some(true) {
            "approved"
        } else {
            "not approved"
        }
    );
    for w in ["incoming", "outgoing", "act"] {
        let wl = &m["workloads"][w];
        let mut status = s(&wl["status"]).replace('_', " ");
        if let Some(r) = wl["disabled_reason"].as_str() {
            let _ = write!(status, " ({})", r.replace('_', " "));
        }
        let mut line = format!(
            "  {w:<9} {status:<34} test {:<8} errors {}  item errors {}",
            s(&wl["test"]).replace('_', " "),
            wl["consecutive_errors"],
            wl["item_errors"]
        );
        if let Some(e) = wl["last_error"].as_object() {
            let _ = write!(
                line,
                "  last error {} {}",
                e["code"].as_str().unwrap_or_default(),
                e["message"].as_str().unwrap_or_default()
            );
        }
        if let Some(n) = wl["next_run"].as_str() {
            let _ = write!(line, "  next run {n}");
        }
        let _ = writeln!(out, "{line}");
    }
    if let Some(b) = m["delete_breaker"].as_object() {
        let _ = writeln!(
            out,
            "  delete breaker open since {}: {} ({} held)",
            b["since"].as_str().unwrap_or_default(),
            b["reason"].as_str().unwrap_or_default(),
            b["held"].as_array().map_or(0, |h| h.len())
        );
    }
    let errors = m["item_errors"].as_array().cloned().unwrap_or_default();
    if !errors.is_empty() {
        let _ = writeln!(out, "item errors ({}):", errors.len());
        for e in &errors {
            let mut line = format!(
                "  {:<8} {:<7} {} on the {}  {} attempt(s), last {} {} at {}",
                s(&e["status"]).replace('_', " "),
                s(&e["kind"]),
                s(&e["record"]),
                s(&e["target"]).replace('_', " "),
                e["attempts"],
                s(&e["error"]["code"]),
                s(&e["error"]["message"]),
                s(&e["at"]),
            );
            if let Some(n) = e["next_attempt"].as_str() {
                let _ = write!(line, "  next attempt {n}");
            }
            let _ = writeln!(out, "{line}");
        }
    }
    out
}

fn render_details(m: &Value) -> String {
    let mut out = String::new();
    let links = m["links"].as_array().cloned().unwrap_or_default();
    let _ = writeln!(out, "links ({}):", links.len());
    for l in &links {
        let _ = writeln!(
            out,
            "  {:<10} {} \"{}\" ↔ {}",
            s(&l["status"]),
            s(&l["record"]),
            s(&l["title"]),
            s(&l["remote"])
        );
    }
    let intents = m["pending_intents"].as_array().cloned().unwrap_or_default();
    let _ = writeln!(out, "pending intents ({}):", intents.len());
    for i in &intents {
        // An intent for the CRM waits for the CRM's result of its command, by key.
        let which = match i["key"].as_str() {
            Some(key) => format!("CRM command {} {key}", s(&i["command"])),
            None => format!("intent {}", s(&i["intent"])),
        };
        let _ = writeln!(
            out,
            "  {:<7} {} on the {} (remote {})  {which}",
            s(&i["kind"]),
            s(&i["record"]),
            s(&i["target"]).replace('_', " "),
            s(&i["remote"]),
        );
    }
    let filters = m["filters"].as_array().cloned().unwrap_or_default();
    let _ = writeln!(out, "sync filters ({}):", filters.len());
    for f in &filters {
        let _ = writeln!(
            out,
            "  {:<11} {} \"{}\"{}",
            s(&f["entity"]),
            s(&f["name"]),
            s(&f["expr"]),
            if f["enabled"].as_bool() == Some(true) {
                ""
            } else {
                " (disabled)"
            }
        );
    }
    out
}
