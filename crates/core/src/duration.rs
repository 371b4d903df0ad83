//! Durations as users write them: `"30s"`, `"10m"`, `"0.5h"`, `"2d"`, `"600s"`, `"1.5"`
//! (plain seconds), or a JSON number of seconds.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A duration that reads from `"30s"`-style strings or numbers of seconds and
/// writes itself as seconds with an `s` suffix (`"0.1s"`, `"3600s"`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HumanDuration(pub Duration);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {input:?}: {reason}")]
pub struct DurationError {
    pub input: String,
    pub reason: String,
}

impl HumanDuration {
    pub const fn from_secs(secs: u64) -> Self {
        HumanDuration(Duration::from_secs(secs))
    }

    pub const fn from_millis(ms: u64) -> Self {
        HumanDuration(Duration::from_millis(ms))
    }

    pub fn as_duration(self) -> Duration {
        self.0
    }
}

const NANOS_PER_SEC: u128 = 1_000_000_000;

/// Digits after the point kept when parsing; beyond this the input is finer
/// than a nanosecond even for days, so the rest is dropped.
const MAX_FRACTION_DIGITS: usize = 15;

/// Parses `"30s"`, `"10m"`, `"0.5h"`, `"2d"`, `"600s"`, `"100ms"` or plain seconds.
///
/// Units are `ms`, `s`, `m`, `h` and `d`; a number without a unit is seconds.
/// Decimals are exact (`"0.1s"` is 100 ms, not a float approximation), and
/// anything finer than a nanosecond is truncated.
///
/// ```
/// use std::time::Duration;
/// use redrive_core::duration::parse_duration;
///
/// assert_eq!(parse_duration("0.5h").unwrap(), Duration::from_secs(1800));
/// assert_eq!(parse_duration("100ms").unwrap(), Duration::from_millis(100));
/// assert!(parse_duration("-5s").is_err());
/// ```
pub fn parse_duration(input: &str) -> Result<Duration, DurationError> {
    let fail = |reason: &str| DurationError {
        input: input.to_string(),
        reason: reason.to_string(),
    };
    let text = input.trim();
    if text.is_empty() {
        return Err(fail("empty; write a number with a unit, like \"30s\""));
    }
    if text.starts_with('-') {
        return Err(fail("negative durations are not allowed"));
    }
    let number_len = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(number_len);
    if !number.bytes().any(|b| b.is_ascii_digit()) {
        return Err(fail(
            "expected a number of seconds or a number with a unit (ms, s, m, h, d), like \"30s\"",
        ));
    }
    let (whole, fraction) = match number.split_once('.') {
        Some((_, rest)) if rest.contains('.') => {
            return Err(fail("malformed number: more than one decimal point"));
        }
        Some((whole, fraction)) => (whole, fraction),
        None => (number, ""),
    };
    let unit_nanos: u128 = match unit.trim_start() {
        "" | "s" => NANOS_PER_SEC,
        "ms" => 1_000_000,
        "m" => 60 * NANOS_PER_SEC,
        "h" => 3600 * NANOS_PER_SEC,
        "d" => 86_400 * NANOS_PER_SEC,
        other => {
            return Err(fail(&format!(
                "unknown unit {other:?}; use ms, s, m, h or d"
            )));
        }
    };
    let too_large = || fail("too large");
    let whole_nanos = digits_value(whole)
        .and_then(|w| w.checked_mul(unit_nanos))
        .ok_or_else(too_large)?;
    let fraction = &fraction[..fraction.len().min(MAX_FRACTION_DIGITS)];
    // fraction < 10^15 and unit_nanos < 10^14, so the product fits in u128.
    let fraction_nanos = digits_value(fraction).ok_or_else(too_large)? * unit_nanos
        / 10u128.pow(fraction.len() as u32);
    let total = whole_nanos
        .checked_add(fraction_nanos)
        .ok_or_else(too_large)?;
    let secs = u64::try_from(total / NANOS_PER_SEC).map_err(|_| too_large())?;
    let nanos = (total % NANOS_PER_SEC) as u32;
    Ok(Duration::new(secs, nanos))
}

/// The value of a run of ASCII digits (`""` is 0); `None` on overflow.
fn digits_value(digits: &str) -> Option<u128> {
    digits.bytes().try_fold(0u128, |acc, b| {
        acc.checked_mul(10)?.checked_add(u128::from(b - b'0'))
    })
}

/// `nanos` (< 1e9) as `".5"`, `".25"`, `".000001"`; empty when zero.
fn fraction_digits(nanos: u32) -> String {
    if nanos == 0 {
        return String::new();
    }
    let digits = format!(".{nanos:09}");
    digits.trim_end_matches('0').to_string()
}

