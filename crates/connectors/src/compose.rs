//! The text of items the connector writes: a new `.ics`/`.vcf` from a CRM row and an intent's
//! `ItemWrite`, and the edit of an existing item for an update.

use crate::lines::{self, escape, fold, name_of, param, unfold, value_of};
use crate::zone;
use chrono_tz::Tz;
use ledgersync_domain::event::ItemWrite;
use ledgersync_domain::records::{
    ActivityState, Appointment, Contact, Priority, Record, RecordBody, ShowAs, Task,
};
use ledgersync_domain::sequence::{meeting_sequence, organized_by_address};
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

/// What a write needs to know about the mailbox it writes to, beside the intent and the row.
#[derive(Clone, Copy, Debug)]
pub struct Mailbox<'a> {
    /// The mailbox owner's address (is the owner the meeting's organizer?).
    pub owner: &'a str,
    /// The owner's zone (all-day dates); `None`: UTC.
    pub zone: Option<Tz>,
}

/// The iCalendar `PRIORITY` of a CRM priority (RFC 5545 §3.8.1.9: 1 highest, 5 medium, 9
/// lowest).
fn priority(p: Priority) -> u8 {
    match p {
        Priority::High => 1,
        Priority::Normal => 5,
        Priority::Low => 9,
    }
}

/// The VEVENT `STATUS` of a CRM appointment state.
fn event_status(state: ActivityState) -> &'static str {
    match state {
        ActivityState::Canceled => "CANCELLED",
        ActivityState::Open => "TENTATIVE",
        ActivityState::Scheduled | ActivityState::Completed => "CONFIRMED",
    }
}

/// The properties of a VEVENT the CRM owns (R18, R26): an update removes them from the master
/// and writes them again from the row. RRULE only when the row has a recurrence pattern.
fn event_owned(a: &Appointment) -> Vec<&'static str> {
    let mut v = vec![
        "DTSTAMP",
        "DTSTART",
        "DTEND",
        "DURATION",
        "SUMMARY",
        "LOCATION",
        "DESCRIPTION",
        "ORGANIZER",
        "ATTENDEE",
        "STATUS",
        "PRIORITY",
        "TRANSP",
        "SEQUENCE",
    ];
    if a.recurrence.is_some() {
        v.push("RRULE");
    }
    v
}

/// The date lines of an appointment: UTC date-times, or for an all-day row the dates of its
/// start and end in the owner's zone (`zone::all_day_date`), at least one day apart.
fn event_dates(a: &Appointment, zone: Option<Tz>) -> [String; 2] {
    if a.all_day {
        let start = zone::all_day_date(a.start, zone);
        let end = zone::all_day_date(a.end, zone).max(start + chrono::Duration::days(1));
        [
            format!("DTSTART;VALUE=DATE:{}", start.format("%Y%m%d")),
            format!("DTEND;VALUE=DATE:{}", end.format("%Y%m%d")),
        ]
    } else {
        [
            format!("DTSTART:{}", utc(a.start)),
            format!("DTEND:{}", utc(a.end)),
        ]
    }
}

/// The lines of every property the CRM owns in a VEVENT, from the row (see [`event_owned`]).
/// `previous`: the master's lines before the update; an attendee listed there keeps the
/// participation status they answered unless the meeting moved (RFC 5546 §2.1.5: a
/// rescheduled meeting asks every attendee again).
fn event_lines(
    a: &Appointment,
    write: &ItemWrite,
    sequence: u64,
    mailbox: Mailbox<'_>,
    previous: &[String],
) -> Vec<String> {
    let dates = event_dates(a, mailbox.zone);
    let moved = !previous.is_empty()
        && !dates
            .iter()
            .all(|d| previous.iter().any(|p| p.eq_ignore_ascii_case(d)));
    let mut l = vec![format!("DTSTAMP:{}", now_stamp())];
    l.extend(dates);
    l.push(format!("SUMMARY:{}", escape(&write.title)));
    if !a.location.is_empty() {
        l.push(format!("LOCATION:{}", escape(&a.location)));
    }
    if !a.body.is_empty() {
        l.push(format!("DESCRIPTION:{}", escape(&a.body)));
    }
    let organizer = a.organizer.as_ref().map(|o| o.email.trim().to_lowercase());
    if let Some(o) = &a.organizer {
        l.push(mailto(&o.name, &o.email, "ORGANIZER"));
    }
    let roles = a
        .required
        .iter()
        .map(|p| (p, "REQ-PARTICIPANT"))
        .chain(a.optional.iter().map(|p| (p, "OPT-PARTICIPANT")));
    for (p, role) in roles {
        let is_organizer = organizer.as_deref() == Some(p.email.trim().to_lowercase().as_str());
        let partstat = if is_organizer {
            "ACCEPTED".to_string()
        } else if moved {
            "NEEDS-ACTION".to_string()
        } else {
            answered(previous, &p.email).unwrap_or_else(|| "NEEDS-ACTION".into())
        };
        let rsvp = if is_organizer { "" } else { ";RSVP=TRUE" };
        l.push(mailto(
            &p.name,
            &p.email,
            &format!("ATTENDEE;ROLE={role};PARTSTAT={partstat}{rsvp}"),
        ));
    }
    if let Some(rule) = &a.recurrence {
        l.push(format!("RRULE:{}", rule.trim_start_matches("RRULE:")));
    }
    l.push(format!("STATUS:{}", event_status(a.state)));
    l.push(format!("PRIORITY:{}", priority(a.priority)));
    l.push(transp(write.show_as.unwrap_or(a.show_as)).into());
    l.push(format!("SEQUENCE:{sequence}"));
    l
}

