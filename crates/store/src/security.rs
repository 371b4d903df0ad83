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

/// A subscription's signing secrets, encrypted by the server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SigningSecrets {
    pub subscription: String,
    pub current: String,
    /// The secret before the last rotation, still signing until
    /// `previous_until`.
    pub previous: Option<String>,
    pub previous_until: Option<Timestamp>,
    pub rotated_at: Timestamp,
}

/// A rotation: `new` becomes current, the current one stays valid until
/// `previous_until`.
#[derive(Clone, Debug)]
pub struct SecretRotation {
    pub subscription: String,
    pub new: String,
    pub previous_until: Timestamp,
    pub now: Timestamp,
}
