//! Turning an `.ics` or `.vcf` file into the fields the rules read, with calcard.

use crate::lines::unfold;
use crate::zone::{CustomZone, local_to_utc};
use calcard::Entry;
use calcard::common::{IanaString, PartialDateTime};
use calcard::icalendar::timezone::TzResolver;
use calcard::icalendar::{
    ICalendar, ICalendarComponent, ICalendarComponentType, ICalendarProperty, ICalendarValue,
};
use calcard::vcard::{VCard, VCardProperty, VCardValue};
use chrono::{NaiveDate, NaiveDateTime};
use chrono_tz::Tz;
use ledgersync_domain::event::{RemoteFields, TrackedBy};
use ledgersync_domain::records::ShowAs;
use ledgersync_domain::time::{Duration, Timestamp, timestamp_from_civil};

/// What a file says, as the rules need it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Parsed {
    /// The parsed fields.
    pub fields: RemoteFields,
    /// `Some(Category)` when `CATEGORIES` holds the tracking category.
    pub tracked: Option<TrackedBy>,
}

/// Parses an iCalendar file: its first VEVENT or VTODO that is not a recurrence override.
/// `owner_zone` is the mailbox owner's zone (`None`: UTC), in which floating times and dates
/// are read.
pub fn calendar(
    text: &str,
    tracking_category: &str,
    owner_zone: Option<Tz>,
) -> Result<Parsed, String> {
    let cal = ICalendar::parse(text).map_err(|e| describe(e, text))?;
    let zones = Zones {
        known: cal.build_tz_resolver(),
        lines: unfold(text),
        owner: owner_zone,
    };
    let main = cal
        .components
        .iter()
        .find(|c| {
            c.component_type.is_event_or_todo() && !c.has_property(&ICalendarProperty::RecurrenceId)
        })
        .or_else(|| {
            cal.components
                .iter()
                .find(|c| c.component_type.is_event_or_todo())
        })
        .ok_or("no VEVENT or VTODO in the calendar object")?;
    let tracked = categories_hold(
        main.properties(&ICalendarProperty::Categories)
            .flat_map(|e| e.values.iter())
            .filter_map(|v| v.as_text()),
        tracking_category,
    );
    let subject = text_of(main, &ICalendarProperty::Summary).unwrap_or_default();
    let fields = if main.component_type == ICalendarComponentType::VEvent {
        let start = date_of(&zones, main, &ICalendarProperty::Dtstart)
            .ok_or("VEVENT without a readable DTSTART")?;
        let end = match date_of(&zones, main, &ICalendarProperty::Dtend) {
            Some((end, _)) => end,
            None => match main
                .property(&ICalendarProperty::Duration)
                .and_then(|e| e.values.first())
            {
                Some(ICalendarValue::Duration(d)) => start.0 + Duration(d.as_seconds() * 1000),
                // RFC 5545 §3.6.1: a date-only start lasts one day, a date-time start no time.
                _ if start.1 => start.0 + Duration::days(1),
                _ => start.0,
            },
        };
        let organizer = main
            .property(&ICalendarProperty::Organizer)
            .and_then(|e| e.values.first())
            .and_then(|v| v.as_text())
            .map(strip_mailto);
        let show_as = match main.transparency().map(|t| t.as_str()) {
            Some(t) if t.eq_ignore_ascii_case("TRANSPARENT") => ShowAs::Free,
            _ => ShowAs::Busy,
        };
        RemoteFields::Appointment {
            subject,
            organizer,
            start: start.0,
            end,
            show_as,
        }
    } else {
        let completed = main
            .status()
            .is_some_and(|s| s.as_str().eq_ignore_ascii_case("COMPLETED"));
        let percent = main
            .property(&ICalendarProperty::PercentComplete)
            .and_then(|e| e.values.first())
            .and_then(|v| v.as_integer())
            .map(|p| p.clamp(0, 100) as u8);
        RemoteFields::Task {
            subject,
            percent_complete: percent.unwrap_or(if completed { 100 } else { 0 }),
            due: date_of(&zones, main, &ICalendarProperty::Due).map(|d| d.0),
        }
    };
    Ok(Parsed { fields, tracked })
}

/// Parses a vCard file.
pub fn card(text: &str, tracking_category: &str) -> Result<Parsed, String> {
    let card = VCard::parse(text).map_err(|e| describe(e, text))?;
    let full_name = card
        .property(&VCardProperty::Fn)
        .and_then(|e| e.values.first())
        .and_then(|v| v.as_text())
        .map(str::to_string)
        .ok_or("vCard without FN (formatted name)")?;
    let email = card
        .property(&VCardProperty::Email)
        .and_then(|e| e.values.first())
        .and_then(|v| v.as_text())
        .map(strip_mailto)
        .unwrap_or_default();
    let categories = card
        .properties(&VCardProperty::Categories)
        .flat_map(|e| e.values.iter())
        .flat_map(|v| match v {
            VCardValue::Text(t) => vec![t.as_str()],
            VCardValue::Component(parts) => parts.iter().map(String::as_str).collect(),
            _ => vec![],
        });
    let tracked = categories_hold(categories, tracking_category);
    Ok(Parsed {
        fields: RemoteFields::Contact { full_name, email },
        tracked,
    })
}