/// The PARTSTAT of the ATTENDEE line of `email` among `lines`, if any.
fn answered(lines: &[String], email: &str) -> Option<String> {
    let line = lines.iter().find(|l| {
        name_of(l) == "ATTENDEE"
            && value_of(l)
                .trim()
                .rsplit(':')
                .next()
                .is_some_and(|a| a.eq_ignore_ascii_case(email.trim()))
    })?;
    let params = &line[..line.len() - value_of(line).len()];
    params.split(';').find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.eq_ignore_ascii_case("PARTSTAT")
            .then(|| v.trim_end_matches(':').to_ascii_uppercase())
    })
}

/// The `SEQUENCE` a mailbox writes for `record` (R26, R29: one per meeting, see
/// `ledgersync_domain::sequence`).
pub fn sequence_of(record: &Record, a: &Appointment, owner: &str) -> u64 {
    meeting_sequence(record.version, organized_by_address(a, owner))
}

/// A new calendar object for an appointment.
pub fn appointment(
    uid: &str,
    record: &Record,
    a: &Appointment,
    write: &ItemWrite,
    mailbox: Mailbox<'_>,
) -> String {
    let mut l: Vec<String> = vec![
        "BEGIN:VCALENDAR".into(),
        "VERSION:2.0".into(),
        format!("PRODID:{PRODID}"),
        "BEGIN:VEVENT".into(),
        format!("UID:{uid}"),
    ];
    let sequence = sequence_of(record, a, mailbox.owner);
    l.extend(event_lines(a, write, sequence, mailbox, &[]));
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

/// The properties of a VTODO the CRM owns (R18, R47, R48).
const TODO_OWNED: [&str; 10] = [
    "DTSTAMP",
    "SUMMARY",
    "DESCRIPTION",
    "DTSTART",
    "DUE",
    "STATUS",
    "PERCENT-COMPLETE",
    "COMPLETED",
    "PRIORITY",
    "SEQUENCE",
];

/// The lines of every property the CRM owns in a VTODO. `completed_at`: the COMPLETED value
/// the item already had, kept while it stays completed.
fn todo_lines(
    t: &Task,
    write: &ItemWrite,
    sequence: u64,
    completed_at: Option<&str>,
) -> Vec<String> {
    let mut l = vec![
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
        let at = t.actual_end.map(utc);
        l.push(format!(
            "COMPLETED:{}",
            completed_at
                .map(str::to_string)
                .or(at)
                .unwrap_or_else(now_stamp)
        ));
    } else {
        let percent = t.percent_complete.min(99);
        let status = if percent > 0 {
            "IN-PROCESS"
        } else {
            "NEEDS-ACTION"
        };
        l.push(format!("STATUS:{status}"));
        l.push(format!("PERCENT-COMPLETE:{percent}"));
    }
    l.push(format!("PRIORITY:{}", priority(t.priority)));
    l.push(format!("SEQUENCE:{sequence}"));
    l
}

/// A new calendar object for a task (VTODO).
pub fn task(uid: &str, record: &Record, t: &Task, write: &ItemWrite) -> String {
    let mut l: Vec<String> = vec![
        "BEGIN:VCALENDAR".into(),
        "VERSION:2.0".into(),
        format!("PRODID:{PRODID}"),
        "BEGIN:VTODO".into(),
        format!("UID:{uid}"),
    ];
    l.extend(todo_lines(t, write, 0, None));
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

/// The structured name (`N`) of a full name, for a CRM that keeps only the full name:
/// `Family, Given Middle` when it holds a comma; otherwise the last word is the family name,
/// the first the given name and the words between additional names (`Kaylee Frye` →
/// `Frye;Kaylee;;;`, `River Tam` → `Tam;River;;;`, `Inara` → `Inara;;;;`). Prefixes and
/// suffixes are not guessed.
pub fn structured_name(full_name: &str) -> String {
    let join = |words: &[&str]| {
        words
            .iter()
            .map(|w| escape(w))
            .collect::<Vec<_>>()
            .join(",")
    };
    let (family, rest): (String, Vec<&str>) = match full_name.split_once(',') {
        Some((family, rest)) => (
            family.split_whitespace().collect::<Vec<_>>().join(" "),
            rest.split_whitespace().collect(),
        ),
        None => {
            let words: Vec<&str> = full_name.split_whitespace().collect();
            match words.split_last() {
                Some((last, first)) if !first.is_empty() => (last.to_string(), first.to_vec()),
                Some((only, _)) => (only.to_string(), Vec::new()),
                None => (String::new(), Vec::new()),
            }
        }
    };
    let given = rest.first().map(|g| escape(g)).unwrap_or_default();
    let additional = rest.get(1..).map(join).unwrap_or_default();
    format!("N:{};{given};{additional};;", escape(&family))
}

/// The contact properties the CRM owns, as lines to write (`None`: the CRM field is empty and
/// the first such line of the card goes). FN and N are always written.
fn card_owned(c: &Contact, write: &ItemWrite) -> [(&'static str, Option<String>); 5] {
    let non_empty = |s: &str, line: String| (!s.trim().is_empty()).then_some(line);
    [
        ("FN", Some(format!("FN:{}", escape(&write.title)))),
        ("N", Some(structured_name(&write.title))),
        (
            "EMAIL",
            non_empty(&c.email, format!("EMAIL;TYPE=INTERNET:{}", c.email.trim())),
        ),
        (
            "TEL",
            non_empty(&c.phone, format!("TEL:{}", escape(&c.phone))),
        ),
        (
            "ORG",
            non_empty(&c.company, format!("ORG:{}", escape(&c.company))),
        ),
    ]
}

/// A new vCard 3.0 for a contact (see `docs/connectors.md` for why 3.0).
pub fn contact(uid: &str, record: &Record, c: &Contact, write: &ItemWrite) -> String {
    let mut l: Vec<String> = vec![
        "BEGIN:VCARD".into(),
        "VERSION:3.0".into(),
        format!("PRODID:{PRODID}"),
        format!("UID:{uid}"),
    ];
    l.extend(
        card_owned(c, write)
            .into_iter()
            .filter_map(|(_, line)| line),
    );
    l.push(format!(
        "X-LEDGERSYNC-RECORD:{}",
        escape(record.id.as_str())
    ));
    l.push("END:VCARD".into());
    fold(&l)
}

/// The range `[begin, end]` of the master VEVENT or VTODO: the first one without
/// RECURRENCE-ID, wherever the overrides are in the file; else the first one.
pub(crate) fn master(lines: &[String]) -> Option<(usize, usize, String)> {
    let mut first = None;
    let mut from = 0;
    while from < lines.len() {
        let Some((b, e, kind)) = lines::component(&lines[from..], &["VEVENT", "VTODO"]) else {
            break;
        };
        let (b, e) = (b + from, e + from);
        if lines::property(lines, b, e, "RECURRENCE-ID").is_none() {
            return Some((b, e, kind));
        }
        first.get_or_insert((b, e, kind));
        from = e + 1;
    }
    first
}

/// True for a VALARM (its lines, BEGIN to END) that ledgersync wrote: the reminder of
/// [`alarm`], `DESCRIPTION:Reminder` with a 15-minute trigger.
fn ours(alarm: &[String]) -> bool {
    let has = |want: &str| alarm.iter().any(|l| l.eq_ignore_ascii_case(want));
    has("DESCRIPTION:Reminder")
        && has("ACTION:DISPLAY")
        && (has(&format!("TRIGGER:-PT{REMINDER_MINUTES}M"))
            || has(&format!("TRIGGER;RELATED=END:-PT{REMINDER_MINUTES}M")))
}

/// Rewrites an existing calendar object for an update.
///
/// Only the master component is edited (the VEVENT or VTODO without RECURRENCE-ID, wherever it
/// is in the file); overrides, VTIMEZONEs and everything else stay byte for byte. In the master,
/// every property the CRM owns is written again from `record` — for an event DTSTART/DTEND
/// (all-day on its date in the owner's zone), SUMMARY, LOCATION, DESCRIPTION, ORGANIZER, the
/// ATTENDEEs (required and optional, with ROLE and PARTSTAT), STATUS, PRIORITY, TRANSP, RRULE
/// when the row has a pattern, DTSTAMP and the meeting's SEQUENCE (`sequence_of`); for a task
/// SUMMARY, DESCRIPTION, DTSTART, DUE, STATUS, PERCENT-COMPLETE, COMPLETED, PRIORITY — and every
/// other property (X- properties, CATEGORIES, CLASS, RRULE the row does not give, EXDATE,
/// unknown ones) is kept. Alarms: with a reminder (R31) the user's own VALARMs stay and
/// ledgersync's is written when the user has none; without one (R30–R31: past or free) none
/// stays. Without `record` (a row the mailbox no longer holds) only what the intent carries is
/// written: SUMMARY, TRANSP, a task's completion, the alarms, SEQUENCE + 1. `None` when the
/// text holds no VEVENT or VTODO.
pub fn edit_calendar(
    text: &str,
    write: &ItemWrite,
    record: Option<&Record>,
    mailbox: Mailbox<'_>,
) -> Option<String> {
    let lines = unfold(text);
    let (begin, end, kind) = master(&lines)?;
    let todo = kind == "VTODO";
    let old: Vec<String> = lines::direct(&lines, begin, end)
        .map(|i| lines[i].clone())
        .collect();
    let value = |name: &str| {
        old.iter()
            .find(|l| name_of(l) == name)
            .map(|l| value_of(l).trim().to_string())
    };
    let old_sequence = value("SEQUENCE")
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    let (owned, new_lines): (Vec<&str>, Vec<String>) = match record.map(|r| (r, &r.body)) {
        Some((r, RecordBody::Appointment(a))) if !todo => (
            event_owned(a),
            event_lines(a, write, sequence_of(r, a, mailbox.owner), mailbox, &old),
        ),
        Some((_, RecordBody::Task(t))) if todo => {
            let completed_at = value("COMPLETED")
                .filter(|_| value("STATUS").is_some_and(|s| s.eq_ignore_ascii_case("COMPLETED")));
            (
                TODO_OWNED.to_vec(),
                todo_lines(t, write, old_sequence + 1, completed_at.as_deref()),
            )
        }
        _ => intent_only(write, todo, value("STATUS").as_deref(), old_sequence),
    };
    let mut body: Vec<String> = Vec::new();
    let mut alarms: Vec<Vec<String>> = Vec::new();
    let mut i = begin + 1;
    while i < end {
        let line = &lines[i];
        let name = name_of(line);
        if name == "BEGIN" {
            // A nested component: copied whole, alarms set aside.
            let (_, e, sub) = lines::component(&lines[i..end], &[value_of(line).trim()])?;
            let block = lines[i..=i + e].to_vec();
            if sub == "VALARM" {
                alarms.push(block);
            } else {
                body.extend(block);
            }
            i += e + 1;
            continue;
        }
        if !owned.contains(&name.as_str()) {
            body.push(line.clone());
        }
        i += 1;
    }
    body.extend(new_lines);
    if write.reminder {
        let users: Vec<Vec<String>> = alarms.into_iter().filter(|a| !ours(a)).collect();
        if users.is_empty() {
            if todo {
                let due = lines::property(&lines, begin, end, "DUE").is_some()
                    || record
                        .and_then(Record::task)
                        .is_some_and(|t| t.due.is_some());
                body.extend(task_alarm(due.then_some(Timestamp(0))));
            } else {
                body.extend(relative_alarm());
            }
        } else {
            body.extend(users.into_iter().flatten());
        }
    }
    let mut out: Vec<String> = lines[..=begin].to_vec();
    out.extend(body);
    out.extend(lines[end..].iter().cloned());
    Some(fold(&out))
}

/// The owned properties and their lines when the row is not at hand: what the intent carries.
fn intent_only(
    write: &ItemWrite,
    todo: bool,
    old_status: Option<&str>,
    old_sequence: u64,
) -> (Vec<&'static str>, Vec<String>) {
    let mut owned: Vec<&str> = vec!["SUMMARY", "SEQUENCE", "DTSTAMP"];
    let mut l = vec![
        format!("DTSTAMP:{}", now_stamp()),
        format!("SUMMARY:{}", escape(&write.title)),
        format!("SEQUENCE:{}", old_sequence + 1),
    ];
    if let Some(show_as) = write.show_as {
        owned.push("TRANSP");
        l.push(transp(show_as).into());
    }
    let reopen =
        todo && !write.completed && old_status.is_some_and(|s| s.eq_ignore_ascii_case("COMPLETED"));
    if todo && (write.completed || reopen) {
        owned.extend(["STATUS", "PERCENT-COMPLETE", "COMPLETED"]);
    }
    if todo && write.completed {
        l.push("STATUS:COMPLETED".into());
        l.push("PERCENT-COMPLETE:100".into());
        l.push(format!("COMPLETED:{}", now_stamp()));
    } else if reopen {
        l.push("STATUS:NEEDS-ACTION".into());
        l.push("PERCENT-COMPLETE:0".into());
    }
    (owned, l)
}

/// Rewrites an existing vCard for an update: FN and N from the title, and the first EMAIL, TEL
/// and ORG from the row (the value replaced, the user's parameters such as `TYPE=work` kept; the
/// line removed when the CRM field is empty, added when the card has none). Every other line —
/// further addresses and numbers the user added, photos, notes, X- properties — stays. Without
/// `record` only FN and N are written.
pub fn edit_card(text: &str, write: &ItemWrite, record: Option<&Record>) -> String {
    let mut lines = unfold(text);
    let owned: Vec<(&str, Option<String>)> = match record.map(|r| &r.body) {
        Some(RecordBody::Contact(c)) => card_owned(c, write).to_vec(),
        _ => vec![
            ("FN", Some(format!("FN:{}", escape(&write.title)))),
            ("N", Some(structured_name(&write.title))),
        ],
    };
    for (name, line) in owned {
        let at = lines.iter().position(|l| name_of(l) == name);
        match (at, line) {
            (Some(i), Some(new)) => {
                let old = &lines[i];
                let keep_params = matches!(name, "EMAIL" | "TEL" | "ORG");
                lines[i] = if keep_params {
                    let head = &old[..old.len() - value_of(old).len()];
                    format!("{head}{}", value_of(&new))
                } else {
                    new
                };
            }
            (Some(i), None) => {
                lines.remove(i);
            }
            (None, Some(new)) => {
                let end = lines
                    .iter()
                    .rposition(|l| name_of(l) == "END")
                    .unwrap_or(lines.len());
                lines.insert(end, new);
            }
            (None, None) => {}
        }
    }
    fold(&lines)
}

/// The text of an update: only the fields ledgersync owns edited in the item as it is
/// (`edit_calendar` for a calendar object, `edit_card` for a vCard). `None`: a calendar object
/// with no VEVENT or VTODO to edit.
pub(crate) fn edit_item(
    calendar: bool,
    text: &str,
    write: &ItemWrite,
    record: Option<&Record>,
    mailbox: Mailbox<'_>,
) -> Option<String> {
    if calendar {
        edit_calendar(text, write, record, mailbox)
    } else {
        Some(edit_card(text, write, record))
    }
}

/// What ledgersync writes must read back as the next listing will read it: `Err` says why
/// not (the write is refused as `malformed` and nothing is written).
pub(crate) fn parses_back(
    calendar: bool,
    text: &str,
    tracking_category: &str,
    zone: Option<Tz>,
) -> Result<(), String> {
    let parsed = if calendar {
        crate::parse::calendar(text, tracking_category, zone)
    } else {
        crate::parse::card(text, tracking_category)
    };
    parsed
        .map(|_| ())
        .map_err(|e| format!("the item written would not parse back ({e})"))
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
        let mailbox = Mailbox {
            owner: "paul@serenity.example",
            zone: None,
        };
        let out = edit_calendar(text, &write("New"), None, mailbox).expect("edits");
        let lines = unfold(&out);
        assert!(lines.contains(&"SUMMARY:New".to_string()));
        assert!(lines.contains(&"X-OTHER:kept".to_string()));
        assert!(lines.contains(&"SEQUENCE:4".to_string()));
        assert!(lines.contains(&"STATUS:COMPLETED".to_string()));
        assert!(lines.contains(&"PERCENT-COMPLETE:100".to_string()));
        assert!(!lines.iter().any(|l| l == "SUMMARY:Old"));
        // The user's own alarm stays (a reminder is set), and no second one is added.
        assert!(lines.iter().any(|l| l == "ACTION:AUDIO"));
        assert_eq!(lines.iter().filter(|l| *l == "BEGIN:VALARM").count(), 1);
    }
}
