//! Request rates written `100/s`, `6000/m`, `50000/h` or `10/5s`: how
//! fast a token may call the API. Not [`crate::rate::Rate`], a
//! subscription's delivery rate, where 0 means paused: here 0 (or
//! `unlimited`) means no limit.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::duration::HumanDuration;

/// At most `count` requests per `per`; a count of 0 means no limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestRate {
    pub count: u32,
    pub per: Duration,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid rate {input:?}: {reason}")]
pub struct RequestRateError {
    pub input: String,
    pub reason: String,
}

impl RequestRate {
    pub const UNLIMITED: RequestRate = RequestRate {
        count: 0,
        per: Duration::from_secs(1),
    };

    pub fn is_unlimited(&self) -> bool {
        self.count == 0
    }

    /// Requests per second, for a token bucket.
    pub fn per_second(&self) -> f64 {
        f64::from(self.count) / self.per.as_secs_f64()
    }
}

impl FromStr for RequestRate {
    type Err = RequestRateError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let error = |reason: String| RequestRateError {
            input: input.to_owned(),
            reason,
        };
        if input.trim() == "unlimited" {
            return Ok(RequestRate::UNLIMITED);
        }
        let (count, per) = input
            .trim()
            .split_once('/')
            .ok_or_else(|| error("write COUNT/UNIT, e.g. 100/s, 6000/m, or unlimited".into()))?;
        let count: u32 = count
            .trim()
            .parse()
            .map_err(|_| error("the count must be a whole number".into()))?;
        let per = per.trim();
        // A bare unit means one of it: `100/s` is `100/1s`.
        let per = if per.bytes().next().is_some_and(|b| b.is_ascii_alphabetic()) {
            format!("1{per}")
        } else {
            per.to_owned()
        };
        let per: HumanDuration = per.parse().map_err(|err| error(format!("{err}")))?;
        let per = per.as_duration();
        if per < Duration::from_millis(1) {
            return Err(error("the period must be at least 1ms".into()));
        }
        Ok(RequestRate { count, per })
    }
}

impl fmt::Display for RequestRate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_unlimited() {
            return f.write_str("unlimited");
        }
        write!(f, "{}/{}", self.count, HumanDuration::from(self.per))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rates_parse_with_or_without_a_period_number() {
        assert_eq!("100/s".parse::<RequestRate>().unwrap().per_second(), 100.0);
        assert_eq!("6000/m".parse::<RequestRate>().unwrap().per_second(), 100.0);
        assert_eq!("10/5s".parse::<RequestRate>().unwrap().per_second(), 2.0);
        assert!("unlimited".parse::<RequestRate>().unwrap().is_unlimited());
        assert!("0/s".parse::<RequestRate>().unwrap().is_unlimited());
    }

    #[test]
    fn bad_rates_are_refused() {
        for bad in ["", "100", "x/s", "-1/s", "100/", "100/0s", "100/parsec"] {
            assert!(bad.parse::<RequestRate>().is_err(), "{bad:?}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        #[test]
        fn rate_parser_never_panics(input in "\\PC{0,30}") {
            if let Ok(rate) = input.parse::<RequestRate>() {
                prop_assert!(rate.is_unlimited() || rate.per_second() > 0.0);
            }
        }
    }
}