fn categories_hold<'a>(
    values: impl Iterator<Item = &'a str>,
    tracking_category: &str,
) -> Option<TrackedBy> {
    let mut values = values.flat_map(|v| v.split(','));
    values
        .any(|v| v.trim().eq_ignore_ascii_case(tracking_category.trim()))
        .then_some(TrackedBy::Category)
}

fn text_of(c: &ICalendarComponent, p: &ICalendarProperty) -> Option<String> {
    c.property(p)
        .and_then(|e| e.values.first())
        .and_then(|v| v.as_text())
        .map(str::to_string)
}

/// What resolves the zone of a date-time: calcard's resolver (the IANA database, and the
/// calendar's VTIMEZONEs that name a zone it knows), the calendar's own VTIMEZONEs read by
/// their offsets (`zone.rs`), and the mailbox owner's zone for floating times.
struct Zones<'a> {
    known: TzResolver<&'a str>,
    lines: Vec<String>,
    owner: Option<Tz>,
}

/// A date property as a timestamp, and whether it was a date without a time. A date-time with
/// a `TZID` is resolved through the IANA database or, for a zone it does not know, through the
/// offsets of the calendar's VTIMEZONE of that name; a floating time (no `Z`, no `TZID`), a
/// `TZID` with no VTIMEZONE anyone can read, and a date are read in the mailbox owner's zone
/// (UTC when none is configured).
fn date_of(
    zones: &Zones<'_>,
    c: &ICalendarComponent,
    p: &ICalendarProperty,
) -> Option<(Timestamp, bool)> {
    let entry = c.property(p)?;
    let value = entry.values.first()?.as_partial_date_time()?;
    if value.tz_hour.is_some() {
        return timestamp(value);
    }
    let local = naive(value)?;
    let date_only = value.hour.is_none();
    if !date_only && let Some(id) = entry.tz_id() {
        if let Some(tz) = zones.known.resolve(id)
            && !tz.is_floating()
            && let Some(at) = value.to_date_time_with_tz(tz)
        {
            return Some((Timestamp(at.timestamp_millis()), false));
        }
        if let Some(zone) = CustomZone::find(&zones.lines, id) {
            return Some((zone.to_utc(local), false));
        }
    }
    Some((local_to_utc(local, zones.owner), date_only))
}

/// A date or date-time without its zone, as wall-clock time.
fn naive(d: &PartialDateTime) -> Option<NaiveDateTime> {
    let date = NaiveDate::from_ymd_opt(i32::from(d.year?), u32::from(d.month?), u32::from(d.day?))?;
    date.and_hms_opt(
        u32::from(d.hour.unwrap_or(0)),
        u32::from(d.minute.unwrap_or(0)),
        u32::from(d.second.unwrap_or(0)).min(59),
    )
}

/// A date or date-time as UTC milliseconds; a UTC offset is applied, anything else is UTC.
fn timestamp(d: &PartialDateTime) -> Option<(Timestamp, bool)> {
    let (y, m, day) = (d.year?, d.month?, d.day?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&day) {
        return None;
    }
    let date_only = d.hour.is_none();
    let local = timestamp_from_civil(
        i64::from(y),
        u32::from(m),
        u32::from(day),
        u32::from(d.hour.unwrap_or(0)),
        u32::from(d.minute.unwrap_or(0)),
    ) + Duration(i64::from(d.second.unwrap_or(0)) * 1000);
    let offset = Duration(
        (i64::from(d.tz_hour.unwrap_or(0)) * 3600 + i64::from(d.tz_minute.unwrap_or(0)) * 60)
            * 1000,
    );
    // local = utc + offset east of Greenwich; `tz_minus` marks an offset west of it.
    let utc = if d.tz_minus {
        local + offset
    } else {
        local - offset
    };
    Some((utc, date_only))
}

fn strip_mailto(value: &str) -> String {
    match value.split_once(':') {
        Some((scheme, address)) if scheme.eq_ignore_ascii_case("mailto") => address.to_string(),
        _ => value.to_string(),
    }
}

/// Says why calcard refused a file, by line number and property name: never the content of a
/// line (an item's text must not reach the journal, the projection or the log).
fn describe(entry: Entry, text: &str) -> String {
    match entry {
        Entry::InvalidLine(line) => {
            let at = line_number(text, &line)
                .map(|n| format!("line {n}"))
                .unwrap_or_else(|| "a line".to_string());
            match property_name(&line) {
                Some(name) => format!("{at} (property {name}) is not a valid content line"),
                None => format!("{at} is not a content line (NAME:value)"),
            }
        }
        Entry::UnexpectedComponentEnd { expected, found } => format!(
            "component {} ends where {} should",
            token(found.as_str()),
            token(expected.as_str())
        ),
        Entry::UnterminatedComponent(name) => {
            format!("component {} is never ended", token(&name))
        }
        Entry::TooManyComponents => "too many components".to_string(),
        Entry::Eof => "no calendar or card in the file".to_string(),
        Entry::VCard(_) => "a vCard where an iCalendar object was expected".to_string(),
        Entry::ICalendar(_) => "an iCalendar object where a vCard was expected".to_string(),
        _ => "not a calendar object or card ledgersync can read".to_string(),
    }
}