/// Compact human form for tables: `"100ms"`, `"10s"`, `"2m 40s"`, `"1h"`, `"1d 2h"`.
///
/// Below a second the value is in milliseconds (`"100ms"`, `"0.5ms"`); below a
/// minute in seconds with the fraction kept (`"1.5s"`); above that in the
/// largest units, leaving out parts that are zero (`"1h 5s"`, `"2m 0.5s"`).
///
/// ```
/// use std::time::Duration;
/// use redrive_core::duration::format_duration;
///
/// assert_eq!(format_duration(Duration::from_secs(160)), "2m 40s");
/// assert_eq!(format_duration(Duration::from_secs(93_600)), "1d 2h");
/// ```
pub fn format_duration(d: Duration) -> String {
    let secs = d.as_secs();
    let nanos = d.subsec_nanos();
    if secs == 0 {
        if nanos == 0 {
            return "0s".to_string();
        }
        let millis = nanos / 1_000_000;
        // Scale the sub-millisecond remainder to look like a fraction of a second.
        let rest = fraction_digits((nanos % 1_000_000) * 1000);
        return format!("{millis}{rest}ms");
    }
    let mut parts = Vec::new();
    let days = secs / 86_400;
    let hours = secs % 86_400 / 3600;
    let minutes = secs % 3600 / 60;
    let seconds = secs % 60;
    for (count, unit) in [(days, "d"), (hours, "h"), (minutes, "m")] {
        if count > 0 {
            parts.push(format!("{count}{unit}"));
        }
    }
    if seconds > 0 || nanos > 0 {
        parts.push(format!("{seconds}{}s", fraction_digits(nanos)));
    }
    parts.join(" ")
}

impl From<Duration> for HumanDuration {
    fn from(d: Duration) -> Self {
        HumanDuration(d)
    }
}

impl From<HumanDuration> for Duration {
    fn from(d: HumanDuration) -> Self {
        d.0
    }
}

impl std::str::FromStr for HumanDuration {
    type Err = DurationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_duration(s).map(HumanDuration)
    }
}

/// The serialized form: seconds with an `s` suffix (`"0.1s"`, `"3600s"`).
impl std::fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}{}s",
            self.0.as_secs(),
            fraction_digits(self.0.subsec_nanos())
        )
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(HumanDurationVisitor)
    }
}

struct HumanDurationVisitor;

