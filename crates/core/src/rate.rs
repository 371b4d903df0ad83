//! Rate limits: `rate` ("5/s", "1/m", "2000/d", "0" = paused) and a token
//! bucket of `bucket_size` that lets bursts through, as App Engine queues do.
//!
//! The bucket is pure: time comes in as a `Duration` since any fixed origin
//! the caller picks.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The bucket size when a rate is set without one (App Engine's default).
pub const DEFAULT_BUCKET_SIZE: u32 = 5;
/// The largest `bucket_size` accepted (App Engine's limit).
pub const MAX_BUCKET_SIZE: u32 = 500;
/// The fastest rate accepted, per second.
pub const MAX_RATE_PER_SECOND: f64 = 100_000.0;

/// The unit a rate counts in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RateUnit {
    Second,
    Minute,
    Hour,
    Day,
}

impl RateUnit {
    fn seconds(self) -> f64 {
        match self {
            RateUnit::Second => 1.0,
            RateUnit::Minute => 60.0,
            RateUnit::Hour => 3600.0,
            RateUnit::Day => 86_400.0,
        }
    }

    fn letter(self) -> char {
        match self {
            RateUnit::Second => 's',
            RateUnit::Minute => 'm',
            RateUnit::Hour => 'h',
            RateUnit::Day => 'd',
        }
    }
}

/// Pushes allowed per unit of time; a count of 0 pauses the subscription
/// (unlike [`crate::security::RequestRate`], where 0 means no limit).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rate {
    pub count: f64,
    pub unit: RateUnit,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid rate {input:?}: {reason}")]
pub struct RateError {
    pub input: String,
    pub reason: String,
}

impl Rate {
    pub const PAUSED: Rate = Rate {
        count: 0.0,
        unit: RateUnit::Second,
    };

    pub fn per_second(self) -> f64 {
        self.count / self.unit.seconds()
    }

    pub fn is_paused(self) -> bool {
        self.count == 0.0
    }
}

/// Reads `5/s`, `1/m`, `2.5/h`, `2000/d`, and `0` (paused).
impl std::str::FromStr for Rate {
    type Err = RateError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let fail = |reason: &str| RateError {
            input: s.to_owned(),
            reason: reason.to_owned(),
        };
        let text = s.trim();
        let (count, unit) = match text.split_once('/') {
            Some((count, unit)) => {
                let unit = match unit.trim() {
                    "s" => RateUnit::Second,
                    "m" => RateUnit::Minute,
                    "h" => RateUnit::Hour,
                    "d" => RateUnit::Day,
                    _ => return Err(fail("the unit must be s, m, h or d, as in 5/s")),
                };
                (count.trim(), unit)
            }
            None if text.parse::<f64>() == Ok(0.0) => return Ok(Rate::PAUSED),
            None => {
                return Err(fail(
                    "expected a count and a unit, as in 5/s, 1/m or 2000/d",
                ));
            }
        };
        let count: f64 = count
            .parse()
            .map_err(|_| fail("the count must be a number, as in 5/s"))?;
        if !count.is_finite() || count < 0.0 {
            return Err(fail("the count must be 0 or more"));
        }
        let rate = Rate { count, unit };
        if rate.per_second() > MAX_RATE_PER_SECOND {
            return Err(fail(&format!(
                "at most {MAX_RATE_PER_SECOND} per second is supported"
            )));
        }
        Ok(rate)
    }
}

impl std::fmt::Display for Rate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.is_paused() {
            write!(f, "0")
        } else {
            write!(f, "{}/{}", self.count, self.unit.letter())
        }
    }
}