/// The 1-based number of the first line of `text` the refused `line` starts on.
fn line_number(text: &str, line: &str) -> Option<usize> {
    let wanted = line.trim();
    let head: String = wanted.chars().take(40).collect();
    if head.is_empty() {
        return None;
    }
    text.split('\n')
        .map(|l| l.trim_end_matches('\r').trim())
        .position(|l| !l.is_empty() && (l.starts_with(&head) || wanted.starts_with(l)))
        .map(|n| n + 1)
}

/// The property name of a content line (`NAME;params:value`), when it has one that looks like
/// a name (letters, digits and `-`, at most 64).
fn property_name(line: &str) -> Option<&str> {
    let end = line.find([':', ';'])?;
    let name = line[..end].trim();
    is_token(name).then_some(name)
}

fn is_token(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

/// A component name as written, when it looks like one; else a placeholder.
fn token(s: &str) -> String {
    if is_token(s) {
        s.to_string()
    } else {
        "(unnamed)".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EVENT: &str = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\n\
        BEGIN:VEVENT\r\nUID:e1\r\nDTSTAMP:20261120T100000Z\r\nDTSTART:20261120T140500Z\r\n\
        DTEND:20261120T150000+0100\r\nSUMMARY:Quarterly review\r\n\
        ORGANIZER;CN=Paul:mailto:paul@serenity.example\r\nTRANSP:TRANSPARENT\r\n\
        CATEGORIES:Work,Tracked to CRM\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n";

    #[test]
    fn event_fields() {
        let p = calendar(EVENT, "Tracked to CRM", None).expect("parses");
        assert_eq!(p.tracked, Some(TrackedBy::Category));
        assert_eq!(
            p.fields,
            RemoteFields::Appointment {
                subject: "Quarterly review".into(),
                organizer: Some("paul@serenity.example".into()),
                start: timestamp_from_civil(2026, 11, 20, 14, 5),
                end: timestamp_from_civil(2026, 11, 20, 14, 0),
                show_as: ShowAs::Free,
            }
        );
        let other = calendar(EVENT, "Something else", None).expect("parses");
        assert_eq!(other.tracked, None);
    }

    #[test]
    fn tzid_times_are_resolved() {
        let ics = "BEGIN:VCALENDAR\nVERSION:2.0\nPRODID:x\nBEGIN:VEVENT\nUID:z\n\
            DTSTAMP:20261120T100000Z\nDTSTART;TZID=Europe/Berlin:20261124T150000\n\
            DTEND;TZID=America/New_York:20260701T120000\nSUMMARY:zones\nEND:VEVENT\n\
            END:VCALENDAR\n";
        match calendar(ics, "x", None).expect("parses").fields {
            RemoteFields::Appointment { start, end, .. } => {
                // CET is UTC+1 in November; EDT is UTC-4 in July.
                assert_eq!(start, timestamp_from_civil(2026, 11, 24, 14, 0));
                assert_eq!(end, timestamp_from_civil(2026, 7, 1, 16, 0));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn todo_and_card_fields() {
        let todo = "BEGIN:VCALENDAR\nVERSION:2.0\nPRODID:x\nBEGIN:VTODO\nUID:t\n\
            DTSTAMP:20261120T100000Z\nSUMMARY:Call back\nSTATUS:COMPLETED\n\
            DUE;VALUE=DATE:20261201\nEND:VTODO\nEND:VCALENDAR\n";
        let p = calendar(todo, "Tracked to CRM", None).expect("parses");
        assert_eq!(
            p.fields,
            RemoteFields::Task {
                subject: "Call back".into(),
                percent_complete: 100,
                due: Some(timestamp_from_civil(2026, 12, 1, 0, 0)),
            }
        );
        let vcf = "BEGIN:VCARD\nVERSION:3.0\nFN:Kaylee Frye\nN:Frye;Kaylee;;;\n\
            EMAIL;TYPE=INTERNET:kaylee@serenity.example\nCATEGORIES:Tracked to CRM\nEND:VCARD\n";
        let c = card(vcf, "Tracked to CRM").expect("parses");
        assert_eq!(
            c.fields,
            RemoteFields::Contact {
                full_name: "Kaylee Frye".into(),
                email: "kaylee@serenity.example".into()
            }
        );
        assert_eq!(c.tracked, Some(TrackedBy::Category));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(calendar("this is not a calendar", "x", None).is_err());
        assert!(calendar("BEGIN:VCALENDAR\nBEGIN:VEVENT\nSUMMARY:x\n", "x", None).is_err());
        assert!(card("BEGIN:VCALENDAR\nEND:VCALENDAR\n", "x").is_err());
    }
}
