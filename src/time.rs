//! Timestamps: microseconds since the epoch in storage, FHIR `instant` text outside.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Now, truncated to whole milliseconds so that the stored value and its
/// rendered `meta.lastUpdated` are the same instant.
pub fn now_micros() -> i64 {
    let now = OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
    i64::try_from(now * 1000).unwrap_or(i64::MAX)
}

/// `2026-11-22T10:04:05.123Z`
pub fn format_instant(micros: i64) -> String {
    let t = OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

/// Parses a FHIR `instant` (or a dateTime with seconds and zone) into microseconds.
pub fn parse_instant(s: &str) -> Option<i64> {
    let t = OffsetDateTime::parse(s, &Rfc3339).ok()?;
    i64::try_from(t.unix_timestamp_nanos() / 1000).ok()
}

pub fn to_system_time(micros: i64) -> std::time::SystemTime {
    std::time::UNIX_EPOCH + std::time::Duration::from_micros(u64::try_from(micros).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_round_trip() {
        let now = now_micros();
        assert_eq!(now % 1000, 0);
        assert_eq!(parse_instant(&format_instant(now)), Some(now));
        assert_eq!(format_instant(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            parse_instant("2020-01-01T01:00:00+01:00"),
            Some(1_577_836_800_000_000)
        );
        assert_eq!(parse_instant("2020-01-01"), None);
    }
}
