//! `ledgersync demo`: the disappearing-appointment story through `serve`'s own path.
//!
//! A fresh data directory gets a journal, a vdir calendar and address book per mailbox and a
//! directory of attendee Maildirs. The service starts as `ledgersync serve` starts it (the same
//! [`Service`], the same vdir/Maildir connector), each step of the story is written as a
//! JSON-lines file under `<data>/story/` and applied with the code of `ledgersync crm apply`
//! against the running service, and the connector carries out what was decided: files written
//! and deleted, meeting cancellations delivered as iMIP messages into the attendees' Maildirs.
//! Then the service stops and the demo shows what landed on disk next to `explain`, `what-if`
//! and `replay` of the journal.

use crate::config::Config;
use crate::ctx::{Ctx, Live, journal_dir};
use crate::render;
use anyhow::{Context as _, Result, anyhow, bail};
use ledgersync_domain::{Duration, OrgId};
use ledgersync_engine::ingress::render_change;
use ledgersync_engine::scenario::{MAILBOXES, story};
use ledgersync_engine::{Clock as _, ManualClock, SystemClock};
use ledgersync_journal::{Backend, JournalOptions};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

/// Minutes the story's clock moves between two steps: the journal reads like a working morning.
const STEP_MINUTES: i64 = 7;

/// One applied step: its title, the file it was applied from, what `crm apply` printed.
struct Step {
    title: String,
    file: PathBuf,
    output: String,
}

