//! Time zones the connector needs beyond a UTC instant: the mailbox owner's zone (floating
//! times, all-day dates) and a `VTIMEZONE` the zone database does not know, read by its own
//! offsets (RFC 5545 §3.6.5).
//!
//! A `VTIMEZONE` holds observances (`STANDARD`, `DAYLIGHT`), each with the local `DTSTART` of
//! its first onset, `TZOFFSETFROM`, `TZOFFSETTO` and either a yearly `RRULE` (`BYMONTH` with
//! `BYDAY` such as `-1SU` or `2SU`, or `BYDAY=SU` with `BYMONTHDAY=8,…,14`; `UNTIL` honoured),
//! `RDATE`s, or nothing (one onset). The offset of a local time is the `TZOFFSETTO` of the
//! observance whose latest onset is at or before it; before every onset, the `TZOFFSETFROM` of
//! the first. Rules of other shapes (monthly, by week number) are not read: their observance
//! counts by its first onset only.

use crate::lines::{name_of, value_of};
use chrono::{Datelike, Duration, NaiveDate, NaiveDateTime, TimeZone, Weekday};
use chrono_tz::Tz;
use ledgersync_domain::time::Timestamp;

/// One `STANDARD` or `DAYLIGHT` block.
#[derive(Clone, Debug, Default)]
struct Observance {
    start: Option<NaiveDateTime>,
    from: Option<i32>,
    to: Option<i32>,
    rule: Option<String>,
    dates: Vec<NaiveDateTime>,
}

/// A `VTIMEZONE` read by its offsets.
#[derive(Clone, Debug)]
pub(crate) struct CustomZone {
    observances: Vec<Observance>,
}

impl CustomZone {
    /// The `VTIMEZONE` with `TZID` `id` among unfolded `lines`, if it has an observance with an
    /// offset.
    pub(crate) fn find(lines: &[String], id: &str) -> Option<CustomZone> {
        let mut i = 0;
        while i < lines.len() {
            if is(&lines[i], "BEGIN", "VTIMEZONE") {
                let end = (i..lines.len()).find(|j| is(&lines[*j], "END", "VTIMEZONE"))?;
                let block = &lines[i..=end];
                let named = block
                    .iter()
                    .any(|l| name_of(l) == "TZID" && value_of(l).trim() == id.trim());
                if named {
                    let zone = read(block);
                    return (!zone.observances.is_empty()).then_some(zone);
                }
                i = end;
            }
            i += 1;
        }
        None
    }

    /// The offset east of UTC, in seconds, at local time `local`.
    pub(crate) fn offset_at(&self, local: NaiveDateTime) -> i32 {
        let mut best: Option<(NaiveDateTime, i32)> = None;
        let mut first: Option<(NaiveDateTime, i32)> = None;
        for o in &self.observances {
            let Some(to) = o.to else { continue };
            if let Some(start) = o.start
                && first.is_none_or(|(t, _)| start < t)
            {
                first = Some((start, o.from.unwrap_or(to)));
            }
            if let Some(onset) = o.latest_onset(local)
                && best.is_none_or(|(t, _)| onset > t)
            {
                best = Some((onset, to));
            }
        }
        best.or(first).map(|(_, off)| off).unwrap_or(0)
    }

    /// The UTC instant of local time `local` in this zone.
    pub(crate) fn to_utc(&self, local: NaiveDateTime) -> Timestamp {
        let offset = i64::from(self.offset_at(local));
        Timestamp((local.and_utc().timestamp() - offset) * 1000)
    }
}

impl Observance {
    /// The latest onset at or before `local`.
    fn latest_onset(&self, local: NaiveDateTime) -> Option<NaiveDateTime> {
        let start = self.start?;
        if start > local {
            return None;
        }
        let mut best = Some(start);
        for d in &self.dates {
            if *d <= local && best.is_none_or(|b| *d > b) {
                best = Some(*d);
            }
        }
        if let Some(rule) = &self.rule
            && let Some(yearly) = Yearly::parse(rule)
        {
            for year in [local.year(), local.year() - 1] {
                if let Some(onset) = yearly.onset(year, start)
                    && onset >= start
                    && onset <= local
                    && yearly.until.is_none_or(|u| onset <= u)
                    && best.is_none_or(|b| onset > b)
                {
                    best = Some(onset);
                }
            }
        }
        best
    }
}

