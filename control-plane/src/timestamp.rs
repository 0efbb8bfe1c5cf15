//! How the control plane writes times in its API (RFC 3339 with milliseconds, UTC) and reads
//! them (RFC 3339 with any offset), and the minutes usage is counted in.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// `t` as RFC 3339 with milliseconds.
pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// Unix milliseconds (as stored in the database) as RFC 3339.
pub fn rfc3339_ms(ms: i64) -> String {
    rfc3339(UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64))
}

/// RFC 3339 (`2024-01-01T00:00:00Z`, `2024-01-01T02:00:00.5+02:00`; `t`, `z` and a space
/// for the `+` of an offset, as a query string decodes it, are accepted too); `None` for
/// anything else or a time before 1970.
pub fn parse_rfc3339(text: &str) -> Option<SystemTime> {
    if !text.is_ascii() || text.len() < 20 {
        return None;
    }
    let mut text = text.to_ascii_uppercase();
    let bytes = text.as_bytes();
    let offset_at = text.len() - 6;
    let offset_s = match (bytes[offset_at], bytes[offset_at + 3]) {
        (sign @ (b'+' | b'-' | b' '), b':') if offset_at >= 19 => {
            let hours = two_digits(&bytes[offset_at + 1..offset_at + 3])?;
            let minutes = two_digits(&bytes[offset_at + 4..])?;
            if hours > 23 || minutes > 59 {
                return None;
            }
            let magnitude = ((hours * 60 + minutes) * 60) as i64;
            text.truncate(offset_at);
            text.push('Z');
            if sign == b'-' { -magnitude } else { magnitude }
        }
        _ => 0,
    };
    let local = humantime::parse_rfc3339(&text).ok()?;
    // Local time minus the offset is UTC.
    let magnitude = Duration::from_secs(offset_s.unsigned_abs());
    if offset_s >= 0 {
        local.checked_sub(magnitude)
    } else {
        local.checked_add(magnitude)
    }
    .filter(|t| *t >= UNIX_EPOCH)
}

/// Two ASCII digits as a number.
fn two_digits(digits: &[u8]) -> Option<u64> {
    match digits {
        [tens @ b'0'..=b'9', ones @ b'0'..=b'9'] => {
            Some(u64::from((tens - b'0') * 10 + (ones - b'0')))
        }
        _ => None,
    }
}

/// The start of the minute that contains `t`, in Unix seconds (0 before 1970).
pub fn minute_start(t: SystemTime) -> i64 {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    i64::try_from(secs - secs % 60).unwrap_or(i64::MAX - 59)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_milliseconds_in_utc() {
        assert_eq!(rfc3339_ms(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        assert_eq!(rfc3339_ms(-5), "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn parses_rfc3339_with_any_offset() {
        let at = |s| UNIX_EPOCH + Duration::from_secs(s);
        let new_year = 1_704_067_200;
        for (text, expected) in [
            ("2024-01-01T00:00:00Z", at(new_year)),
            ("2024-01-01t00:00:00z", at(new_year)),
            ("2024-01-01T00:00:00+00:00", at(new_year)),
            ("2024-01-01T02:30:00+02:30", at(new_year)),
            ("2024-01-01T02:30:00 02:30", at(new_year)),
            ("2023-12-31T23:00:00-01:00", at(new_year)),
            (
                "2024-01-01T00:00:01.250Z",
                at(new_year + 1) + Duration::from_millis(250),
            ),
            (
                "2024-01-01T01:00:01.5+01:00",
                at(new_year + 1) + Duration::from_millis(500),
            ),
        ] {
            assert_eq!(parse_rfc3339(text), Some(expected), "{text}");
        }
        for bad in [
            "",
            "2024-01-01",
            "2024-01-01T00:00:00",
            "2024-01-01T00:00:00+24:00",
            "2024-01-01T00:00:00+02:60",
            "2024-13-01T00:00:00Z",
            "1969-12-31T23:59:59Z",
            "1970-01-01T00:30:00+01:00",
            "2024-01-01T00:00:00Zé",
            "2024-01-01T00:00:00+0x:00",
            "2024-01-01T00:00:00++1:00",
            "5m",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn minutes_start_on_multiples_of_sixty() {
        let t = UNIX_EPOCH + Duration::from_millis(1_704_067_259_999);
        assert_eq!(minute_start(t), 1_704_067_200);
        assert_eq!(minute_start(UNIX_EPOCH - Duration::from_secs(5)), 0);
    }
}
