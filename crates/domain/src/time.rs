//! Time as data. The domain never reads a clock: the shell passes `now` in.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::ops::{Add, Sub};

/// Milliseconds since the Unix epoch (UTC).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Timestamp(pub i64);

/// A length of time in milliseconds.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Duration(pub i64);

impl Duration {
    /// `n` minutes.
    pub const fn minutes(n: i64) -> Self {
        Self(n * 60_000)
    }
    /// `n` hours.
    pub const fn hours(n: i64) -> Self {
        Self(n * 3_600_000)
    }
    /// `n` days.
    pub const fn days(n: i64) -> Self {
        Self(n * 86_400_000)
    }
    /// Whole minutes.
    pub const fn as_minutes(self) -> i64 {
        self.0 / 60_000
    }
}

impl Add<Duration> for Timestamp {
    type Output = Timestamp;
    fn add(self, d: Duration) -> Timestamp {
        Timestamp(self.0.saturating_add(d.0))
    }
}

impl Sub<Duration> for Timestamp {
    type Output = Timestamp;
    fn sub(self, d: Duration) -> Timestamp {
        Timestamp(self.0.saturating_sub(d.0))
    }
}

impl Sub<Timestamp> for Timestamp {
    type Output = Duration;
    fn sub(self, t: Timestamp) -> Duration {
        Duration(self.0.saturating_sub(t.0))
    }
}

impl fmt::Display for Timestamp {
    /// ISO 8601 in UTC, minute precision (`2026-11-20 14:05Z`), computed without a clock.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0;
        let secs = ms.div_euclid(1000);
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        write!(
            f,
            "{y:04}-{m:02}-{d:02} {:02}:{:02}Z",
            rem / 3600,
            (rem % 3600) / 60
        )
    }
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// (year, month, day, hour, minute) to a timestamp, the inverse of `Display`.
pub fn timestamp_from_civil(y: i64, m: u32, d: u32, hh: u32, mm: u32) -> Timestamp {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if m > 2 { m - 3 } else { m + 9 } as i64;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Timestamp((days * 86_400 + hh as i64 * 3600 + mm as i64 * 60) * 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_round_trip() {
        let t = timestamp_from_civil(2026, 11, 20, 14, 5);
        assert_eq!(t.to_string(), "2026-11-20 14:05Z");
        assert_eq!(Timestamp(0).to_string(), "1970-01-01 00:00Z");
        assert_eq!(
            timestamp_from_civil(2024, 2, 29, 0, 0).to_string(),
            "2024-02-29 00:00Z"
        );
    }
}