impl serde::de::Visitor<'_> for HumanDurationVisitor {
    type Value = HumanDuration;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a duration like \"30s\", \"10m\", \"0.5h\", or a number of seconds")
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<HumanDuration, E> {
        parse_duration(v).map(HumanDuration).map_err(E::custom)
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<HumanDuration, E> {
        Ok(HumanDuration::from_secs(v))
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<HumanDuration, E> {
        match u64::try_from(v) {
            Ok(secs) => Ok(HumanDuration::from_secs(secs)),
            Err(_) => Err(E::custom(format!(
                "invalid duration {v}: negative durations are not allowed"
            ))),
        }
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<HumanDuration, E> {
        if !v.is_finite() {
            return Err(E::custom(format!(
                "invalid duration {v}: not a finite number"
            )));
        }
        if v < 0.0 {
            return Err(E::custom(format!(
                "invalid duration {v}: negative durations are not allowed"
            )));
        }
        // f64's Display is the shortest decimal that reads back as `v` and
        // never uses an exponent, so 0.1 becomes exactly 100ms instead of
        // the binary approximation's 99.999…ms.
        self.visit_str(&(v.abs()).to_string())
    }
}

impl utoipa::PartialSchema for HumanDuration {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::schema::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .description(Some(
                "A duration: \"30s\", \"10m\", \"0.5h\", \"2d\", or a number of seconds",
            ))
            .examples([serde_json::json!("10s")])
            .into()
    }
}

impl utoipa::ToSchema for HumanDuration {}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn ms(m: u64) -> Duration {
        Duration::from_millis(m)
    }

    #[test]
    fn parse_accepts_every_unit() {
        assert_eq!(parse_duration("30s").unwrap(), secs(30));
        assert_eq!(parse_duration("600s").unwrap(), secs(600));
        assert_eq!(parse_duration("10m").unwrap(), secs(600));
        assert_eq!(parse_duration("0.5h").unwrap(), secs(1800));
        assert_eq!(parse_duration("2d").unwrap(), secs(172_800));
        assert_eq!(parse_duration("100ms").unwrap(), ms(100));
        assert_eq!(parse_duration("0s").unwrap(), Duration::ZERO);
    }

    #[test]
    fn parse_reads_a_bare_number_as_seconds() {
        assert_eq!(parse_duration("10").unwrap(), secs(10));
        assert_eq!(parse_duration("1.5").unwrap(), ms(1500));
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
    }

    #[test]
    fn parse_decimals_are_exact_not_float_approximations() {
        assert_eq!(parse_duration("0.1s").unwrap(), ms(100));
        assert_eq!(parse_duration("0.1").unwrap(), ms(100));
        assert_eq!(parse_duration("0.3").unwrap(), ms(300));
        assert_eq!(parse_duration("1.000000001s").unwrap(), Duration::new(1, 1));
        assert_eq!(parse_duration("0.5ms").unwrap(), Duration::from_micros(500));
        assert_eq!(parse_duration("0.25d").unwrap(), secs(21_600));
    }

    #[test]
    fn parse_truncates_below_a_nanosecond() {
        assert_eq!(
            parse_duration("0.0000000019s").unwrap(),
            Duration::new(0, 1)
        );
        assert_eq!(
            parse_duration("1.12345678901234567890").unwrap(),
            Duration::new(1, 123_456_789)
        );
    }

    #[test]
    fn parse_tolerates_surrounding_whitespace_and_a_space_before_the_unit() {
        assert_eq!(parse_duration("  30s\n").unwrap(), secs(30));
        assert_eq!(parse_duration("\t10 m ").unwrap(), secs(600));
    }

    #[test]
    fn parse_accepts_a_leading_or_trailing_decimal_point() {
        assert_eq!(parse_duration(".5s").unwrap(), ms(500));
        assert_eq!(parse_duration("5.s").unwrap(), secs(5));
    }

    fn reason(input: &str) -> String {
        let err = parse_duration(input).unwrap_err();
        assert_eq!(err.input, input);
        err.reason
    }

    #[test]
    fn parse_rejects_empty_input() {
        assert!(reason("").starts_with("empty"));
        assert!(reason("   ").starts_with("empty"));
    }

    #[test]
    fn parse_rejects_negative_durations() {
        assert_eq!(reason("-5s"), "negative durations are not allowed");
        assert_eq!(reason("-1"), "negative durations are not allowed");
        assert_eq!(reason(" -0.5h"), "negative durations are not allowed");
    }

    #[test]
    fn parse_rejects_unknown_units() {
        assert_eq!(reason("10x"), "unknown unit \"x\"; use ms, s, m, h or d");
        assert_eq!(
            reason("10sec"),
            "unknown unit \"sec\"; use ms, s, m, h or d"
        );
        assert_eq!(reason("10S"), "unknown unit \"S\"; use ms, s, m, h or d");
        assert_eq!(reason("5s5"), "unknown unit \"s5\"; use ms, s, m, h or d");
        assert_eq!(reason("1e3"), "unknown unit \"e3\"; use ms, s, m, h or d");
    }

    #[test]
    fn parse_rejects_a_unit_without_a_number() {
        let expected =
            "expected a number of seconds or a number with a unit (ms, s, m, h, d), like \"30s\"";
        assert_eq!(reason("s"), expected);
        assert_eq!(reason("."), expected);
        assert_eq!(reason(".s"), expected);
        assert_eq!(reason("+5s"), expected);
        assert_eq!(reason("NaN"), expected);
        assert_eq!(reason("inf"), expected);
        assert_eq!(reason("infinity"), expected);
    }

    #[test]
    fn parse_rejects_more_than_one_decimal_point() {
        assert_eq!(
            reason("1.2.3"),
            "malformed number: more than one decimal point"
        );
        assert_eq!(
            reason("1..2s"),
            "malformed number: more than one decimal point"
        );
    }

    #[test]
    fn parse_rejects_durations_that_overflow() {
        assert_eq!(reason("18446744073709551616s"), "too large");
        assert_eq!(reason("213503982334602d"), "too large");
        assert_eq!(reason(&"9".repeat(60)), "too large");
    }

    #[test]
    fn parse_accepts_the_largest_duration() {
        assert_eq!(
            parse_duration("18446744073709551615.999999999").unwrap(),
            Duration::MAX
        );
    }

    #[test]
    fn duration_error_message_names_the_input_and_the_reason() {
        let err = parse_duration("10x").unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid duration \"10x\": unknown unit \"x\"; use ms, s, m, h or d"
        );
    }

    #[test]
    fn format_shows_zero_as_zero_seconds() {
        assert_eq!(format_duration(Duration::ZERO), "0s");
    }

    #[test]
    fn format_shows_milliseconds_below_a_second() {
        assert_eq!(format_duration(ms(100)), "100ms");
        assert_eq!(format_duration(ms(999)), "999ms");
        assert_eq!(format_duration(Duration::from_micros(500)), "0.5ms");
        assert_eq!(format_duration(Duration::from_micros(1250)), "1.25ms");
        assert_eq!(format_duration(Duration::from_nanos(1)), "0.000001ms");
    }

    #[test]
    fn format_shows_seconds_with_their_fraction_below_a_minute() {
        assert_eq!(format_duration(secs(1)), "1s");
        assert_eq!(format_duration(ms(1500)), "1.5s");
        assert_eq!(format_duration(secs(10)), "10s");
        assert_eq!(format_duration(ms(59_999)), "59.999s");
    }

    #[test]
    fn format_uses_the_largest_units_and_leaves_out_zero_parts() {
        assert_eq!(format_duration(secs(60)), "1m");
        assert_eq!(format_duration(secs(160)), "2m 40s");
        assert_eq!(format_duration(secs(3600)), "1h");
        assert_eq!(format_duration(secs(3605)), "1h 5s");
        assert_eq!(format_duration(secs(3665)), "1h 1m 5s");
        assert_eq!(format_duration(secs(86_400)), "1d");
        assert_eq!(format_duration(secs(93_600)), "1d 2h");
        assert_eq!(format_duration(secs(400 * 86_400)), "400d");
        assert_eq!(format_duration(ms(60_500)), "1m 0.5s");
        assert_eq!(format_duration(ms(3_276_700)), "54m 36.7s");
    }

    #[test]
    fn format_handles_the_largest_duration() {
        assert_eq!(
            format_duration(Duration::MAX),
            "213503982334601d 7h 15.999999999s"
        );
    }

    #[test]
    fn serializes_as_seconds_with_an_s_suffix_and_no_trailing_zeros() {
        let json = |d: HumanDuration| serde_json::to_string(&d).unwrap();
        assert_eq!(json(HumanDuration::from_millis(100)), "\"0.1s\"");
        assert_eq!(json(HumanDuration::from_secs(3600)), "\"3600s\"");
        assert_eq!(json(HumanDuration::from_millis(1500)), "\"1.5s\"");
        assert_eq!(json(HumanDuration::from_secs(0)), "\"0s\"");
        assert_eq!(json(HumanDuration(Duration::new(2, 1))), "\"2.000000001s\"");
    }

    fn from_json(text: &str) -> Result<HumanDuration, serde_json::Error> {
        serde_json::from_str(text)
    }

    #[test]
    fn deserializes_from_a_duration_string() {
        assert_eq!(from_json("\"10m\"").unwrap(), HumanDuration::from_secs(600));
        assert_eq!(
            from_json("\"0.1s\"").unwrap(),
            HumanDuration::from_millis(100)
        );
        assert_eq!(
            from_json("\"1.5\"").unwrap(),
            HumanDuration::from_millis(1500)
        );
    }

    #[test]
    fn deserializes_from_a_number_of_seconds() {
        assert_eq!(from_json("10").unwrap(), HumanDuration::from_secs(10));
        assert_eq!(from_json("0").unwrap(), HumanDuration::from_secs(0));
        assert_eq!(from_json("1.5").unwrap(), HumanDuration::from_millis(1500));
        assert_eq!(from_json("0.1").unwrap(), HumanDuration::from_millis(100));
        assert_eq!(from_json("-0.0").unwrap(), HumanDuration::from_secs(0));
        assert_eq!(from_json("1e3").unwrap(), HumanDuration::from_secs(1000));
    }

    #[test]
    fn deserialize_rejects_negative_numbers_and_bad_strings() {
        let message = |text: &str| from_json(text).unwrap_err().to_string();
        assert!(message("-1").contains("negative durations are not allowed"));
        assert!(message("-0.5").contains("negative durations are not allowed"));
        assert!(message("\"-5s\"").contains("negative durations are not allowed"));
        assert!(message("\"10x\"").contains("unknown unit"));
        assert!(message("1e300").contains("too large"));
        assert!(message("true").contains("a duration like"));
        assert!(message("null").contains("a duration like"));
    }

    #[test]
    fn json_round_trip_keeps_the_exact_value() {
        for d in [
            HumanDuration::from_millis(100),
            HumanDuration::from_secs(3600),
            HumanDuration::from_millis(1500),
            HumanDuration(Duration::new(7, 123_456_789)),
            HumanDuration(Duration::MAX),
        ] {
            let text = serde_json::to_string(&d).unwrap();
            assert_eq!(from_json(&text).unwrap(), d, "{text}");
        }
    }

    #[test]
    fn display_and_from_str_round_trip() {
        let d: HumanDuration = "2m".parse().unwrap();
        assert_eq!(d, HumanDuration::from_secs(120));
        assert_eq!(d.to_string(), "120s");
        assert_eq!("120s".parse::<HumanDuration>().unwrap(), d);
    }
}