/// A yearly rule: one onset a year, in `month`, on the `nth` `weekday` (negative: from the
/// end), or on the first `weekday` among `month_days`.
#[derive(Clone, Debug)]
struct Yearly {
    month: u32,
    weekday: Weekday,
    nth: Option<i32>,
    month_days: Vec<u32>,
    until: Option<NaiveDateTime>,
}

impl Yearly {
    fn parse(rule: &str) -> Option<Yearly> {
        let mut freq = None;
        let mut month = None;
        let mut byday = None;
        let mut month_days = Vec::new();
        let mut until = None;
        for part in rule.split(';') {
            let (k, v) = part.split_once('=')?;
            match k.trim().to_ascii_uppercase().as_str() {
                "FREQ" => freq = Some(v.trim().to_ascii_uppercase()),
                "BYMONTH" => month = v.trim().parse::<u32>().ok(),
                "BYDAY" => byday = Some(v.trim().to_ascii_uppercase()),
                "BYMONTHDAY" => {
                    month_days = v.split(',').filter_map(|d| d.trim().parse().ok()).collect()
                }
                "UNTIL" => until = date_time(v.trim()),
                _ => {}
            }
        }
        if freq.as_deref() != Some("YEARLY") {
            return None;
        }
        let byday = byday?;
        let (ordinal, day) = byday.split_at(byday.len().checked_sub(2)?);
        let weekday = match day {
            "MO" => Weekday::Mon,
            "TU" => Weekday::Tue,
            "WE" => Weekday::Wed,
            "TH" => Weekday::Thu,
            "FR" => Weekday::Fri,
            "SA" => Weekday::Sat,
            "SU" => Weekday::Sun,
            _ => return None,
        };
        let nth = match ordinal.trim_start_matches('+') {
            "" => None,
            n => Some(n.parse::<i32>().ok()?),
        };
        if nth.is_none() && month_days.is_empty() {
            return None;
        }
        Some(Yearly {
            month: month?,
            weekday,
            nth,
            month_days,
            until,
        })
    }

    /// The onset in `year`, at the clock time of `start`.
    fn onset(&self, year: i32, start: NaiveDateTime) -> Option<NaiveDateTime> {
        let first = NaiveDate::from_ymd_opt(year, self.month, 1)?;
        let next = if self.month == 12 {
            NaiveDate::from_ymd_opt(year + 1, 1, 1)?
        } else {
            NaiveDate::from_ymd_opt(year, self.month + 1, 1)?
        };
        let day = match self.nth {
            Some(n) if n > 0 => {
                let shift = (7 + self.weekday.num_days_from_monday()
                    - first.weekday().num_days_from_monday())
                    % 7;
                let d = first + Duration::days(i64::from(shift) + 7 * i64::from(n - 1));
                (d < next).then_some(d)?
            }
            Some(n) if n < 0 => {
                let last = next.pred_opt()?;
                let shift = (7 + last.weekday().num_days_from_monday()
                    - self.weekday.num_days_from_monday())
                    % 7;
                let d = last - Duration::days(i64::from(shift) + 7 * i64::from(-n - 1));
                (d >= first).then_some(d)?
            }
            _ => self
                .month_days
                .iter()
                .filter_map(|d| NaiveDate::from_ymd_opt(year, self.month, *d))
                .filter(|d| d.weekday() == self.weekday)
                .min()?,
        };
        Some(day.and_time(start.time()))
    }
}

fn is(line: &str, name: &str, value: &str) -> bool {
    name_of(line) == name && value_of(line).trim().eq_ignore_ascii_case(value)
}

