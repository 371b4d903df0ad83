//! Standard Webhooks signatures: `webhook-id`, `webhook-timestamp` and
//! `webhook-signature` (`v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use ring::hmac;

use crate::headers::Headers;

/// How far a `webhook-timestamp` may be from the receiver's clock, either
/// way, before the request is refused as a replay: 5 minutes, as the
/// Standard Webhooks specification recommends.
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(5 * 60);

/// Checks Standard Webhooks signatures with one or more secrets.
///
/// Several secrets serve a rotation on the receiving side (accept the old
/// and the new one for a while); several signatures in the header serve a
/// rotation on the sending side (redrive signs with both during its grace
/// period). A request passes when any signature matches any secret.
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use redrive_receiver::Verifier;
///
/// let verifier = Verifier::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
/// let signed = verifier.verify(
///     "msg_p5jXN8AQM9LWM0D4loKWxJek",
///     "1614265330",
///     "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
///     br#"{"test": 2432232314}"#,
///     UNIX_EPOCH + Duration::from_secs(1614265330),
/// );
/// assert_eq!(signed.unwrap().timestamp, 1614265330);
/// ```
#[derive(Clone)]
pub struct Verifier {
    keys: Vec<hmac::Key>,
    tolerance: Duration,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.debug_struct("Verifier")
            .field("secrets", &self.keys.len())
            .field("tolerance", &self.tolerance)
            .finish()
    }
}

/// A secret that is not `whsec_` followed by base64 (or plain base64).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid webhook secret: {0}")]
pub struct SecretError(String);

/// Why a request's signature was refused. Each is answered 401.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("the {0} header is missing")]
    MissingHeader(&'static str),
    #[error("the {header} header is invalid: {problem}")]
    InvalidHeader {
        header: &'static str,
        problem: String,
    },
    #[error("webhook-timestamp {timestamp} is {age}s old, more than the {tolerance}s tolerated")]
    TimestampTooOld {
        timestamp: i64,
        age: u64,
        tolerance: u64,
    },
    #[error(
        "webhook-timestamp {timestamp} is {ahead}s in the future, more than the {tolerance}s tolerated"
    )]
    TimestampTooNew {
        timestamp: i64,
        ahead: u64,
        tolerance: u64,
    },
    #[error("no signature in webhook-signature matches the body with any known secret")]
    NoMatchingSignature,
}

impl VerifyError {
    /// A stable name for the kind of failure, as the test vectors and the
    /// Python module spell it.
    pub fn kind(&self) -> &'static str {
        match self {
            VerifyError::MissingHeader(_) => "missing_header",
            VerifyError::InvalidHeader { .. } => "invalid_header",
            VerifyError::TimestampTooOld { .. } => "timestamp_too_old",
            VerifyError::TimestampTooNew { .. } => "timestamp_too_new",
            VerifyError::NoMatchingSignature => "no_matching_signature",
        }
    }
}

/// The signed identity of a request that passed verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    /// `webhook-id`: stable across every attempt of one delivery, the
    /// idempotency key.
    pub webhook_id: String,
    /// `webhook-timestamp`: Unix seconds when this attempt was sent.
    pub timestamp: i64,
}

impl Verifier {
    /// A verifier for one secret, `whsec_` followed by base64 (the prefix
    /// is optional), with the default tolerance.
    pub fn new(secret: &str) -> Result<Verifier, SecretError> {
        Verifier::with_secrets([secret])
    }

