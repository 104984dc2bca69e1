//! Wall-clock timestamps in the formats the Kubernetes API uses.
//!
//! `metav1.Time` is RFC 3339 with whole seconds (`2024-05-01T12:00:00Z`); `metav1.MicroTime` carries
//! microseconds. Civil dates are computed from the Unix day count with the well-known
//! "civil from days" arithmetic, so no date crate is needed.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Seconds in one day.
const SECONDS_PER_DAY: u64 = 86_400;

/// `now` as a `metav1.Time` string (whole seconds).
pub(crate) fn now_rfc3339() -> String {
    rfc3339(SystemTime::now())
}

/// `t` as a `metav1.Time` string (whole seconds, UTC).
pub(crate) fn rfc3339(t: SystemTime) -> String {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    let secs = since.as_secs();
    let (y, m, d) = civil_from_days(secs / SECONDS_PER_DAY);
    let rem = secs % SECONDS_PER_DAY;
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// `now` as a `metav1.MicroTime` string (microseconds, UTC), as Leases carry.
pub(crate) fn now_micro() -> String {
    let now = SystemTime::now();
    let micros = now
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .subsec_micros();
    let seconds = rfc3339(now);
    format!("{}.{micros:06}Z", seconds.trim_end_matches('Z'))
}

/// Converts a count of days since 1970-01-01 to (year, month, day).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    // Shift the epoch to 0000-03-01 so that leap days fall at the end of a 400-year era.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let t = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29 (a leap day)
        assert_eq!(rfc3339(t), "2000-02-29T00:00:00Z");
        let t = UNIX_EPOCH + Duration::from_secs(1_714_564_800 + 3_723);
        assert_eq!(rfc3339(t), "2024-05-01T13:02:03Z");
    }
}

/// Parses a `metav1.Time` string (`YYYY-MM-DDTHH:MM:SSZ`, fractions ignored).
pub(crate) fn parse_rfc3339(s: &str) -> Option<SystemTime> {
    let num = |r: std::ops::Range<usize>| s.get(r).and_then(|x| x.parse::<u64>().ok());
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, se) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || y < 1970 {
        return None;
    }
    let days = days_from_civil(y, mo, d);
    Some(UNIX_EPOCH + Duration::from_secs(days * SECONDS_PER_DAY + h * 3600 + mi * 60 + se))
}

/// Converts (year, month, day) to days since 1970-01-01 (inverse of `civil_from_days`).
fn days_from_civil(y: u64, m: u64, d: u64) -> u64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// A short age like kubectl prints (`5s`, `3m`, `2h`, `4d`).
pub(crate) fn short_age(since: SystemTime) -> String {
    let secs = SystemTime::now()
        .duration_since(since)
        .unwrap_or(Duration::ZERO)
        .as_secs();
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 2 * SECONDS_PER_DAY => format!("{}h", s / 3600),
        s => format!("{}d", s / SECONDS_PER_DAY),
    }
}

#[cfg(test)]
mod parse_tests {
    use super::*;

    #[test]
    fn parse_round_trips() {
        for secs in [0u64, 951_782_400, 1_714_568_523, 4_102_444_800] {
            let t = UNIX_EPOCH + Duration::from_secs(secs);
            assert_eq!(parse_rfc3339(&rfc3339(t)), Some(t));
        }
        assert_eq!(parse_rfc3339("garbage"), None);
    }
}
