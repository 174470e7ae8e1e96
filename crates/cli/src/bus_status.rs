//! `ledgersync bus status`: what the broker of the configuration's `[bus]` holds — the
//! topology with its arguments, each queue's ready messages and consumers, the partitions at a
//! glance and the newest dead letters with their reasons (docs/bus.md, "Looking at the bus").
//! It connects without declaring anything ([`AmqpBus::connect_passive`]) and lists the dead
//! letters without taking them: nothing on the broker changes.

use crate::bus_config::BusKind;
use crate::config::Config;
use anyhow::{Result, anyhow};
use ledgersync_bus::{
    AmqpBus, AmqpConfig, ArgumentValue, Bus, BusStatus, DeadLetter, QueueStatus, TopologyRole,
};
use ledgersync_engine::SystemClock;
use serde_json::{Value, json};
use std::io::Write as _;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

/// How long connecting, probing and listing may take together.
const DEADLINE: Duration = Duration::from_secs(30);

/// What `bus status` says with the in-process bus.
const IN_PROCESS: &str = "the bus is in-process (`[bus] kind = \"in-process\"`, the default): it \
lives inside `ledgersync serve` and has nothing to show from outside. Set `[bus] kind = \"amqp\"` \
and `url` to use RabbitMQ, then `ledgersync bus status` shows its queues.";

/// The newest dead letters and how many there are.
struct DeadLetters {
    /// The dead-letter queue's ready messages (`None`: the queue is not declared).
    count: Option<u32>,
    /// How many were read (the listing stops at `dead_letter_listing_limit`, 10,000, oldest
    /// first: the newest shown are the newest of those).
    listed: usize,
    /// The newest first, at most the limit.
    newest: Vec<DeadLetter>,
}

/// `bus status [--limit N]`.
pub fn run(config: &Config, json: bool, limit: usize) -> Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    if config.bus.kind == BusKind::InProcess {
        if json {
            writeln!(
                out,
                "{}",
                json!({"kind": "in-process", "message": IN_PROCESS})
            )?;
        } else {
            writeln!(out, "{IN_PROCESS}")?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let amqp = AmqpConfig {
        publish_timeout: Duration::from_secs(10),
        connection_name: "ledgersync bus status".into(),
        ..config.bus.amqp()
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (status, dead) = runtime.block_on(async {
        tokio::time::timeout(DEADLINE, read(amqp, limit))
            .await
            .map_err(|_| {
                anyhow!(
                    "the broker at {} did not answer within {DEADLINE:?}; is RabbitMQ running? \
                     (`scripts/services.sh start` starts one on 127.0.0.1:5672)",
                    ledgersync_bus::redact_url(&config.bus.url)
                )
            })?
    })?;
    if json {
        writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&to_json(&status, &dead, limit))?
        )?;
    } else {
        write!(out, "{}", text(&status, &dead, limit))?;
    }
    Ok(ExitCode::SUCCESS)
}

async fn read(config: AmqpConfig, limit: usize) -> Result<(BusStatus, DeadLetters)> {
    let bus = AmqpBus::connect_passive(config, Arc::new(SystemClock)).await?;
    let result = async {
        let status = bus.status().await?;
        let count = status
            .queue(TopologyRole::DeadLetters)
            .and_then(|q| q.stats)
            .map(|s| s.messages);
        let (listed, newest) = match count {
            Some(n) if n > 0 && limit > 0 => {
                let mut all = bus.dead_letters().await?;
                let listed = all.len();
                let keep = listed.min(limit);
                let mut newest = all.split_off(listed - keep);
                newest.reverse();
                (listed, newest)
            }
            _ => (0, Vec::new()),
        };
        Ok::<_, anyhow::Error>((
            status,
            DeadLetters {
                count,
                listed,
                newest,
            },
        ))
    }
    .await;
    bus.close().await;
    result
}

/// Milliseconds since the epoch as RFC 3339 UTC.
fn time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_else(|| ms.to_string())
}

fn argument_json(value: &ArgumentValue) -> Value {
    match value {
        ArgumentValue::Text(s) => json!(s),
        ArgumentValue::Bool(b) => json!(b),
        ArgumentValue::Int(i) => json!(i),
    }
}