impl Serialize for Rate {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Rate {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Rate;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a rate such as \"5/s\", \"1/m\", \"2000/d\", or 0 (paused)")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Rate, E> {
                v.parse().map_err(E::custom)
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Rate, E> {
                if v == 0 {
                    Ok(Rate::PAUSED)
                } else {
                    Err(E::custom(format!(
                        "invalid rate {v}: give a unit, as in \"{v}/s\""
                    )))
                }
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Rate, E> {
                match u64::try_from(v) {
                    Ok(v) => self.visit_u64(v),
                    Err(_) => Err(E::custom(format!("invalid rate {v}: must be 0 or more"))),
                }
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// A token bucket: holds up to `capacity` tokens, gains `rate` per second,
/// and each push takes one. Starts full, unless the rate is 0 (paused):
/// then it starts and stays empty.
#[derive(Clone, Debug, PartialEq)]
pub struct TokenBucket {
    per_second: f64,
    capacity: f64,
    tokens: f64,
    updated: Duration,
}

impl TokenBucket {
    /// A full bucket at `now`. A capacity of 0 reads as 1: a bucket that
    /// can never hold a token would never let anything through.
    pub fn new(rate: Rate, capacity: u32, now: Duration) -> TokenBucket {
        let capacity = f64::from(capacity.max(1));
        TokenBucket {
            per_second: rate.per_second(),
            capacity,
            tokens: if rate.is_paused() { 0.0 } else { capacity },
            updated: now,
        }
    }

    /// Whether the bucket was built for these settings (else rebuild it).
    pub fn fits(&self, rate: Rate, capacity: u32) -> bool {
        self.per_second == rate.per_second() && self.capacity == f64::from(capacity.max(1))
    }

    fn refill(&mut self, now: Duration) {
        if now > self.updated {
            let gained = (now - self.updated).as_secs_f64() * self.per_second;
            self.tokens = (self.tokens + gained).min(self.capacity);
            self.updated = now;
        }
    }

    /// Whole tokens available at `now`.
    pub fn available(&mut self, now: Duration) -> u32 {
        self.refill(now);
        // The bucket holds at most `MAX_BUCKET_SIZE`-ish tokens; `as`
        // saturates anyway.
        self.tokens.floor() as u32
    }

    /// Takes `n` tokens at `now`; taking more than there are leaves the
    /// bucket at zero.
    pub fn take(&mut self, n: u32, now: Duration) {
        self.refill(now);
        self.tokens = (self.tokens - f64::from(n)).max(0.0);
    }

    /// How long from `now` until the next whole token, zero when one is
    /// there already; `None` when the rate is zero and none will come.
    pub fn next_token_in(&mut self, now: Duration) -> Option<Duration> {
        self.refill(now);
        if self.tokens >= 1.0 {
            return Some(Duration::ZERO);
        }
        if self.per_second <= 0.0 {
            return None;
        }
        let seconds = (1.0 - self.tokens) / self.per_second;
        // Round up to the microsecond so the wake-up finds the token there.
        Some(Duration::from_micros((seconds * 1e6).ceil() as u64))
    }

    /// Whether the bucket is full at `now`: nothing left to wait for.
    pub fn is_full(&mut self, now: Duration) -> bool {
        self.refill(now);
        self.tokens >= self.capacity
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(s: &str) -> Rate {
        s.parse().unwrap()
    }

    fn ms(m: u64) -> Duration {
        Duration::from_millis(m)
    }

    #[test]
    fn rates_read_every_unit() {
        assert_eq!(rate("5/s").per_second(), 5.0);
        assert_eq!(rate("1/m").per_second(), 1.0 / 60.0);
        assert_eq!(rate("2/h").per_second(), 2.0 / 3600.0);
        assert_eq!(rate("2000/d").per_second(), 2000.0 / 86_400.0);
        assert_eq!(rate("0.5/s").per_second(), 0.5);
        assert!(rate("0").is_paused());
        assert!(rate("0/s").is_paused());
    }

    #[test]
    fn bad_rates_are_rejected_with_a_reason() {
        for bad in ["5", "5/x", "/s", "-1/s", "abc/s", "inf/s", "1000000/s", ""] {
            let err = bad.parse::<Rate>().unwrap_err();
            assert_eq!(err.input, bad);
        }
    }

    #[test]
    fn rates_print_as_written_and_round_trip_through_json() {
        for text in ["5/s", "1/m", "2000/d", "0", "0.5/h"] {
            let parsed = rate(text);
            assert_eq!(parsed.to_string(), text);
            let json = serde_json::to_string(&parsed).unwrap();
            assert_eq!(serde_json::from_str::<Rate>(&json).unwrap(), parsed);
        }
        assert!(serde_json::from_str::<Rate>("0").unwrap().is_paused());
        assert!(serde_json::from_str::<Rate>("5").is_err());
    }

    #[test]
    fn a_bucket_lets_a_burst_through_then_paces_at_the_rate() {
        let mut bucket = TokenBucket::new(rate("20/s"), 5, Duration::ZERO);
        assert_eq!(bucket.available(Duration::ZERO), 5);
        bucket.take(5, Duration::ZERO);
        assert_eq!(bucket.available(Duration::ZERO), 0);
        assert_eq!(bucket.next_token_in(Duration::ZERO), Some(ms(50)));
        assert_eq!(bucket.available(ms(49)), 0);
        assert_eq!(bucket.available(ms(50)), 1);
        assert_eq!(bucket.available(ms(175)), 3);
    }

    #[test]
    fn a_bucket_never_holds_more_than_its_size() {
        let mut bucket = TokenBucket::new(rate("20/s"), 5, Duration::ZERO);
        bucket.take(5, Duration::ZERO);
        assert_eq!(bucket.available(Duration::from_secs(3600)), 5);
        assert!(bucket.is_full(Duration::from_secs(3600)));
    }

    #[test]
    fn hundred_pushes_at_20_per_second_with_a_bucket_of_5_take_4_75_seconds() {
        let mut bucket = TokenBucket::new(rate("20/s"), 5, Duration::ZERO);
        let mut now = Duration::ZERO;
        let mut sent = 0;
        while sent < 100 {
            let n = bucket.available(now).min(100 - sent);
            bucket.take(n, now);
            sent += n;
            if sent < 100 {
                now += bucket.next_token_in(now).unwrap();
            }
        }
        assert!((now.as_secs_f64() - 4.75).abs() < 0.001, "{now:?}");
    }

    #[test]
    fn a_paused_bucket_lets_nothing_through() {
        let mut bucket = TokenBucket::new(Rate::PAUSED, 5, Duration::ZERO);
        assert_eq!(bucket.available(Duration::from_secs(10)), 0);
        assert_eq!(bucket.next_token_in(Duration::from_secs(10)), None);
    }

    #[test]
    fn a_slow_rate_waits_its_interval() {
        let mut bucket = TokenBucket::new(rate("1/m"), 1, Duration::ZERO);
        bucket.take(1, Duration::ZERO);
        assert_eq!(
            bucket.next_token_in(Duration::ZERO),
            Some(Duration::from_secs(60))
        );
    }

    #[test]
    fn zero_capacity_reads_as_one() {
        let mut bucket = TokenBucket::new(rate("1/s"), 0, Duration::ZERO);
        assert_eq!(bucket.available(Duration::ZERO), 1);
        assert!(bucket.fits(rate("1/s"), 1));
        assert!(!bucket.fits(rate("2/s"), 1));
    }
}
