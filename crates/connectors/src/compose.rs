//! The text of items the connector writes: a new `.ics`/`.vcf` from a CRM row and an intent's
//! `ItemWrite`, and the edit of an existing item for an update.

use crate::lines::{self, escape, fold, name_of, param, unfold, value_of};
use ledgersync_domain::event::ItemWrite;
use ledgersync_domain::records::{Appointment, Contact, Record, ShowAs, Task};
use ledgersync_domain::time::Timestamp;

/// The product identifier written into calendar objects.
pub const PRODID: &str = "-//ledgersync//connectors//EN";

/// Minutes before the start at which a written reminder fires.
const REMINDER_MINUTES: i64 = 15;

/// A UTC date-time value (`20261120T140500Z`).
pub fn utc(t: Timestamp) -> String {
    let text = t.to_string(); // `2026-11-20 14:05Z`
    let secs = t.0.div_euclid(1000).rem_euclid(60);
    let digits: String = text.chars().filter(char::is_ascii_digit).collect();
    format!("{}T{}{secs:02}Z", &digits[..8], &digits[8..12])
}

/// A date value (`20261120`).
fn date(t: Timestamp) -> String {
    utc(t)[..8].to_string()
}

/// `DTSTAMP` for now, read from the system clock (the connector is part of the shell).
pub fn now_stamp() -> String {
    utc(now())
}

/// Now, as a timestamp.
pub fn now() -> Timestamp {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    Timestamp(ms)
}

fn transp(show_as: ShowAs) -> &'static str {
    match show_as {
        ShowAs::Free => "TRANSP:TRANSPARENT",
        ShowAs::Busy | ShowAs::Tentative | ShowAs::OutOfOffice => "TRANSP:OPAQUE",
    }
}

fn alarm(trigger: &str) -> Vec<String> {
    vec![
        "BEGIN:VALARM".into(),
        "ACTION:DISPLAY".into(),
        "DESCRIPTION:Reminder".into(),
        trigger.to_string(),
        "END:VALARM".into(),
    ]
}

fn relative_alarm() -> Vec<String> {
    alarm(&format!("TRIGGER:-PT{REMINDER_MINUTES}M"))
}

fn mailto(name: &str, email: &str, prefix: &str) -> String {
    if name.is_empty() {
        format!("{prefix}:mailto:{email}")
    } else {
        format!("{prefix};CN={}:mailto:{email}", param(name))
    }
}

/// A new calendar object for an appointment.
pub fn appointment(uid: &str, record: &Record, a: &Appointment, write: &ItemWrite) -> String {
    let mut l: Vec<String> = vec![
        "BEGIN:VCALENDAR".into(),
        "VERSION:2.0".into(),
        format!("PRODID:{PRODID}"),
        "BEGIN:VEVENT".into(),
        format!("UID:{uid}"),
        format!("DTSTAMP:{}", now_stamp()),
    ];
    if a.all_day {
        l.push(format!("DTSTART;VALUE=DATE:{}", date(a.start)));
        l.push(format!("DTEND;VALUE=DATE:{}", date(a.end)));
    } else {
        l.push(format!("DTSTART:{}", utc(a.start)));
        l.push(format!("DTEND:{}", utc(a.end)));
    }
    l.push(format!("SUMMARY:{}", escape(&write.title)));
    if !a.location.is_empty() {
        l.push(format!("LOCATION:{}", escape(&a.location)));
    }
    if !a.body.is_empty() {
        l.push(format!("DESCRIPTION:{}", escape(&a.body)));
    }
    if let Some(o) = &a.organizer {
        l.push(mailto(&o.name, &o.email, "ORGANIZER"));
    }
    for p in &a.required {
        l.push(mailto(&p.name, &p.email, "ATTENDEE;ROLE=REQ-PARTICIPANT"));
    }
    for p in &a.optional {
        l.push(mailto(&p.name, &p.email, "ATTENDEE;ROLE=OPT-PARTICIPANT"));
    }
    if let Some(rule) = &a.recurrence {
        l.push(format!("RRULE:{}", rule.trim_start_matches("RRULE:")));
    }
    l.push(transp(write.show_as.unwrap_or(a.show_as)).into());
    l.push("SEQUENCE:0".into());
    l.push(format!(
        "X-LEDGERSYNC-RECORD:{}",
        escape(record.id.as_str())
    ));
    if write.reminder {
        l.extend(relative_alarm());
    }
    l.push("END:VEVENT".into());
    l.push("END:VCALENDAR".into());
    fold(&l)
}

