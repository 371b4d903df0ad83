//! The receiving half of webhooks: turn a sender's *at-least-once* pushes
//! into *exactly-once* effects.
//!
//! A webhook sender such as [redrive](https://crates.io/crates/redrive)
//! pushes each event until the endpoint acknowledges it, so an endpoint can
//! see the same push twice: an attempt in flight when something crashed, a
//! timeout after the handler had committed, a manual redrive. This crate
//! does the four things every receiver must get right:
//!
//! 1. **Verify** the [Standard Webhooks](https://www.standardwebhooks.com)
//!    signature (`webhook-id`, `webhook-timestamp`, `webhook-signature`,
//!    `whsec_` secrets, several signatures during a rotation), refusing
//!    timestamps more than 5 minutes off ([`Verifier`]).
//! 2. **Decode** the CloudEvent in whichever format it came: binary mode
//!    (`ce-*` headers), structured mode (`application/cloudevents+json`) or
//!    Pub/Sub's push envelope, with the attempt number ([`decode`]).
//! 3. **Deduplicate in the handler's own transaction**: a receipt keyed by
//!    `webhook-id` is inserted in the same database transaction as the
//!    handler's writes, so "processed" and its effects commit or roll back
//!    together ([`sqlite`] with the `sqlite` feature, [`postgres`] with the
//!    `postgres` feature).
//! 4. **Answer the right status**, which decides whether the sender
//!    retries ([`Outcome`]).
//!
//! With the `axum` feature, [`Delivery`] is an extractor and [`Outcome`] a
//! response, so a handler is a few lines (see the `axum` module).
//!
//! # Example
//!
//! ```
//! use std::time::{Duration, UNIX_EPOCH};
//! use redrive_receiver::{Headers, Verifier, receive, sign};
//!
//! let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
//! let body = br#"{"order": 42}"#;
//! let signature = sign(secret, "d-1", 1_700_000_000, body).unwrap();
//! let headers = Headers::from_pairs([
//!     ("webhook-id", "d-1"),
//!     ("webhook-timestamp", "1700000000"),
//!     ("webhook-signature", signature.as_str()),
//!     ("redrive-attempt", "2"),
//!     ("ce-id", "order-42"),
//!     ("ce-source", "/shop"),
//!     ("ce-type", "order.created"),
//!     ("ce-specversion", "1.0"),
//!     ("content-type", "application/json"),
//! ]);
//! let now = UNIX_EPOCH + Duration::from_secs(1_700_000_010);
//! let verifier = Verifier::new(secret).unwrap();
//!
//! let delivery = receive(&verifier, &headers, body, now).unwrap();
//! assert_eq!(delivery.webhook_id, "d-1");
//! assert_eq!(delivery.attempt, Some(2));
//! assert_eq!(delivery.event.ty, "order.created");
//!
//! // A tampered body is refused with 401.
//! let err = receive(&verifier, &headers, br#"{"order": 43}"#, now).unwrap_err();
//! assert_eq!(err.status(), 401);
//! assert_eq!(err.kind(), "no_matching_signature");
//! ```
//!
//! Then, with the `sqlite` feature, the handler runs at most once per
//! `webhook-id`:
//!
//! ```ignore
//! let outcome = redrive_receiver::sqlite::process(&mut conn, &delivery, |tx, delivery| {
//!     tx.execute("INSERT INTO orders (id) VALUES (?1)", [&delivery.event.id])?;
//!     Ok::<_, rusqlite::Error>(Outcome::Processed)
//! });
//! // outcome.status(): 200 the first time and every time after.
//! ```
//! (The [`sqlite`] module has this example as a tested one.)
//!
//! # Cargo features
//!
//! - `sqlite`: [`sqlite`], receipts in a `rusqlite` transaction.
//! - `postgres`: [`postgres`], receipts in a `tokio-postgres` transaction.
//! - `axum`: the [`Delivery`] extractor and `IntoResponse` for [`Outcome`].

#![cfg_attr(docsrs, feature(doc_cfg))]

use std::time::SystemTime;

mod event;
mod headers;
mod outcome;
mod verify;

#[cfg(feature = "axum")]
pub mod axum;
#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "sqlite")]
pub mod sqlite;

pub use event::{
    CloudEvent, DecodeError, Format, decode, decode_binary, decode_pubsub, decode_structured,
};
pub use headers::Headers;
pub use outcome::{Outcome, REJECT_STATUS};
pub use verify::{DEFAULT_TOLERANCE, SecretError, Signed, Verifier, VerifyError, sign};

/// How long a receipt should be kept: 31 days, the longest
/// `message_retention` redrive allows. A push of a `webhook-id` whose
/// receipt was pruned runs the handler again.
pub const DEFAULT_RETENTION: std::time::Duration = std::time::Duration::from_secs(31 * 24 * 3600);

/// The name of the table that holds receipts, in both databases.
pub const RECEIPTS_TABLE: &str = "redrive_receipts";

/// What inserting a receipt found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// No receipt yet: this transaction holds the new one; process.
    First,
    /// Already processed: do nothing.
    Duplicate,
}

/// One verified, decoded push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// `webhook-id`: the same on every attempt of this delivery, and on a
    /// manual redrive of it. The idempotency key.
    pub webhook_id: String,
    /// `webhook-timestamp`: Unix seconds when this attempt was sent.
    pub timestamp: i64,
    /// 1 on the first attempt, when the sender says (`redrive-attempt`, or
    /// Pub/Sub's `deliveryAttempt`).
    pub attempt: Option<u32>,
    pub format: Format,
    pub event: CloudEvent,
}

/// Why a request was refused before any handler ran.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReceiveError {
    /// 401: not proven to come from the sender, or a replay.
    #[error(transparent)]
    Verify(#[from] VerifyError),
    /// 400: signed, but not a CloudEvent.
    #[error("not a CloudEvent: {0}")]
    Decode(#[from] DecodeError),
}

impl ReceiveError {
    /// 401 for a verification failure, 400 for a decoding failure.
    pub fn status(&self) -> u16 {
        match self {
            ReceiveError::Verify(_) => 401,
            ReceiveError::Decode(_) => 400,
        }
    }

    /// A stable name: one of [`VerifyError::kind`], or `invalid_event`.
    pub fn kind(&self) -> &'static str {
        match self {
            ReceiveError::Verify(err) => err.kind(),
            ReceiveError::Decode(_) => "invalid_event",
        }
    }
}

/// Verifies a request, then decodes it. The signature is checked first and
/// over the exact body bytes: nothing unverified is parsed.
pub fn receive(
    verifier: &Verifier,
    headers: &Headers,
    body: &[u8],
    now: SystemTime,
) -> Result<Delivery, ReceiveError> {
    let signed = verifier.verify_headers(headers, body, now)?;
    let (format, event, attempt) = decode(headers, body)?;
    Ok(Delivery {
        webhook_id: signed.webhook_id,
        timestamp: signed.timestamp,
        attempt,
        format,
        event,
    })
}
