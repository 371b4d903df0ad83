//! Records of the trust boundary: API tokens (only a hash of their secret)
//! and subscriptions' signing secrets (only as ciphertext: the server
//! encrypts before storing, so a copied database file signs nothing).

use jiff::Timestamp;
use redrive_core::security::Scope;

/// An API token. The token itself is `rdv_<id>_<secret>`; only the SHA-256
/// of the secret part is kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenRecord {
    pub id: String,
    /// A label for people (who holds it, what for).
    pub name: String,
    pub scope: Scope,
    pub secret_hash: Vec<u8>,
    pub created_at: Timestamp,
}

/// The most secrets replaced by rotations that keep signing beside the
/// current one: rotating twice within the grace period keeps both earlier
/// secrets (receivers may still be on either), but a loop of rotations
/// cannot make every push carry ever more signatures.
pub const MAX_PREVIOUS_SECRETS: usize = 3;

/// A subscription's signing secrets, encrypted by the server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SigningSecrets {
    pub subscription: String,
    pub current: String,
    /// Secrets replaced by rotations, newest first, each signing on until
    /// its `until`; at most [`MAX_PREVIOUS_SECRETS`], none already expired
    /// when the last rotation was made.
    pub previous: Vec<PreviousSecret>,
    pub rotated_at: Timestamp,
}

/// A secret replaced by a rotation, valid until `until`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PreviousSecret {
    pub secret: String,
    pub until: Timestamp,
}

/// A rotation: `new` becomes current, the current one stays valid until
/// `previous_until`, and earlier ones until their own time.
#[derive(Clone, Debug)]
pub struct SecretRotation {
    pub subscription: String,
    pub new: String,
    pub previous_until: Timestamp,
    pub now: Timestamp,
}

impl SecretRotation {
    /// The previous secrets once this rotation replaces `before`'s current
    /// secret: that one first, then `before`'s previous ones still valid
    /// at `now`, at most [`MAX_PREVIOUS_SECRETS`] (the oldest go first).
    pub fn previous_after(&self, before: Option<&SigningSecrets>) -> Vec<PreviousSecret> {
        let Some(before) = before else {
            return Vec::new();
        };
        std::iter::once(PreviousSecret {
            secret: before.current.clone(),
            until: self.previous_until,
        })
        .chain(before.previous.iter().cloned())
        .filter(|previous| previous.until > self.now)
        .take(MAX_PREVIOUS_SECRETS)
        .collect()
    }
}

/// How both backends store the previous secrets: a JSON array of
/// `{"secret", "until"}` (milliseconds), newest first.
#[derive(serde::Serialize, serde::Deserialize)]
struct StoredPrevious {
    secret: String,
    until: i64,
}

pub(crate) fn previous_to_json(previous: &[PreviousSecret]) -> String {
    let stored: Vec<StoredPrevious> = previous
        .iter()
        .map(|p| StoredPrevious {
            secret: p.secret.clone(),
            until: p.until.as_millisecond(),
        })
        .collect();
    // A list of strings and integers has no serialization failure path.
    serde_json::to_string(&stored).unwrap_or_else(|_| "[]".to_owned())
}

pub(crate) fn previous_from_json(json: &str) -> crate::Result<Vec<PreviousSecret>> {
    let stored: Vec<StoredPrevious> = serde_json::from_str(json).map_err(|err| {
        crate::StoreError::Backend(format!("stored previous signing secrets: {err}"))
    })?;
    stored
        .into_iter()
        .map(|p| {
            Timestamp::from_millisecond(p.until)
                .map(|until| PreviousSecret {
                    secret: p.secret,
                    until,
                })
                .map_err(|err| {
                    crate::StoreError::Backend(format!("stored secret expiry {}: {err}", p.until))
                })
        })
        .collect()
}
