//! Standard Webhooks signatures (<https://www.standardwebhooks.com>):
//! `webhook-signature: v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`,
//! keyed with the subscription's secret, written `whsec_<base64>`. Several
//! signatures travel space-separated while a rotated secret is still valid.

use std::fmt;
use std::str::FromStr;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ring::hmac;
use subtle::ConstantTimeEq;

const PREFIX: &str = "whsec_";
/// Secret sizes accepted from users: 192 to 512 bits, as the Standard
/// Webhooks libraries require.
const MIN_SECRET_BYTES: usize = 24;
const MAX_SECRET_BYTES: usize = 64;
/// Bytes in a secret redrive generates.
pub const GENERATED_SECRET_BYTES: usize = 32;

/// A subscription's signing key. Its `Debug` never shows the key.
#[derive(Clone)]
pub struct SigningSecret {
    key: Vec<u8>,
    /// The key prepared for HMAC once, not for every push: preparing it
    /// hashes two blocks, more than a quarter of signing a small event.
    hmac: hmac::Key,
}

impl PartialEq for SigningSecret {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}

impl Eq for SigningSecret {}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid signing secret: {0}")]
pub struct SecretError(&'static str);

impl SigningSecret {
    fn new(key: Vec<u8>) -> SigningSecret {
        let hmac = hmac::Key::new(hmac::HMAC_SHA256, &key);
        SigningSecret { key, hmac }
    }

    /// A secret from fresh random bytes (the caller owns the randomness).
    pub fn from_random(bytes: [u8; GENERATED_SECRET_BYTES]) -> SigningSecret {
        SigningSecret::new(bytes.into())
    }

    pub fn key(&self) -> &[u8] {
        &self.key
    }
}

impl FromStr for SigningSecret {
    type Err = SecretError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let encoded = text
            .strip_prefix(PREFIX)
            .ok_or(SecretError("it must start with \"whsec_\""))?;
        let key = STANDARD
            .decode(encoded)
            .map_err(|_| SecretError("the part after \"whsec_\" must be standard base64"))?;
        if !(MIN_SECRET_BYTES..=MAX_SECRET_BYTES).contains(&key.len()) {
            return Err(SecretError("the key must be 24 to 64 bytes"));
        }
        Ok(SigningSecret::new(key))
    }
}

impl fmt::Display for SigningSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PREFIX}{}", STANDARD.encode(&self.key))
    }
}

impl fmt::Debug for SigningSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningSecret(…)")
    }
}

fn signature_bytes(secret: &SigningSecret, id: &str, timestamp: i64, body: &[u8]) -> hmac::Tag {
    let mut context = hmac::Context::with_key(&secret.hmac);
    context.update(id.as_bytes());
    context.update(b".");
    context.update(timestamp.to_string().as_bytes());
    context.update(b".");
    context.update(body);
    context.sign()
}

/// The `webhook-signature` value for `secrets` (newest first): one
/// `v1,<base64>` per secret, space-separated.
pub fn sign(secrets: &[SigningSecret], id: &str, timestamp: i64, body: &[u8]) -> String {
    secrets
        .iter()
        .map(|secret| {
            let tag = signature_bytes(secret, id, timestamp, body);
            format!("v1,{}", STANDARD.encode(tag.as_ref()))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Does any `v1` signature of a `webhook-signature` header match? Compares
/// in constant time. (Receivers also check the timestamp's age; that needs
/// a clock and is theirs to do.)
pub fn verify(secret: &SigningSecret, header: &str, id: &str, timestamp: i64, body: &[u8]) -> bool {
    let expected = signature_bytes(secret, id, timestamp, body);
    header
        .split(' ')
        .filter_map(|part| part.strip_prefix("v1,"))
        .filter_map(|encoded| STANDARD.decode(encoded).ok())
        .any(|given| bool::from(given.as_slice().ct_eq(expected.as_ref())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const VECTOR_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const VECTOR_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const VECTOR_TIMESTAMP: i64 = 1_614_265_330;
    const VECTOR_BODY: &[u8] = br#"{"test": 2432232314}"#;
    const VECTOR_SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    #[test]
    fn the_specifications_test_vector_is_reproduced() {
        let secret: SigningSecret = VECTOR_SECRET.parse().unwrap();
        assert_eq!(
            sign(
                std::slice::from_ref(&secret),
                VECTOR_ID,
                VECTOR_TIMESTAMP,
                VECTOR_BODY
            ),
            VECTOR_SIGNATURE
        );
        assert!(verify(
            &secret,
            VECTOR_SIGNATURE,
            VECTOR_ID,
            VECTOR_TIMESTAMP,
            VECTOR_BODY
        ));
        assert!(!verify(
            &secret,
            VECTOR_SIGNATURE,
            VECTOR_ID,
            VECTOR_TIMESTAMP + 1,
            VECTOR_BODY
        ));
    }

    #[test]
    fn several_secrets_give_space_separated_signatures_each_verifiable() {
        let new = SigningSecret::from_random([7; GENERATED_SECRET_BYTES]);
        let old: SigningSecret = VECTOR_SECRET.parse().unwrap();
        let header = sign(&[new.clone(), old.clone()], "id", 5, b"body");
        assert_eq!(header.split(' ').count(), 2);
        assert!(verify(&new, &header, "id", 5, b"body"));
        assert!(verify(&old, &header, "id", 5, b"body"));
        let stranger = SigningSecret::from_random([8; GENERATED_SECRET_BYTES]);
        assert!(!verify(&stranger, &header, "id", 5, b"body"));
    }

    #[test]
    fn secrets_round_trip_and_bad_ones_are_refused() {
        let secret = SigningSecret::from_random([1; GENERATED_SECRET_BYTES]);
        let text = secret.to_string();
        assert!(text.starts_with("whsec_"));
        assert_eq!(text.parse::<SigningSecret>().unwrap(), secret);
        assert_eq!(format!("{secret:?}"), "SigningSecret(…)");
        for bad in [
            "",
            "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "whsec_",
            "whsec_!!!!",
            "whsec_AAAA",
        ] {
            assert!(bad.parse::<SigningSecret>().is_err(), "{bad:?}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        #[test]
        fn secret_parser_never_panics(input in "\\PC{0,100}") {
            let _ = input.parse::<SigningSecret>();
        }

        #[test]
        fn verify_never_panics_on_any_header(header in "\\PC{0,200}") {
            let secret = SigningSecret::from_random([3; GENERATED_SECRET_BYTES]);
            let _ = verify(&secret, &header, "id", 1, b"x");
        }

        #[test]
        fn a_signature_verifies_only_its_own_message(
            body in proptest::collection::vec(any::<u8>(), 0..256),
            other in proptest::collection::vec(any::<u8>(), 0..256),
            timestamp in 0i64..4_000_000_000,
        ) {
            let secret = SigningSecret::from_random([9; GENERATED_SECRET_BYTES]);
            let header = sign(std::slice::from_ref(&secret), "msg", timestamp, &body);
            prop_assert!(verify(&secret, &header, "msg", timestamp, &body));
            prop_assert_eq!(verify(&secret, &header, "msg", timestamp, &other), body == other);
        }
    }
}
