//! The read commands: replay, explain, what-if, events.

use crate::ctx::Ctx;
use crate::render;
use anyhow::{Context as _, Result, bail};
use indicatif::{ProgressBar, ProgressStyle};
use ledgersync_domain::{MailboxId, OrgSettings, StreamId};
use ledgersync_engine::log::{Stored, scan};
use ledgersync_journal::Journal;
use std::io::Write as _;
use std::process::ExitCode;

fn progress(ctx: &Ctx, journal: &dyn Journal, what: &str) -> Result<ProgressBar> {
    let total = journal.last_position()?;
    // Inside a running service the bar would draw on the service's terminal.
    let bar = if total >= 200_000 && ctx.live.is_none() {
        ProgressBar::new(total)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} events ({per_sec}, {eta} left)")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_message(what.to_string());
    Ok(bar)
}

pub fn replay(ctx: &mut Ctx, mailbox: Option<String>) -> Result<ExitCode> {
    let journal = ctx.journal()?;
    let only = mailbox.map(MailboxId::new);
    let bar = progress(ctx, journal.as_ref(), "replaying")?;
    let report = ledgersync_engine::replay(journal.as_ref(), only.as_ref(), |done, _| {
        bar.set_position(done)
    })?;
    bar.finish_and_clear();
    if ctx.json {
        writeln!(ctx.out, "{}", serde_json::to_string_pretty(&report)?)?;
    } else {
        write!(ctx.out, "{}", render::replay(&report))?;
    }
    Ok(if report.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

pub fn explain(ctx: &mut Ctx, item: &str) -> Result<ExitCode> {
    let journal = ctx.journal()?;
    let explanation = ledgersync_engine::explain(journal.as_ref(), item)?;
    if ctx.json {
        writeln!(ctx.out, "{}", serde_json::to_string_pretty(&explanation)?)?;
    } else {
        write!(ctx.out, "{}", render::explanation(&explanation))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Parses and validates `key=value` assignments against the settings catalogue.
pub fn parse_assignments(set: &[String]) -> Result<Vec<(String, String)>> {
    let mut probe = OrgSettings::default();
    set.iter()
        .map(|s| probe.apply_assignment(s).map_err(anyhow::Error::from))
        .collect()
}

pub fn what_if(ctx: &mut Ctx, set: &[String]) -> Result<ExitCode> {
    let overrides = parse_assignments(set)?;
    let journal = ctx.journal()?;
    let bar = progress(ctx, journal.as_ref(), "re-deciding")?;
    let report = ledgersync_engine::what_if(journal.as_ref(), &overrides, |done, _| {
        bar.set_position(done)
    })?;
    bar.finish_and_clear();
    if ctx.json {
        writeln!(ctx.out, "{}", serde_json::to_string_pretty(&report)?)?;
    } else {
        write!(ctx.out, "{}", render::what_if(&report))?;
    }
    Ok(ExitCode::SUCCESS)
}

pub fn events(
    ctx: &mut Ctx,
    mailbox: Option<String>,
    from: u64,
    limit: Option<usize>,
    follow: bool,
) -> Result<ExitCode> {
    let journal = ctx.journal()?;
    if follow {
        return follow_events(ctx, journal.as_ref(), mailbox, from, limit);
    }
    let json = ctx.json;
    let out = &mut *ctx.out;
    let mut printed = 0usize;
    let limit = limit.unwrap_or(usize::MAX);
    let mut emit = |s: Stored| -> Result<bool> {
        if printed >= limit {
            return Ok(false);
        }
        printed += 1;
        if json {
            writeln!(out, "{}", serde_json::to_string(&render::event_json(&s))?)?;
        } else {
            writeln!(out, "{}", render::event_line(&s))?;
        }
        Ok(true)
    };
    match mailbox {
        Some(m) => {
            let stream = StreamId::mailbox(&MailboxId::new(m.clone()));
            if journal.stream_head(&stream)? == 0 {
                bail!("mailbox `{m}` has no events in this journal");
            }
            let mut seq = 1;
            'outer: loop {
                let page = journal.read_stream(&stream, seq, 4096)?;
                if page.is_empty() {
                    break;
                }
                for env in page {
                    seq = env.seq + 1;
                    if env.position < from {
                        continue;
                    }
                    if !emit(Stored::decode(env)?)? {
                        break 'outer;
                    }
                }
            }
        }
        None => {
            let mut stop = false;
            let result = scan(
                journal.as_ref(),
                from,
                |_, _| {},
                |s| {
                    if stop {
                        return Ok(());
                    }
                    match emit(s) {
                        Ok(true) => Ok(()),
                        Ok(false) => {
                            stop = true;
                            Ok(())
                        }
                        Err(e) => Err(ledgersync_engine::EngineError::Invalid(e.to_string())),
                    }
                },
            );
            result?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// How often `events --follow` looks for new events once it has printed every one.
const FOLLOW_POLL: std::time::Duration = std::time::Duration::from_millis(200);

/// `events --follow`: every event from global position `from` in journal order (only
/// `mailbox`'s when given), then each new one as it is recorded, until `limit` events were
/// printed or the output is closed. Standard output is flushed whenever the journal is caught
/// up, so a reader sees each event as soon as it is recorded (within [`FOLLOW_POLL`]).
fn follow_events(
    ctx: &mut Ctx,
    journal: &dyn ledgersync_journal::Journal,
    mailbox: Option<String>,
    from: u64,
    limit: Option<usize>,
) -> Result<ExitCode> {
    let stream = mailbox.map(|m| StreamId::mailbox(&MailboxId::new(m)));
    let limit = limit.unwrap_or(usize::MAX);
    let mut printed = 0usize;
    let mut next = from.max(1);
    while printed < limit {
        let page = journal.read_all(next, ledgersync_engine::log::PAGE)?;
        if page.is_empty() {
            ctx.out.flush()?;
            std::thread::sleep(FOLLOW_POLL);
            continue;
        }
        for env in page {
            next = env.position + 1;
            if stream.as_ref().is_some_and(|s| *s != env.stream) {
                continue;
            }
            let s = Stored::decode(env)?;
            if ctx.json {
                writeln!(
                    ctx.out,
                    "{}",
                    serde_json::to_string(&render::event_json(&s))?
                )?;
            } else {
                writeln!(ctx.out, "{}", render::event_line(&s))?;
            }
            printed += 1;
            if printed >= limit {
                break;
            }
        }
    }
    ctx.out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// `journal check`: exit 0 intact, 1 damaged (every damaged place printed), 2 unopenable.
pub fn journal_check(data: Option<std::path::PathBuf>, json: bool) -> Result<ExitCode> {
    let data = data.context(
        "no data directory: pass --data DIR (or set LEDGERSYNC_DATA, or `data.dir` in the \
         configuration)",
    )?;
    let dir = crate::ctx::journal_dir(&data);
    let report = ledgersync_journal::check(&dir)
        .with_context(|| format!("checking the journal in {}", dir.display()))?;
    let mut out = std::io::stdout().lock();
    if json {
        let damaged: Vec<serde_json::Value> = report
            .damaged
            .iter()
            .map(|d| {
                serde_json::json!({
                    "position": d.position,
                    "stream": d.stream.as_ref().map(|s| s.as_str().to_string()),
                    "detail": d.detail,
                })
            })
            .collect();
        let value = serde_json::json!({
            "dir": report.dir.display().to_string(),
            "backend": report.backend.to_string(),
            "intact": report.is_clean(),
            "last_position": report.last_position,
            "last_good_position": report.last_good_position(),
            "records_ok": report.records_ok,
            "streams_ok": report.streams_ok,
            "storage": match &report.storage { Ok(s) | Err(s) => s.clone() },
            "storage_ok": report.storage.is_ok(),
            "damaged": damaged,
        });
        writeln!(out, "{value}")?;
    } else {
        writeln!(
            out,
            "journal {} ({}): positions 1..{}",
            report.dir.display(),
            report.backend,
            report.last_position
        )?;
        match &report.storage {
            Ok(s) => writeln!(out, "storage: ok ({s})")?,
            Err(s) => writeln!(out, "storage: DAMAGED: {s}")?,
        }
        writeln!(
            out,
            "records verified: {}; streams verified: {}",
            report.records_ok, report.streams_ok
        )?;
        for d in &report.damaged {
            match (&d.position, &d.stream) {
                (Some(p), _) => writeln!(out, "damaged: position {p}: {}", d.detail)?,
                (None, Some(s)) => writeln!(out, "damaged: stream {s}: {}", d.detail)?,
                (None, None) => writeln!(out, "damaged: {}", d.detail)?,
            }
        }
        if report.is_clean() {
            writeln!(out, "intact")?;
        } else {
            writeln!(
                out,
                "DAMAGED: every record up to position {} is intact. Stop ledgersync, keep a copy \
                 of the data directory, and restore your last backup, or rebuild from the intact \
                 records as docs/journal-storage.md (Damage and recovery) describes",
                report.last_good_position()
            )?;
        }
    }
    Ok(if report.is_clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// `journal recover --to NEW_DIR [--upto POS]`: copies the intact prefix of the journal.
pub fn journal_recover(
    data: Option<std::path::PathBuf>,
    to: &std::path::Path,
    upto: Option<u64>,
) -> Result<ExitCode> {
    use ledgersync_domain::{Event, NewEvent};
    use ledgersync_journal::{ExpectedSeq, JournalOptions, ReadError};
    let data = data.context("no data directory: pass --data DIR (the damaged one)")?;
    if to.exists()
        && to
            .read_dir()
            .map(|mut r| r.next().is_some())
            .unwrap_or(true)
    {
        bail!(
            "{} is not empty: pass a new directory to --to (the recovered journal is written \
             there, the damaged one is only read)",
            to.display()
        );
    }
    let source = crate::ctx::open_for_reading(&data)?;
    let last = source.last_position().unwrap_or(0);
    let upto = upto.map_or(last, |u| u.min(last));
    let dir = crate::ctx::journal_dir(to);
    let target = ledgersync_journal::open(&dir, &JournalOptions::with_backend(source.backend()))
        .with_context(|| format!("creating the journal in {}", dir.display()))?;
    let mut next = 1u64;
    let mut stopped: Option<String> = None;
    while next <= upto && stopped.is_none() {
        let want = usize::try_from((upto - next + 1).min(1024)).unwrap_or(1024);
        let envelopes = match source.read_all(next, want) {
            Ok(envelopes) => envelopes,
            Err(e) => {
                // Keep the intact records before the damaged one, then stop.
                let bad = match &e {
                    ReadError::Corrupt { position, .. } | ReadError::Decode { position, .. } => {
                        *position
                    }
                    _ => next,
                };
                stopped = Some(e.to_string());
                if bad > next {
                    source
                        .read_all(next, usize::try_from(bad - next).unwrap_or(0))
                        .unwrap_or_default()
                } else {
                    Vec::new()
                }
            }
        };
        if envelopes.is_empty() {
            break;
        }
        let mut tickets = Vec::with_capacity(envelopes.len());
        for envelope in envelopes {
            if envelope.position != next {
                stopped = Some(format!("position {next} is missing"));
                break;
            }
            let event = match Event::decode(
                envelope.event_type,
                envelope.schema_version,
                &envelope.payload,
            ) {
                Ok(event) => event,
                Err(e) => {
                    stopped = Some(format!("position {next} cannot be decoded: {e}"));
                    break;
                }
            };
            let expected = match envelope.seq {
                1 => ExpectedSeq::NoStream,
                seq => ExpectedSeq::Exactly(seq - 1),
            };
            let new = NewEvent {
                event_id: envelope.event_id,
                recorded_at: envelope.recorded_at,
                occurred_at: envelope.occurred_at,
                event_type: envelope.event_type,
                schema_version: envelope.schema_version,
                causation: envelope.causation,
                correlation: envelope.correlation,
                rule: envelope.rule,
                payload: envelope.payload,
                items: event.item_keys(),
            };
            tickets.push((
                envelope.position,
                target.submit(&envelope.stream, expected, vec![new]),
            ));
            next += 1;
        }
        for (position, ticket) in tickets {
            let appended = ticket
                .wait()
                .with_context(|| format!("copying position {position} into {}", dir.display()))?;
            if appended.first_position != position {
                bail!(
                    "position {position} was copied to position {} in {}: stopped",
                    appended.first_position,
                    dir.display()
                );
            }
        }
    }
    let copied = next - 1;
    println!(
        "recovered positions 1..{copied} of {last} into {}",
        to.display()
    );
    if let Some(why) = stopped {
        println!("stopped at position {}: {why}", copied + 1);
    }
    if copied < last {
        println!(
            "{} positions after {copied} are not in the new journal: their changes are observed \
             again from the connectors, CRM changes after it must be applied again",
            last - copied
        );
    }
    println!(
        "next: ledgersync journal check --data {0}; then use --data {0}",
        to.display()
    );
    Ok(ExitCode::SUCCESS)
}
