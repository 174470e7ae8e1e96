//! The read commands: replay, explain, what-if, events.

use crate::render;
use anyhow::{Context as _, Result, bail};
use indicatif::{ProgressBar, ProgressStyle};
use ledgersync_domain::{MailboxId, OrgSettings, StreamId};
use ledgersync_engine::log::{Stored, scan};
use ledgersync_journal::{Journal, JournalOptions};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

/// The journal directory inside a data directory.
pub fn journal_dir(data: &Path) -> PathBuf {
    data.join("journal")
}

/// Opens the journal of an existing data directory, with the backend it was created with.
pub fn open_existing(data: Option<PathBuf>) -> Result<Arc<dyn Journal>> {
    let Some(data) = data else {
        bail!(
            "no data directory: pass --data DIR (or set LEDGERSYNC_DATA); `ledgersync demo` prints one to try"
        );
    };
    let dir = journal_dir(&data);
    if !dir.exists() {
        bail!(
            "{} holds no journal (expected {}); pass the --data directory that `ledgersync demo` or `serve` printed",
            data.display(),
            dir.display()
        );
    }
    let backend = ledgersync_journal::detect_backend(&dir)
        .with_context(|| format!("reading the journal marker in {}", dir.display()))?;
    let journal = ledgersync_journal::open(&dir, &JournalOptions::with_backend(backend))
        .with_context(|| format!("opening the journal in {}", dir.display()))?;
    Ok(journal)
}

fn progress(journal: &dyn Journal, what: &str) -> Result<ProgressBar> {
    let total = journal.last_position()?;
    let bar = if total >= 200_000 {
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

pub fn replay(data: Option<PathBuf>, mailbox: Option<String>, json: bool) -> Result<ExitCode> {
    let journal = open_existing(data)?;
    let only = mailbox.map(MailboxId::new);
    let bar = progress(journal.as_ref(), "replaying")?;
    let report = ledgersync_engine::replay(journal.as_ref(), only.as_ref(), |done, _| {
        bar.set_position(done)
    })?;
    bar.finish_and_clear();
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render::replay(&report));
    }
    Ok(if report.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

pub fn explain(data: Option<PathBuf>, item: &str, json: bool) -> Result<ExitCode> {
    let journal = open_existing(data)?;
    let explanation = ledgersync_engine::explain(journal.as_ref(), item)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&explanation)?);
    } else {
        print!("{}", render::explanation(&explanation));
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

pub fn what_if(data: Option<PathBuf>, set: &[String], json: bool) -> Result<ExitCode> {
    let overrides = parse_assignments(set)?;
    let journal = open_existing(data)?;
    let bar = progress(journal.as_ref(), "re-deciding")?;
    let report = ledgersync_engine::what_if(journal.as_ref(), &overrides, |done, _| {
        bar.set_position(done)
    })?;
    bar.finish_and_clear();
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render::what_if(&report));
    }
    Ok(ExitCode::SUCCESS)
}

pub fn events(
    data: Option<PathBuf>,
    mailbox: Option<String>,
    from: u64,
    limit: Option<usize>,
    json: bool,
) -> Result<ExitCode> {
    let journal = open_existing(data)?;
    let mut printed = 0usize;
    let limit = limit.unwrap_or(usize::MAX);
    let mut emit = |s: Stored| -> Result<bool> {
        if printed >= limit {
            return Ok(false);
        }
        printed += 1;
        if json {
            println!("{}", serde_json::to_string(&render::event_json(&s))?);
        } else {
            println!("{}", render::event_line(&s));
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