/// A new calendar object for a task (VTODO).
pub fn task(uid: &str, record: &Record, t: &Task, write: &ItemWrite) -> String {
    let mut l: Vec<String> = vec![
        "BEGIN:VCALENDAR".into(),
        "VERSION:2.0".into(),
        format!("PRODID:{PRODID}"),
        "BEGIN:VTODO".into(),
        format!("UID:{uid}"),
        format!("DTSTAMP:{}", now_stamp()),
        format!("SUMMARY:{}", escape(&write.title)),
    ];
    if !t.body.is_empty() {
        l.push(format!("DESCRIPTION:{}", escape(&t.body)));
    }
    if let Some(start) = t.start {
        l.push(format!("DTSTART:{}", utc(start)));
    }
    if let Some(due) = t.due {
        l.push(format!("DUE:{}", utc(due)));
    }
    if write.completed {
        l.push("STATUS:COMPLETED".into());
        l.push("PERCENT-COMPLETE:100".into());
    } else {
        l.push("STATUS:NEEDS-ACTION".into());
        l.push(format!("PERCENT-COMPLETE:{}", t.percent_complete.min(100)));
    }
    l.push(format!(
        "X-LEDGERSYNC-RECORD:{}",
        escape(record.id.as_str())
    ));
    if write.reminder {
        l.extend(task_alarm(t.due));
    }
    l.push("END:VTODO".into());
    l.push("END:VCALENDAR".into());
    fold(&l)
}

/// A task's reminder fires before its due time; without one it has no anchor, so none.
fn task_alarm(due: Option<Timestamp>) -> Vec<String> {
    match due {
        Some(_) => alarm(&format!("TRIGGER;RELATED=END:-PT{REMINDER_MINUTES}M")),
        None => Vec::new(),
    }
}

/// A new vCard 3.0 for a contact (the version vdirsyncer and khard read everywhere).
pub fn contact(uid: &str, record: &Record, c: &Contact, write: &ItemWrite) -> String {
    let mut l: Vec<String> = vec![
        "BEGIN:VCARD".into(),
        "VERSION:3.0".into(),
        format!("PRODID:{PRODID}"),
        format!("UID:{uid}"),
        format!("FN:{}", escape(&write.title)),
        format!("N:{};;;;", escape(&write.title)),
    ];
    if !c.email.is_empty() {
        l.push(format!("EMAIL;TYPE=INTERNET:{}", c.email));
    }
    if !c.phone.is_empty() {
        l.push(format!("TEL:{}", escape(&c.phone)));
    }
    if !c.company.is_empty() {
        l.push(format!("ORG:{}", escape(&c.company)));
    }
    l.push(format!(
        "X-LEDGERSYNC-RECORD:{}",
        escape(record.id.as_str())
    ));
    l.push("END:VCARD".into());
    fold(&l)
}

