//! Durations in configuration, written the way PostgreSQL writes them: `500ms`, `5s`, `2min`.

use std::time::Duration;

/// A duration string that is not a number followed by one of PostgreSQL's time units.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid duration {input:?}: expected a whole number and a unit (us, ms, s, min, h, d), e.g. \"5s\""
)]
pub(crate) struct DurationError {
    input: String,
}

/// Parses `"250ms"`, `"5s"`, `"2min"`, `"1h"`, `"1d"`, `"10us"`, or `"0"`.
///
/// A unit is required (except for zero) because PostgreSQL's unitless default differs between
/// settings (milliseconds for `lock_timeout`, seconds for `authentication_timeout`).
pub(crate) fn parse_duration(input: &str) -> Result<Duration, DurationError> {
    let err = || DurationError {
        input: input.to_owned(),
    };
    let s = input.trim();
    let digits_end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, unit) = s.split_at(digits_end);
    let value: u64 = number.parse().map_err(|_| err())?;
    let per_unit = match unit.trim() {
        "" if value == 0 => Duration::ZERO,
        "us" => Duration::from_micros(1),
        "ms" => Duration::from_millis(1),
        "s" => Duration::from_secs(1),
        "min" => Duration::from_secs(60),
        "h" => Duration::from_secs(3600),
        "d" => Duration::from_secs(86_400),
        _ => return Err(err()),
    };
    per_unit
        .checked_mul(u32::try_from(value).map_err(|_| err())?)
        .ok_or_else(err)
}

/// Formats a duration with the largest unit that divides it exactly (inverse of
/// [`parse_duration`]).
pub(crate) fn format_duration(d: Duration) -> String {
    let us = d.as_micros();
    if us == 0 {
        return "0".into();
    }
    for (unit, size) in [
        ("d", 86_400_000_000u128),
        ("h", 3_600_000_000),
        ("min", 60_000_000),
        ("s", 1_000_000),
        ("ms", 1_000),
    ] {
        if us % size == 0 {
            return format!("{}{unit}", us / size);
        }
    }
    format!("{us}us")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_postgres_units() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_duration(" 2min ").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        assert_eq!(parse_duration("10us").unwrap(), Duration::from_micros(10));
    }

    #[test]
    fn refuses_missing_or_unknown_units() {
        for bad in ["5", "", "s", "5 sec", "-1s", "1.5s", "99999999999999s"] {
            let err = parse_duration(bad).unwrap_err();
            assert!(
                err.to_string().starts_with("invalid duration"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn format_is_the_inverse_of_parse() {
        for s in ["0", "250ms", "5s", "2min", "1h", "3d", "7us"] {
            assert_eq!(format_duration(parse_duration(s).unwrap()), s);
        }
    }
}