pub fn run(
    data: Option<PathBuf>,
    backend: Option<&str>,
    config: &Config,
    json: bool,
) -> Result<ExitCode> {
    let backend: Backend = match backend {
        Some(b) => b.parse().map_err(anyhow::Error::from)?,
        None => config.backend,
    };
    let data = match data {
        Some(d) => {
            if d.exists() && d.read_dir().map(|mut r| r.next().is_some()).unwrap_or(true) {
                bail!(
                    "{} is not empty: the demo writes a new organization and needs a fresh directory \
                     (leave out --data to get one under the system temp dir)",
                    d.display()
                );
            }
            d
        }
        None => {
            let stamp = SystemClock.now().0;
            std::env::temp_dir().join(format!("ledgersync-demo-{stamp}"))
        }
    };
    std::fs::create_dir_all(&data).with_context(|| format!("creating {}", data.display()))?;
    let mut options = JournalOptions::with_backend(backend);
    options.max_batch_events = config.max_batch_events;
    let journal = ledgersync_journal::open(&journal_dir(&data), &options)
        .with_context(|| format!("creating the journal in {}", data.display()))?;

    // The configuration `serve` would read: one [[mailbox]] per story mailbox.
    let mut config = config.clone();
    config.mailboxes = MAILBOXES
        .iter()
        .map(|(mailbox, user)| crate::config::MailboxConfig {
            id: mailbox.to_string(),
            account: mailbox.to_string(),
            server: None,
            owner: None,
            calendar: Some(data.join("vdir").join(user).join("calendar")),
            address_book: Some(data.join("vdir").join(user).join("contacts")),
            maildirs: Some(data.join("maildir")),
            tracking_category: None,
            // The story waits for the service after each step (`idle`); pushes arriving on
            // their own would make the output differ from run to run.
            watch: false,
            timezone: None,
        })
        .collect();
    crate::serve::create_collections(&config)?;
    let story_dir = data.join("story");
    std::fs::create_dir_all(&story_dir)?;

    // The story's clock starts two hours ago and moves between steps.
    let clock = Arc::new(ManualClock::new(SystemClock.now() - Duration::hours(2)));
    let org = OrgId::new(config.org.clone());
    let system = actix::System::new();
    let steps: Vec<Step> = system.block_on(async {
        let service = ledgersync_runtime::Service::start(
            journal.clone(),
            clock.clone(),
            crate::serve::service_config(&data, &config)?,
            None,
        )
        .await
        .context("starting the service")?;
        let live = Arc::new(Live {
            service: Arc::new(service),
            runtime: tokio::runtime::Handle::current(),
        });
        let mut steps = Vec::new();
        for (n, step) in story(&org, clock.now()).into_iter().enumerate() {
            let lines: Vec<String> = step.events.iter().filter_map(render_change).collect();
            if lines.len() != step.events.len() {
                return Err(anyhow!("step {}: an event is not a CRM change", n + 1));
            }
            let file = story_dir.join(format!("{:02}-{}.jsonl", n + 1, slug(step.title)));
            std::fs::write(&file, lines.join("\n") + "\n")
                .with_context(|| format!("writing {}", file.display()))?;
            // `crm apply` waits on the service's runtime: off this thread.
            let output = {
                let live = live.clone();
                let config = config.clone();
                let data = data.clone();
                let path = file.clone();
                tokio::task::spawn_blocking(move || apply(&live, &config, &data, &path))
                    .await
                    .map_err(|e| anyhow!("applying {}: {e}", file.display()))??
            };
            live.service.idle().await;
            steps.push(Step {
                title: step.title.to_string(),
                file,
                output,
            });
            clock.advance(Duration::minutes(STEP_MINUTES));
        }
        live.service.stop().await?;
        Ok::<_, anyhow::Error>(steps)
    })?;

    let landed = on_disk(&data)?;
    let explanation = ledgersync_engine::explain(journal.as_ref(), "Bike repair")?;
    let overrides = vec![(
        "distinct_physical_logical_deletes".to_string(),
        "true".to_string(),
    )];
    let what_if = ledgersync_engine::what_if(journal.as_ref(), &overrides, |_, _| {})?;
    let replay = ledgersync_engine::replay(journal.as_ref(), None, |_, _| {})?;

    if json {
        let steps: Vec<Value> = steps
            .iter()
            .map(|s| json!({"step": s.title, "file": s.file, "applied": s.output}))
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "data": data,
                "backend": backend.as_str(),
                "story": steps,
                "on_disk": landed,
                "explain": explanation,
                "what_if": what_if,
                "replay": replay,
            }))?
        );
    } else {
        println!("ledgersync demo: the disappearing appointment");
        println!("data directory: {} ({} journal)", data.display(), backend);
        println!(
            "the service runs as `ledgersync serve` runs it: mailbox actors, the vdir/Maildir \
             connector for {}, each step applied from a file with `crm apply`\n",
            MAILBOXES
                .iter()
                .map(|(m, _)| *m)
                .collect::<Vec<_>>()
                .join(" and ")
        );
        for s in &steps {
            println!("* {}  ({})", s.title, relative(&data, &s.file));
            for line in s.output.lines() {
                println!("    {line}");
            }
        }
        println!("\n== on disk: what the connector wrote ==");
        print!("{}", render_on_disk(&data, &landed));
        println!("\n== ledgersync explain \"Bike repair\" ==");
        print!("{}", render::explanation(&explanation));
        println!("== ledgersync what-if --set distinct_physical_logical_deletes=true ==");
        print!("{}", render::what_if(&what_if));
        println!("\n== ledgersync replay ==");
        print!("{}", render::replay(&replay));
        let d = data.display();
        println!(
            "\nExplore it:\n  ledgersync explain --data {d} \"Quarterly review\"\n  ledgersync timeline --data {d} apt-bike-repair\n  ledgersync what-if --data {d} --set distinct_physical_logical_deletes=true --json\n  ledgersync events --data {d} --mailbox mbx-jayne"
        );
    }
    Ok(if replay.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// `ledgersync crm apply FILE` against the running service; answers what it printed.
fn apply(live: &Live, config: &Config, data: &Path, file: &Path) -> Result<String> {
    let mut out = Vec::new();
    let mut err = Vec::new();
    let code = {
        let mut ctx = Ctx {
            data: Some(data.to_path_buf()),
            config,
            json: false,
            out: &mut out,
            err: &mut err,
            live: Some(live),
            // Read here, like a client: the service side never opens a file itself.
            input: Some(crate::crm::read_input(file, &config.limits)?),
        };
        crate::crm::apply(&mut ctx, file)?
    };
    if code != ExitCode::SUCCESS {
        bail!(
            "the story file {} was refused: {}",
            file.display(),
            String::from_utf8_lossy(&err)
        );
    }
    let text = String::from_utf8_lossy(&out).into_owned();
    // The file name is shown once per step; strip it from each line.
    let prefix = format!("{}:", file.display());
    Ok(text.replace(&prefix, "line "))
}

fn slug(title: &str) -> String {
    let mut s = String::new();
    for c in title.chars() {
        if c.is_ascii_alphanumeric() {
            s.push(c.to_ascii_lowercase());
        } else if !s.ends_with('-') {
            s.push('-');
        }
        if s.len() >= 40 {
            break;
        }
    }
    s.trim_matches('-').to_string()
}

fn relative(base: &Path, p: &Path) -> String {
    p.strip_prefix(base).unwrap_or(p).display().to_string()
}

/// The collections and Maildirs after the story: file names per directory, and the key lines
/// of the iMIP messages (invitations and cancellations) in the attendees' Maildirs.
fn on_disk(data: &Path) -> Result<Value> {
    let mut collections = Vec::new();
    for (mailbox, user) in MAILBOXES {
        for kind in ["calendar", "contacts"] {
            let dir = data.join("vdir").join(user).join(kind);
            collections.push(json!({
                "mailbox": mailbox,
                "collection": relative(data, &dir),
                "items": names(&dir)?,
            }));
        }
    }
    let mut messages = Vec::new();
    let maildirs = data.join("maildir");
    for address in names(&maildirs)? {
        let new = maildirs.join(&address).join("new");
        for name in names(&new)? {
            let text = std::fs::read_to_string(new.join(&name))
                .with_context(|| format!("reading {}", new.join(&name).display()))?;
            let pick = |key: &str| {
                text.lines()
                    .find_map(|l| l.strip_prefix(key))
                    .map(|v| v.trim().to_string())
            };
            messages.push(json!({
                "attendee": address,
                "file": relative(data, &new.join(&name)),
                "subject": pick("Subject:"),
                "method": pick("METHOD:"),
                "summary": pick("SUMMARY:"),
                "sequence": pick("SEQUENCE:"),
            }));
        }
    }
    Ok(json!({"collections": collections, "messages": messages}))
}

fn names(dir: &Path) -> Result<Vec<String>> {
    let mut v = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(v);
    };
    for e in entries {
        let name = e?.file_name().to_string_lossy().into_owned();
        if !name.starts_with('.') {
            v.push(name);
        }
    }
    v.sort();
    Ok(v)
}