/// Rewrites an existing calendar object for an update: SUMMARY from the title, TRANSP from
/// `show_as`, one VALARM when a reminder is set and none otherwise, SEQUENCE + 1, and for a
/// VTODO the completion (STATUS:COMPLETED and PERCENT-COMPLETE:100). Every other line stays as
/// it was. `None` when the text holds no VEVENT or VTODO.
pub fn edit_calendar(text: &str, write: &ItemWrite) -> Option<String> {
    let lines = unfold(text);
    let (begin, end, kind) = lines::component(&lines, &["VEVENT", "VTODO"])?;
    let todo = kind == "VTODO";
    let old_sequence = lines::property(&lines, begin, end, "SEQUENCE")
        .and_then(|l| value_of(l).trim().parse::<u64>().ok())
        .unwrap_or(0);
    let old_status = lines::property(&lines, begin, end, "STATUS")
        .map(|l| value_of(l).trim().to_ascii_uppercase());
    let due = lines::property(&lines, begin, end, "DUE").is_some();
    let mut owned: Vec<&str> = vec!["SUMMARY", "SEQUENCE"];
    if write.show_as.is_some() {
        owned.push("TRANSP");
    }
    let reopen = todo && !write.completed && old_status.as_deref() == Some("COMPLETED");
    if todo && (write.completed || reopen) {
        owned.extend(["STATUS", "PERCENT-COMPLETE", "COMPLETED"]);
    }
    let mut body: Vec<String> = Vec::new();
    let mut depth = 0usize;
    let mut in_alarm = false;
    for line in &lines[begin + 1..end] {
        let name = name_of(line);
        let value = value_of(line).trim().to_ascii_uppercase();
        match name.as_str() {
            "BEGIN" => {
                depth += 1;
                if depth == 1 && value == "VALARM" {
                    in_alarm = true;
                }
            }
            "END" => {
                if depth == 1 && in_alarm {
                    in_alarm = false;
                    depth -= 1;
                    continue;
                }
                depth = depth.saturating_sub(1);
            }
            _ => {}
        }
        if in_alarm || (depth == 0 && owned.contains(&name.as_str())) {
            continue;
        }
        body.push(line.clone());
    }
    body.push(format!("SUMMARY:{}", escape(&write.title)));
    body.push(format!("SEQUENCE:{}", old_sequence + 1));
    if let Some(show_as) = write.show_as {
        body.push(transp(show_as).into());
    }
    if todo && write.completed {
        body.push("STATUS:COMPLETED".into());
        body.push("PERCENT-COMPLETE:100".into());
        body.push(format!("COMPLETED:{}", now_stamp()));
    } else if reopen {
        body.push("STATUS:NEEDS-ACTION".into());
        body.push("PERCENT-COMPLETE:0".into());
    }
    if write.reminder {
        if todo {
            body.extend(task_alarm(due.then_some(Timestamp(0))));
        } else {
            body.extend(relative_alarm());
        }
    }
    let mut out: Vec<String> = lines[..=begin].to_vec();
    out.extend(body);
    out.extend(lines[end..].iter().cloned());
    Some(fold(&out))
}

/// Rewrites an existing vCard for an update: FN from the title; every other line stays.
pub fn edit_card(text: &str, write: &ItemWrite) -> String {
    let lines = unfold(text);
    let mut out = Vec::with_capacity(lines.len() + 1);
    let mut written = false;
    for line in lines {
        if name_of(&line) == "FN" {
            if !written {
                out.push(format!("FN:{}", escape(&write.title)));
                written = true;
            }
        } else if name_of(&line) == "END" && !written {
            out.push(format!("FN:{}", escape(&write.title)));
            written = true;
            out.push(line);
        } else {
            out.push(line);
        }
    }
    fold(&out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ledgersync_domain::time::timestamp_from_civil;

    fn write(title: &str) -> ItemWrite {
        ItemWrite {
            title: title.into(),
            version: 2,
            show_as: Some(ShowAs::Free),
            reminder: true,
            notify_attendees: false,
            attendees: 0,
            completed: true,
            actual_start: None,
        }
    }

    #[test]
    fn utc_format() {
        let t = timestamp_from_civil(2026, 11, 20, 14, 5) + ledgersync_domain::Duration(7000);
        assert_eq!(utc(t), "20261120T140507Z");
    }

    #[test]
    fn edit_replaces_owned_lines_and_keeps_the_rest() {
        let text = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nBEGIN:VTODO\r\nUID:t1\r\nSUMMARY:Old\r\n\
            X-OTHER:kept\r\nSEQUENCE:3\r\nSTATUS:NEEDS-ACTION\r\nBEGIN:VALARM\r\nACTION:AUDIO\r\n\
            TRIGGER:-PT5M\r\nEND:VALARM\r\nEND:VTODO\r\nEND:VCALENDAR\r\n";
        let out = edit_calendar(text, &write("New")).expect("edits");
        let lines = unfold(&out);
        assert!(lines.contains(&"SUMMARY:New".to_string()));
        assert!(lines.contains(&"X-OTHER:kept".to_string()));
        assert!(lines.contains(&"SEQUENCE:4".to_string()));
        assert!(lines.contains(&"STATUS:COMPLETED".to_string()));
        assert!(lines.contains(&"PERCENT-COMPLETE:100".to_string()));
        assert!(
            !lines
                .iter()
                .any(|l| l == "SUMMARY:Old" || l == "ACTION:AUDIO")
        );
        // No DUE: a reminder has no anchor, so the old alarm goes and none is added.
        assert!(!lines.iter().any(|l| l == "BEGIN:VALARM"));
    }
}