fn read(block: &[String]) -> CustomZone {
    let mut observances = Vec::new();
    let mut current: Option<Observance> = None;
    for line in block {
        let name = name_of(line);
        let value = value_of(line).trim();
        match name.as_str() {
            "BEGIN"
                if value.eq_ignore_ascii_case("STANDARD")
                    || value.eq_ignore_ascii_case("DAYLIGHT") =>
            {
                current = Some(Observance::default());
            }
            "END"
                if current.is_some()
                    && (value.eq_ignore_ascii_case("STANDARD")
                        || value.eq_ignore_ascii_case("DAYLIGHT")) =>
            {
                observances.extend(current.take());
            }
            _ => {
                let Some(o) = current.as_mut() else { continue };
                match name.as_str() {
                    "DTSTART" => o.start = date_time(value),
                    "TZOFFSETFROM" => o.from = offset(value),
                    "TZOFFSETTO" => o.to = offset(value),
                    "RRULE" => o.rule = Some(value.to_string()),
                    "RDATE" => o.dates.extend(value.split(',').filter_map(date_time)),
                    _ => {}
                }
            }
        }
    }
    CustomZone { observances }
}

/// `19701025T030000` (a trailing `Z` is ignored) or a date `19701025`.
fn date_time(v: &str) -> Option<NaiveDateTime> {
    let v = v.trim().trim_end_matches(['Z', 'z']);
    NaiveDateTime::parse_from_str(v, "%Y%m%dT%H%M%S")
        .ok()
        .or_else(|| {
            NaiveDate::parse_from_str(v, "%Y%m%d")
                .ok()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
        })
}

/// `+0100`, `-0530`, `+013045` as seconds east of UTC.
fn offset(v: &str) -> Option<i32> {
    let v = v.trim();
    let (sign, digits) = match v.as_bytes().first()? {
        b'+' => (1, &v[1..]),
        b'-' => (-1, &v[1..]),
        _ => (1, v),
    };
    if !(digits.len() == 4 || digits.len() == 6) || !digits.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let h: i32 = digits[..2].parse().ok()?;
    let m: i32 = digits[2..4].parse().ok()?;
    let s: i32 = digits.get(4..6).map_or(Some(0), |x| x.parse().ok())?;
    Some(sign * (h * 3600 + m * 60 + s))
}

/// A mailbox owner's zone by its IANA name (`Europe/Berlin`, `America/New_York`, `UTC`), for
/// [`crate::VdirConfig::timezone`]. `Err`: what to write instead.
pub fn time_zone(name: &str) -> Result<Tz, String> {
    name.trim().parse::<Tz>().map_err(|_| {
        format!(
            "`{name}` is not a time zone of the IANA database; write a name such as \
             \"Europe/Berlin\", \"America/New_York\" or \"UTC\""
        )
    })
}

/// The UTC instant of a local (wall-clock) time in the owner's zone; `None` zone: UTC. A time
/// skipped by a daylight-saving jump is read one hour later, an ambiguous one as the earlier.
pub(crate) fn local_to_utc(local: NaiveDateTime, zone: Option<Tz>) -> Timestamp {
    let Some(tz) = zone else {
        return Timestamp(local.and_utc().timestamp_millis());
    };
    let at = tz.from_local_datetime(&local).earliest().or_else(|| {
        tz.from_local_datetime(&(local + Duration::hours(1)))
            .earliest()
    });
    match at {
        Some(at) => Timestamp(at.timestamp_millis()),
        None => Timestamp(local.and_utc().timestamp_millis()),
    }
}

