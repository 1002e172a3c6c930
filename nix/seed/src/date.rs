//! Calendar arithmetic for UTC timestamps, in one place (Howard Hinnant's
//! civil-from-days algorithms): the seed has no date library and needs only
//! this. No clock is read here.

/// (year, month, day) of a count of days since 1970-01-01 (proleptic
/// Gregorian; negative counts are before 1970).
pub fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
pub fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `YYYY-MM-DD`, and `HH`, `MM`, `SS` of a Unix time (UTC).
fn parts(epoch: i64) -> ((i64, i64, i64), i64, i64, i64) {
    let secs = epoch.rem_euclid(86_400);
    (
        civil_from_days(epoch.div_euclid(86_400)),
        secs / 3600,
        secs % 3600 / 60,
        secs % 60,
    )
}

/// RFC 3339 UTC, `2026-07-11T10:16:37Z`: the form of OCI `created`, SPDX,
/// CycloneDX and SLSA timestamps.
pub fn rfc3339(epoch: i64) -> String {
    let ((y, m, d), h, mi, s) = parts(epoch);
    format!("{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
}

/// `2026-07-11 10:16:37 UTC`, for messages.
pub fn human(epoch: i64) -> String {
    let ((y, m, d), h, mi, s) = parts(epoch);
    format!("{y:04}-{m:02}-{d:02} {h:02}:{mi:02}:{s:02} UTC")
}

/// Parses an RFC 3339 UTC timestamp (`2021-01-12T11:53:27Z`, with an
/// optional fraction, which is dropped) into a Unix time. Only `Z` is
/// accepted: the formats kiln reads (trusted roots, statements) write UTC.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let s = s.strip_suffix('Z').or_else(|| s.strip_suffix('z'))?;
    let (date, time) = s.split_once(['T', 't'])?;
    let time = time.split_once('.').map_or(time, |(t, _)| t);
    let num = |t: &str, len: usize| -> Option<i64> {
        (t.len() == len && t.bytes().all(|b| b.is_ascii_digit()))
            .then(|| t.parse().ok())
            .flatten()
    };
    let mut d = date.split('-');
    let (y, m, day) = (num(d.next()?, 4)?, num(d.next()?, 2)?, num(d.next()?, 2)?);
    let mut t = time.split(':');
    let (h, mi, sec) = (num(t.next()?, 2)?, num(t.next()?, 2)?, num(t.next()?, 2)?);
    if d.next().is_some() || t.next().is_some() {
        return None;
    }
    if !(1..=12).contains(&m) || !(1..=31).contains(&day) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    Some(days_from_civil(y, m, day) * 86_400 + h * 3600 + mi * 60 + sec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_dates_and_round_trips() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_783_764_997), "2026-07-11T10:16:37Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59Z");
        assert_eq!(human(1_783_764_997), "2026-07-11 10:16:37 UTC");
        assert_eq!(parse_rfc3339("2026-07-11T10:16:37Z"), Some(1_783_764_997));
        assert_eq!(
            parse_rfc3339("2022-10-31T23:59:59.999Z"),
            Some(1_667_260_799)
        );
        assert_eq!(parse_rfc3339("2026-07-11T10:16:37+02:00"), None);
        assert_eq!(parse_rfc3339("2026-7-11T10:16:37Z"), None);
        for days in [-800_000, -1, 0, 59, 60, 11_016, 20_000, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days, "{y}-{m}-{d}");
        }
    }
}