fn render_on_disk(data: &Path, landed: &Value) -> String {
    let mut out = String::new();
    for c in landed["collections"].as_array().into_iter().flatten() {
        let items: Vec<&str> = c["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        out.push_str(&format!(
            "{}  {}: {}\n",
            c["mailbox"].as_str().unwrap_or_default(),
            c["collection"].as_str().unwrap_or_default(),
            if items.is_empty() {
                "(empty)".to_string()
            } else {
                items.join(", ")
            }
        ));
    }
    let messages = landed["messages"].as_array().cloned().unwrap_or_default();
    let of = |method: &str| -> Vec<&Value> {
        messages
            .iter()
            .filter(|m| m["method"].as_str() == Some(method))
            .collect()
    };
    let invitations = of("REQUEST");
    let cancellations = of("CANCEL");
    out.push_str(&format!(
        "iMIP messages (RFC 6047) delivered into the attendees' Maildirs under {}: {} \
         invitation(s), {} cancellation(s)\n",
        relative(data, &data.join("maildir")),
        invitations.len(),
        cancellations.len()
    ));
    out.push_str("the cancellations:\n");
    for m in &cancellations {
        out.push_str(&format!(
            "  {}  METHOD:CANCEL SUMMARY:{} SEQUENCE:{}\n    {}\n",
            m["attendee"].as_str().unwrap_or_default(),
            m["summary"].as_str().unwrap_or("?"),
            m["sequence"].as_str().unwrap_or("?"),
            m["file"].as_str().unwrap_or_default(),
        ));
    }
    out
}
