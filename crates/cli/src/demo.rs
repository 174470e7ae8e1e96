//! `ledgersync demo`: the disappearing-appointment story through the real decide + journal path.

use crate::config::Config;
use crate::ctx::journal_dir;
use crate::render;
use anyhow::{Context as _, Result, bail};
use ledgersync_domain::{Duration, OrgId};
use ledgersync_engine::{Clock as _, Engine, ManualClock, SystemClock};
use ledgersync_journal::{Backend, JournalOptions};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

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
    // The story's clock starts two hours ago and moves seven minutes per step.
    let clock = Arc::new(ManualClock::new(SystemClock.now() - Duration::hours(2)));
    let mut engine = Engine::open(
        journal.clone(),
        OrgId::new(config.org.clone()),
        clock.clone(),
    )?
    .with_snapshot_every(config.snapshot_every);
    let steps = ledgersync_engine::scenario::disappearing_appointment(&mut engine, &clock)?;
    drop(engine);

    let explanation = ledgersync_engine::explain(journal.as_ref(), "Bike repair")?;
    let overrides = vec![(
        "distinct_physical_logical_deletes".to_string(),
        "true".to_string(),
    )];
    let what_if = ledgersync_engine::what_if(journal.as_ref(), &overrides, |_, _| {})?;
    let replay = ledgersync_engine::replay(journal.as_ref(), None, |_, _| {})?;

    if json {
        let steps: Vec<_> = steps
            .iter()
            .map(|s| serde_json::json!({"step": s.title, "decisions": s.results}))
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "data": data,
                "backend": backend.as_str(),
                "story": steps,
                "explain": explanation,
                "what_if": what_if,
                "replay": replay,
            }))?
        );
    } else {
        println!("ledgersync demo: the disappearing appointment");
        println!("data directory: {} ({} journal)", data.display(), backend);
        println!(
            "(until connectors arrive, a loopback plays the mail server: it reports every intent as carried out)\n"
        );
        for s in &steps {
            println!("* {}", s.title);
            for r in &s.results {
                println!("    {r}");
            }
        }
        println!("\n== ledgersync explain \"Bike repair\" ==");
        print!("{}", render::explanation(&explanation));
        println!("== ledgersync what-if --set distinct_physical_logical_deletes=true ==");
        print!("{}", render::what_if(&what_if));
        println!("\n== ledgersync replay ==");
        print!("{}", render::replay(&replay));
        let d = data.display();
        println!(
            "\nExplore it:\n  ledgersync explain --data {d} \"Quarterly review\"\n  ledgersync what-if --data {d} --set distinct_physical_logical_deletes=true --json\n  ledgersync events --data {d} --mailbox mbx-jayne"
        );
    }
    Ok(if replay.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