    /// A verifier accepting a signature made with any of `secrets`.
    pub fn with_secrets<'a>(
        secrets: impl IntoIterator<Item = &'a str>,
    ) -> Result<Verifier, SecretError> {
        let keys = secrets
            .into_iter()
            .map(parse_secret)
            .collect::<Result<Vec<_>, _>>()?;
        if keys.is_empty() {
            return Err(SecretError("no secret given".into()));
        }
        Ok(Verifier {
            keys,
            tolerance: DEFAULT_TOLERANCE,
        })
    }

    /// Sets how far `webhook-timestamp` may be from the clock.
    pub fn tolerance(mut self, tolerance: Duration) -> Verifier {
        self.tolerance = tolerance;
        self
    }

    /// Checks one request from its three header values and exact body
    /// bytes, at `now`.
    pub fn verify(
        &self,
        webhook_id: &str,
        timestamp: &str,
        signature: &str,
        body: &[u8],
        now: SystemTime,
    ) -> Result<Signed, VerifyError> {
        if webhook_id.is_empty() {
            return Err(VerifyError::InvalidHeader {
                header: "webhook-id",
                problem: "is empty".into(),
            });
        }
        let seconds: i64 = timestamp
            .trim()
            .parse()
            .map_err(|_| VerifyError::InvalidHeader {
                header: "webhook-timestamp",
                problem: format!("{timestamp:?} is not Unix seconds"),
            })?;
        self.check_timestamp(seconds, now)?;
        // The signed content is built from the header value as sent.
        let mut signed = Vec::with_capacity(webhook_id.len() + timestamp.len() + body.len() + 2);
        signed.extend_from_slice(webhook_id.as_bytes());
        signed.push(b'.');
        signed.extend_from_slice(timestamp.as_bytes());
        signed.push(b'.');
        signed.extend_from_slice(body);
        let candidates = signature
            .split(' ')
            .filter_map(|entry| entry.strip_prefix("v1,"))
            .filter_map(|encoded| BASE64.decode(encoded).ok());
        for candidate in candidates {
            // `hmac::verify` compares in constant time.
            if self
                .keys
                .iter()
                .any(|key| hmac::verify(key, &signed, &candidate).is_ok())
            {
                return Ok(Signed {
                    webhook_id: webhook_id.to_owned(),
                    timestamp: seconds,
                });
            }
        }
        Err(VerifyError::NoMatchingSignature)
    }

    /// [`verify`](Self::verify) with the values read from `headers`.
    pub fn verify_headers(
        &self,
        headers: &Headers,
        body: &[u8],
        now: SystemTime,
    ) -> Result<Signed, VerifyError> {
        let get = |name: &'static str| -> Result<&str, VerifyError> {
            match headers.get(name) {
                None => Err(VerifyError::MissingHeader(name)),
                Some(value) => std::str::from_utf8(value).map_err(|_| VerifyError::InvalidHeader {
                    header: name,
                    problem: "is not text".into(),
                }),
            }
        };
        self.verify(
            get("webhook-id")?,
            get("webhook-timestamp")?,
            get("webhook-signature")?,
            body,
            now,
        )
    }

    fn check_timestamp(&self, seconds: i64, now: SystemTime) -> Result<(), VerifyError> {
        let now = unix_seconds(now);
        let tolerance = self.tolerance.as_secs();
        let tolerance_i = i64::try_from(tolerance).unwrap_or(i64::MAX);
        let difference = now.saturating_sub(seconds);
        if difference > tolerance_i {
            return Err(VerifyError::TimestampTooOld {
                timestamp: seconds,
                age: difference.unsigned_abs(),
                tolerance,
            });
        }
        if difference < tolerance_i.saturating_neg() {
            return Err(VerifyError::TimestampTooNew {
                timestamp: seconds,
                ahead: difference.unsigned_abs(),
                tolerance,
            });
        }
        Ok(())
    }
}

/// Signs `body` as a Standard Webhooks sender does: the value of a
/// `webhook-signature` header with one `v1,` signature per secret. For
/// tests of receivers and for senders other than redrive.
pub fn sign(
    secret: &str,
    webhook_id: &str,
    timestamp: i64,
    body: &[u8],
) -> Result<String, SecretError> {
    let key = parse_secret(secret)?;
    let mut signed = format!("{webhook_id}.{timestamp}.").into_bytes();
    signed.extend_from_slice(body);
    let tag = hmac::sign(&key, &signed);
    Ok(format!("v1,{}", BASE64.encode(tag.as_ref())))
}

fn parse_secret(secret: &str) -> Result<hmac::Key, SecretError> {
    let encoded = secret.strip_prefix("whsec_").unwrap_or(secret);
    let bytes = BASE64
        .decode(encoded)
        .map_err(|err| SecretError(format!("not base64 after whsec_: {err}")))?;
    if bytes.is_empty() {
        return Err(SecretError("the key is empty".into()));
    }
    Ok(hmac::Key::new(hmac::HMAC_SHA256, &bytes))
}

/// Seconds since the Unix epoch; negative before it.
pub(crate) fn unix_seconds(at: SystemTime) -> i64 {
    match at.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_secs()).unwrap_or(i64::MAX),
        Err(before) => i64::try_from(before.duration().as_secs())
            .map(i64::wrapping_neg)
            .unwrap_or(i64::MIN),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    fn at(seconds: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(seconds)
    }

    #[test]
    fn sign_reproduces_the_published_vector() {
        assert_eq!(sign(SECRET, ID, 1614265330, BODY).unwrap(), SIGNATURE);
    }

    #[test]
    fn any_of_several_signatures_may_match() {
        let verifier = Verifier::new(SECRET).unwrap();
        let header = format!("v1a,abc v1,AAAA {SIGNATURE}");
        assert!(
            verifier
                .verify(ID, "1614265330", &header, BODY, at(1614265330))
                .is_ok()
        );
    }

    #[test]
    fn any_of_several_secrets_may_match() {
        let verifier = Verifier::with_secrets(["whsec_c2VjcmV0", SECRET]).unwrap();
        assert!(
            verifier
                .verify(ID, "1614265330", SIGNATURE, BODY, at(1614265330))
                .is_ok()
        );
    }

    #[test]
    fn tolerance_is_inclusive_both_ways() {
        let verifier = Verifier::new(SECRET)
            .unwrap()
            .tolerance(Duration::from_secs(10));
        let check = |now| {
            verifier
                .verify(ID, "1614265330", SIGNATURE, BODY, at(now))
                .map_err(|e| e.kind())
        };
        assert!(check(1614265340).is_ok());
        assert!(check(1614265320).is_ok());
        assert_eq!(check(1614265341), Err("timestamp_too_old"));
        assert_eq!(check(1614265319), Err("timestamp_too_new"));
    }

    #[test]
    fn secrets_must_be_base64() {
        assert!(Verifier::new("whsec_not base64!").is_err());
        assert!(Verifier::new("whsec_").is_err());
        assert!(Verifier::with_secrets([]).is_err());
    }

    #[test]
    fn debug_output_hides_the_keys() {
        let shown = format!("{:?}", Verifier::new(SECRET).unwrap());
        assert!(!shown.contains("MfKQ"), "{shown}");
    }
}