fn arguments_text(queue: &QueueStatus) -> String {
    queue
        .arguments
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn dead_letter_queue_name(status: &BusStatus, d: &DeadLetter) -> Option<String> {
    d.queue.map(|q| format!("{}{q}", status.prefix))
}

fn to_json(status: &BusStatus, dead: &DeadLetters, limit: usize) -> Value {
    let exchanges: Vec<Value> = status
        .exchanges
        .iter()
        .map(|e| {
            json!({
                "name": e.name,
                "role": e.role.name(),
                "kind": e.kind,
                "durable": e.kind.map(|_| true),
                "declared": e.declared,
            })
        })
        .collect();
    let queues: Vec<Value> = status
        .queues
        .iter()
        .map(|q| {
            let mut v = json!({
                "name": q.name,
                "role": q.role.name(),
                "declared": q.stats.is_some(),
                "messages": q.stats.map(|s| s.messages),
                "consumers": q.stats.map(|s| s.consumers),
                "durable": q.durable,
                "arguments": q.arguments.iter()
                    .map(|(k, v)| (k.clone(), argument_json(v)))
                    .collect::<serde_json::Map<String, Value>>(),
            });
            if let TopologyRole::Partition(p) = q.role {
                v["partition"] = json!(p);
            }
            v
        })
        .collect();
    let summary = status.partition_summary();
    let newest: Vec<Value> = dead
        .newest
        .iter()
        .map(|d| {
            json!({
                "message_id": d.wire.message_id,
                "queue": dead_letter_queue_name(status, d),
                "reason": d.reason.reason,
                "field": d.reason.field,
                "line": d.reason.line,
                "column": d.reason.column,
                "at": d.at.map(|t| time(t.0)),
            })
        })
        .collect();
    json!({
        "kind": "amqp",
        "url": status.url,
        "prefix": status.prefix,
        "partitions": status.partitions,
        "queue_type": status.queue_type.name(),
        "exchanges": exchanges,
        "queues": queues,
        "partition_summary": {
            "partitions": summary.partitions,
            "declared": summary.declared,
            "with_consumer": summary.with_consumer,
            "without_consumer": summary.without_consumer,
            "not_declared": summary.not_declared,
            "messages_waiting": summary.messages_waiting,
        },
        "dead_letters": {
            "declared": dead.count.is_some(),
            "count": dead.count,
            "listed": dead.listed,
            "limit": limit,
            "newest": newest,
        },
    })
}

/// `0, 1, 2, 5..9` for a sorted list of partition numbers.
fn ranges(numbers: &[usize]) -> String {
    let mut parts = Vec::new();
    let mut i = 0;
    while i < numbers.len() {
        let start = numbers[i];
        let mut end = start;
        while i + 1 < numbers.len() && numbers[i + 1] == end + 1 {
            i += 1;
            end = numbers[i];
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}..{end}")
        });
        i += 1;
    }
    parts.join(", ")
}

