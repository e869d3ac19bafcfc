//! Platform time strings (spec §1.5, §1.6, §1.2).
//!
//! Bodies carry `yyyy-MM-dd HH:mm:ss` in UTC; a legacy demo shows two spaces between date and
//! time, and absent values are often sent as "". X-AKSK `Created` is `yyyy-MM-ddTHH:mm:ssZ`.
//! Both are read by one lenient parser: what it cannot read is kept raw by the caller, never a
//! reason to reject a callback.

use time::{
    OffsetDateTime, PrimitiveDateTime, format_description::FormatItem, macros::format_description,
};

const DATE_TIME: &[FormatItem<'static>] =
    format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");

/// Reads a platform time as UTC. `None` for blank input or anything that is not a time.
pub fn parse_platform_time(raw: &str) -> Option<OffsetDateTime> {
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return None;
    }
    let trimmed = trimmed.strip_suffix('Z').unwrap_or(trimmed);
    let (date, clock) = trimmed.split_once(['T', ' '])?;
    let normalized = format!("{} {}", date.trim(), clock.trim());
    PrimitiveDateTime::parse(&normalized, DATE_TIME)
        .ok()
        .map(PrimitiveDateTime::assume_utc)
}

/// The platform's rendering of a time, as used in bodies.
pub fn format_platform_time(at: OffsetDateTime) -> String {
    let at = at.to_offset(time::UtcOffset::UTC);
    at.format(DATE_TIME).expect("a UTC time always formats")
}

/// The X-AKSK `Created` rendering: `yyyy-MM-ddTHH:mm:ssZ`.
pub fn format_created(at: OffsetDateTime) -> String {
    let at = at.to_offset(time::UtcOffset::UTC);
    at.format(format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second]Z"
    ))
    .expect("a UTC time always formats")
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    #[test]
    fn reads_the_documented_form_as_utc() {
        assert_eq!(
            parse_platform_time("2019-01-24 03:04:24"),
            Some(datetime!(2019-01-24 03:04:24 UTC))
        );
    }

    #[test]
    fn tolerates_two_spaces_surrounding_blanks_and_the_created_form() {
        let expected = Some(datetime!(2019-01-24 03:04:24 UTC));
        assert_eq!(parse_platform_time("2019-01-24  03:04:24"), expected);
        assert_eq!(parse_platform_time(" 2019-01-24 03:04:24 "), expected);
        assert_eq!(parse_platform_time("2019-01-24T03:04:24Z"), expected);
    }

    #[test]
    fn blank_and_garbage_are_absent() {
        assert_eq!(parse_platform_time(""), None);
        assert_eq!(parse_platform_time("   "), None);
        assert_eq!(parse_platform_time("1548299064"), None);
        assert_eq!(parse_platform_time("2019-13-24 03:04:24"), None);
    }

    #[test]
    fn formats_round_trip() {
        let at = datetime!(2026-11-24 08:09:10 UTC);
        assert_eq!(format_platform_time(at), "2026-11-24 08:09:10");
        assert_eq!(format_created(at), "2026-11-24T08:09:10Z");
        assert_eq!(parse_platform_time(&format_created(at)), Some(at));
    }
}
