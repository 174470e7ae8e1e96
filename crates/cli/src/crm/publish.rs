//! `crm apply` with `[bus] kind = "amqp"`: the lines go to the CRM queue of the broker, one
//! message a line, and the command returns once the broker has confirmed every one. The
//! service consuming the queue (`serve` with the same `[bus]`) reads each line against the
//! organization and records it; a line it refuses goes to the dead-letter queue with its
//! reason and field (`ledgersync bus status` lists them), and the decisions appear on the
//! event stream (`ledgersync events --follow`).
//!
//! What is checked here, before anything is published (one bad line and nothing is): each
//! line is a JSON object with a string `"kind"`, within `[limits] max_line_bytes` and the
//! bus's `max_message_bytes`. Everything that needs the organization is checked by the
//! service.

use crate::config::Config;
use anyhow::{Context as _, Result};
use ledgersync_bus::{AmqpBus, Bus, BusMessage};
use ledgersync_engine::SystemClock;
use serde_json::{Value, json};
use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;

/// Lines published with one wait for their confirms.
const PUBLISH_CHUNK: usize = 1000;

/// Publishes the lines of `text` (named `name`) to the CRM queue.
pub fn publish(
    name: &str,
    text: &str,
    config: &Config,
    json: bool,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<ExitCode> {
    let mut messages = Vec::new();
    let mut errors = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        if raw.trim().is_empty() {
            continue;
        }
        match check_line(raw, config) {
            Ok(()) => messages.push(BusMessage::crm_line(raw.trim())),
            Err(e) => errors.push(format!("{name}:{}: {e}", i + 1)),
        }
    }
    if !errors.is_empty() {
        for e in &errors {
            writeln!(err, "{e}")?;
        }
        writeln!(
            err,
            "{} bad line(s) in {name}; nothing was published. The format is in \
             docs/crm-changes.md (result lines: docs/crm-commands.md).",
            errors.len()
        )?;
        return Ok(ExitCode::from(2));
    }
    let url = ledgersync_bus::redact_url(&config.bus.url);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async {
        let bus = AmqpBus::connect(config.bus.amqp(), Arc::new(SystemClock))
            .await
            .with_context(|| {
                format!("connecting to the bus at {url} (`[bus]` in the configuration)")
            })?;
        let mut published = 0;
        for chunk in messages.chunks(PUBLISH_CHUNK) {
            if let Err(e) = bus.publish_all(chunk).await {
                bus.close().await;
                return Err(anyhow::Error::new(e).context(format!(
                    "{published} of {} line(s) of {name} were confirmed by the broker before \
                     this failure; publishing the file again is safe: a change the \
                     organization already holds is recorded once",
                    messages.len()
                )));
            }
            published += chunk.len();
        }
        bus.close().await;
        Ok::<_, anyhow::Error>(())
    })?;
    let queue = format!("{}crm", config.bus.amqp().prefix);
    if json {
        let ids: Vec<String> = messages.iter().map(|m| m.id().to_string()).collect();
        writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&json!({
                "file": name,
                "published": messages.len(),
                "queue": queue,
                "broker": url,
                "message_ids": ids,
            }))?
        )?;
    } else {
        writeln!(
            out,
            "published {} line(s) of {name} to {queue} at {url}, every one confirmed by the \
             broker; the service consuming it records them (refused lines go to the dead \
             letters: `ledgersync bus status`; decisions: `ledgersync events --follow`)",
            messages.len()
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

fn check_line(raw: &str, config: &Config) -> std::result::Result<(), String> {
    let max_line = config.limits.max_line_bytes;
    if raw.len() as u64 > max_line {
        return Err(format!(
            "the line is {} bytes, more than the limit of {max_line} (max_line_bytes in the \
             [limits] table of the configuration)",
            raw.len()
        ));
    }
    if raw.len() > config.bus.max_message_bytes {
        return Err(format!(
            "the line is {} bytes, more than the bus's limit of {} (max_message_bytes in the \
             [bus] table of the configuration)",
            raw.len(),
            config.bus.max_message_bytes
        ));
    }
    match serde_json::from_str::<Value>(raw) {
        Ok(Value::Object(map)) => match map.get("kind") {
            Some(Value::String(_)) => Ok(()),
            Some(_) => Err("field \"kind\": must be a string".into()),
            None => Err("field \"kind\": missing; each line names its kind".into()),
        },
        Ok(_) => Err("not a JSON object; each line must be one object with a \"kind\"".into()),
        Err(e) => Err(format!("not JSON: {e}")),
    }
}