fn text(status: &BusStatus, dead: &DeadLetters, limit: usize) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "bus: RabbitMQ at {} (prefix `{}`, {} partitions, {} queues as configured)",
        status.url,
        status.prefix,
        status.partitions,
        status.queue_type.name()
    );
    let width = status
        .queues
        .iter()
        .map(|q| q.name.len())
        .chain(status.exchanges.iter().map(|e| e.name.len()))
        .max()
        .unwrap_or(0)
        .max(5);

    let _ = writeln!(s, "\nexchanges");
    for e in &status.exchanges {
        let kind = e
            .kind
            .map_or("kind unknown".to_string(), |k| format!("{k}, durable"));
        let state = match (e.declared, e.role) {
            (true, _) => "declared".to_string(),
            (false, TopologyRole::Events) => {
                "not declared (`serve` declares it when it publishes the event stream)".into()
            }
            (false, _) => "not declared".into(),
        };
        let _ = writeln!(s, "  {:width$}  {kind:16}  {state}", e.name);
    }

    let _ = writeln!(
        s,
        "\nqueues{:pad$}  {:>8}  {:>9}",
        "",
        "ready",
        "consumers",
        pad = width.saturating_sub(4)
    );
    for q in &status.queues {
        match q.stats {
            Some(st) => {
                let _ = writeln!(
                    s,
                    "  {:width$}  {:>8}  {:>9}",
                    q.name, st.messages, st.consumers
                );
            }
            None => {
                let _ = writeln!(s, "  {:width$}  not declared", q.name);
            }
        }
    }

    let _ = writeln!(s, "\narguments (as ledgersync declares them)");
    let mut shown_bus_queues = false;
    for q in &status.queues {
        match q.role {
            TopologyRole::Crm | TopologyRole::Partition(_) if !shown_bus_queues => {
                shown_bus_queues = true;
                let _ = writeln!(
                    s,
                    "  {}crm and every {}partition.N: durable, {}",
                    status.prefix,
                    status.prefix,
                    arguments_text(q)
                );
            }
            TopologyRole::DeadLetters => {
                let _ = writeln!(
                    s,
                    "  {}: durable, {}; bound to {}dead-letter",
                    q.name,
                    arguments_text(q),
                    status.prefix
                );
            }
            _ => {}
        }
    }
    if let Some(commands) = status
        .queue(TopologyRole::CrmCommands)
        .filter(|q| q.stats.is_some())
    {
        let _ = writeln!(
            s,
            "  {}: declared by the CRM commands' own component (its arguments are not read \
             back over AMQP)",
            commands.name
        );
    }

    let summary = status.partition_summary();
    let declared = if summary.declared == summary.partitions {
        String::new()
    } else {
        format!("{} declared, ", summary.declared)
    };
    let _ = writeln!(
        s,
        "\npartitions: {} partitions, {declared}{} with an active consumer, {} {} waiting",
        summary.partitions,
        summary.with_consumer,
        summary.messages_waiting,
        if summary.messages_waiting == 1 {
            "message"
        } else {
            "messages"
        }
    );
    if !summary.not_declared.is_empty() {
        let _ = writeln!(s, "  not declared: {}", ranges(&summary.not_declared));
    }
    if !summary.without_consumer.is_empty() {
        let _ = writeln!(
            s,
            "  without a consumer: {}",
            ranges(&summary.without_consumer)
        );
    }

    match dead.count {
        None => {
            let _ = writeln!(
                s,
                "\ndead letters: the queue {}dead-letters is not declared",
                status.prefix
            );
        }
        Some(0) => {
            let _ = writeln!(s, "\ndead letters: none");
        }
        Some(n) => {
            let shown = dead.newest.len();
            if shown < n as usize {
                let _ = writeln!(
                    s,
                    "\ndead letters: {n}, the newest {shown} shown, newest first (--limit N \
                     shows up to N; now {limit})"
                );
            } else {
                let _ = writeln!(s, "\ndead letters: {n}, newest first");
            }
            if dead.listed > 0 && dead.listed < n as usize {
                let _ = writeln!(
                    s,
                    "  (only the oldest {} can be read without taking them: the newest shown \
                     are the newest of those)",
                    dead.listed
                );
            }
            for d in &dead.newest {
                let _ = writeln!(
                    s,
                    "  {}  {}  message {}",
                    d.at.map_or("time unknown".into(), |t| time(t.0)),
                    dead_letter_queue_name(status, d).unwrap_or_else(|| "queue unknown".into()),
                    d.wire.message_id.as_deref().unwrap_or("without id")
                );
                let _ = writeln!(s, "    reason: {}", d.reason.reason);
                let mut place = Vec::new();
                if let Some(f) = &d.reason.field {
                    place.push(format!("field {f}"));
                }
                if let Some(l) = d.reason.line {
                    place.push(format!("line {l}"));
                }
                if let Some(c) = d.reason.column {
                    place.push(format!("column {c}"));
                }
                if !place.is_empty() {
                    let _ = writeln!(s, "    at: {}", place.join(", "));
                }
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    #[test]
    fn partition_numbers_are_shown_as_ranges() {
        assert_eq!(super::ranges(&[]), "");
        assert_eq!(super::ranges(&[3]), "3");
        assert_eq!(super::ranges(&[0, 1, 2, 5, 7, 8, 9]), "0..2, 5, 7..9");
    }
}