/// The local date an all-day CRM time stands for, in the owner's zone (`None`: UTC): the date
/// of the nearest local midnight. The CRM gives an all-day appointment as midnight to midnight
/// in its user's zone, and the record keeps only the UTC instant; rounding to the nearest
/// midnight reads `2026-12-23T00:00+01:00` (22 December 23:00 UTC) as 23 December in a mailbox
/// on UTC as in one on Europe/Berlin, and is exact whenever the owner's zone is the CRM's.
pub(crate) fn all_day_date(t: Timestamp, zone: Option<Tz>) -> NaiveDate {
    let utc = chrono::DateTime::from_timestamp_millis(t.0).unwrap_or_default();
    let local = match zone {
        Some(tz) => utc.with_timezone(&tz).naive_local(),
        None => utc.naive_utc(),
    };
    (local + Duration::hours(12)).date()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lines::unfold;
    use ledgersync_domain::time::timestamp_from_civil;

    const ZONE: &str = "BEGIN:VTIMEZONE\nTZID:Custom Central\nBEGIN:STANDARD\n\
        DTSTART:16011028T030000\nTZOFFSETFROM:+0200\nTZOFFSETTO:+0100\n\
        RRULE:FREQ=YEARLY;BYMONTH=10;BYDAY=-1SU\nEND:STANDARD\nBEGIN:DAYLIGHT\n\
        DTSTART:16010325T020000\nTZOFFSETFROM:+0100\nTZOFFSETTO:+0200\n\
        RRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU\nEND:DAYLIGHT\nEND:VTIMEZONE\n";

    fn at(y: i32, m: u32, d: u32, h: u32) -> NaiveDateTime {
        NaiveDate::from_ymd_opt(y, m, d)
            .unwrap()
            .and_hms_opt(h, 0, 0)
            .unwrap()
    }

    #[test]
    fn an_unknown_zone_is_read_by_its_yearly_rules() {
        let zone = CustomZone::find(&unfold(ZONE), "Custom Central").expect("found");
        assert_eq!(zone.offset_at(at(2026, 1, 10, 12)), 3600);
        assert_eq!(zone.offset_at(at(2026, 3, 29, 1)), 3600);
        assert_eq!(zone.offset_at(at(2026, 3, 29, 3)), 7200);
        assert_eq!(zone.offset_at(at(2026, 7, 1, 12)), 7200);
        assert_eq!(zone.offset_at(at(2026, 10, 25, 4)), 3600);
        assert_eq!(
            zone.to_utc(at(2026, 7, 1, 12)),
            timestamp_from_civil(2026, 7, 1, 10, 0)
        );
        assert!(CustomZone::find(&unfold(ZONE), "Other").is_none());
    }

    #[test]
    fn nth_weekday_and_month_day_rules() {
        // US rules: second Sunday of March, first Sunday of November (old style by month days).
        let us = "BEGIN:VTIMEZONE\nTZID:Eastern\nBEGIN:DAYLIGHT\nDTSTART:20070311T020000\n\
            TZOFFSETFROM:-0500\nTZOFFSETTO:-0400\nRRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=2SU\n\
            END:DAYLIGHT\nBEGIN:STANDARD\nDTSTART:20071104T020000\nTZOFFSETFROM:-0400\n\
            TZOFFSETTO:-0500\nRRULE:FREQ=YEARLY;BYMONTH=11;BYDAY=SU;BYMONTHDAY=1,2,3,4,5,6,7\n\
            END:STANDARD\nEND:VTIMEZONE\n";
        let zone = CustomZone::find(&unfold(us), "Eastern").expect("found");
        assert_eq!(zone.offset_at(at(2026, 3, 8, 1)), -5 * 3600);
        assert_eq!(zone.offset_at(at(2026, 3, 8, 3)), -4 * 3600);
        assert_eq!(zone.offset_at(at(2026, 11, 1, 1)), -4 * 3600);
        assert_eq!(zone.offset_at(at(2026, 11, 1, 3)), -5 * 3600);
        assert_eq!(zone.offset_at(at(2026, 12, 24, 12)), -5 * 3600);
        // Before the first onset: the first observance's TZOFFSETFROM.
        assert_eq!(zone.offset_at(at(2000, 1, 1, 0)), -5 * 3600);
    }

    #[test]
    fn all_day_dates_round_to_the_nearest_local_midnight() {
        let berlin: Tz = "Europe/Berlin".parse().unwrap();
        let t = timestamp_from_civil(2026, 12, 22, 23, 0); // 2026-12-23T00:00+01:00
        assert_eq!(
            all_day_date(t, None),
            NaiveDate::from_ymd_opt(2026, 12, 23).unwrap()
        );
        assert_eq!(
            all_day_date(t, Some(berlin)),
            NaiveDate::from_ymd_opt(2026, 12, 23).unwrap()
        );
        let ny = timestamp_from_civil(2026, 12, 23, 5, 0); // 2026-12-23T00:00-05:00
        assert_eq!(
            all_day_date(ny, None),
            NaiveDate::from_ymd_opt(2026, 12, 23).unwrap()
        );
        let tonga: Tz = "Pacific/Tongatapu".parse().unwrap();
        let t13 = timestamp_from_civil(2026, 12, 22, 11, 0); // 2026-12-23T00:00+13:00
        assert_eq!(
            all_day_date(t13, Some(tonga)),
            NaiveDate::from_ymd_opt(2026, 12, 23).unwrap()
        );
    }
}
