//! What a handler decided, and the HTTP answer that makes the sender do the
//! right thing next.

use std::time::Duration;

use serde_json::{Value, json};

use crate::ReceiveError;

/// The status a rejection is answered with: final under redrive's
/// `adobe-io` preset, and under any policy whose `final_codes` lists it.
pub const REJECT_STATUS: u16 = 422;

/// How one request ended.
///
/// | outcome | status | the sender |
/// |---|---|---|
/// | [`Processed`](Outcome::Processed) | 200 | is done |
/// | [`Duplicate`](Outcome::Duplicate) | 200 | is done; the handler did not run again |
/// | [`RetryLater`](Outcome::RetryLater) | 503, `Retry-After` with a delay | retries, no sooner than the delay |
/// | [`Rejected`](Outcome::Rejected) | 422 | stops if its policy treats 422 as final |
/// | [`Invalid`](Outcome::Invalid), bad signature | 401 | retries (a rotated secret may fix it) |
/// | [`Invalid`](Outcome::Invalid), not a CloudEvent | 400 | stops if its policy treats 400 as final |
/// | [`Failed`](Outcome::Failed) | 500 | retries |
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The handler's effects are committed, with the delivery's receipt.
    Processed,
    /// This `webhook-id` was processed before; nothing ran.
    Duplicate,
    /// Not now: nothing was committed; ask again, after `after` if given.
    RetryLater { after: Option<Duration> },
    /// Never: the event cannot be processed, asking again will not help.
    /// Nothing was committed, so a later manual redrive runs the handler
    /// again.
    Rejected { reason: String },
    /// The request failed verification or decoding; the handler never ran.
    Invalid(ReceiveError),
    /// Something unexpected (the database, a bug); nothing was committed.
    /// The message is for the receiver's log, not the answer.
    Failed { message: String },
}

impl Outcome {
    /// Retry later, no sooner than `after`.
    pub fn retry_after(after: Duration) -> Outcome {
        Outcome::RetryLater { after: Some(after) }
    }

    /// Retry later, when the sender's policy says.
    pub fn retry_later() -> Outcome {
        Outcome::RetryLater { after: None }
    }

    /// Reject for good, saying why.
    pub fn reject(reason: impl Into<String>) -> Outcome {
        Outcome::Rejected {
            reason: reason.into(),
        }
    }

    /// An unexpected failure, retried by the sender.
    pub fn failed(message: impl std::fmt::Display) -> Outcome {
        Outcome::Failed {
            message: message.to_string(),
        }
    }

    /// The HTTP status to answer.
    pub fn status(&self) -> u16 {
        match self {
            Outcome::Processed | Outcome::Duplicate => 200,
            Outcome::RetryLater { .. } => 503,
            Outcome::Rejected { .. } => REJECT_STATUS,
            Outcome::Invalid(err) => err.status(),
            Outcome::Failed { .. } => 500,
        }
    }

    /// The `Retry-After` header value (whole seconds, rounded up), if any.
    pub fn retry_after_header(&self) -> Option<String> {
        match self {
            Outcome::RetryLater { after: Some(after) } => {
                let seconds = after.as_secs() + u64::from(after.subsec_nanos() > 0);
                Some(seconds.to_string())
            }
            _ => None,
        }
    }

    /// The stable name of the outcome, as the answer's body and the Python
    /// module spell it.
    pub fn name(&self) -> &'static str {
        match self {
            Outcome::Processed => "processed",
            Outcome::Duplicate => "duplicate",
            Outcome::RetryLater { .. } => "retry_later",
            Outcome::Rejected { .. } => "rejected",
            Outcome::Invalid(_) => "invalid",
            Outcome::Failed { .. } => "failed",
        }
    }

    /// The JSON answer, which the sender keeps as the attempt's response
    /// snippet. An unexpected failure's message stays out of it: it may
    /// tell the sender about the receiver's insides.
    pub fn body(&self) -> Value {
        let mut body = json!({"outcome": self.name()});
        match self {
            Outcome::Rejected { reason } => body["reason"] = json!(reason),
            Outcome::Invalid(err) => {
                body["error"] = json!(err.kind());
                body["message"] = json!(err.to_string());
            }
            Outcome::RetryLater { after: Some(_) } => {
                body["retry_after"] = json!(self.retry_after_header());
            }
            _ => {}
        }
        body
    }

    /// Whether the handler's writes are to be committed.
    pub fn commits(&self) -> bool {
        matches!(self, Outcome::Processed)
    }
}

impl From<ReceiveError> for Outcome {
    fn from(err: ReceiveError) -> Outcome {
        Outcome::Invalid(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        let outcome = Outcome::retry_after(Duration::from_millis(1500));
        assert_eq!(outcome.status(), 503);
        assert_eq!(outcome.retry_after_header().as_deref(), Some("2"));
        assert_eq!(
            Outcome::retry_after(Duration::from_secs(30))
                .retry_after_header()
                .as_deref(),
            Some("30")
        );
        assert_eq!(Outcome::retry_later().retry_after_header(), None);
    }

    #[test]
    fn failures_keep_their_message_out_of_the_answer() {
        let outcome = Outcome::failed("password=hunter2 rejected by db");
        assert_eq!(outcome.status(), 500);
        assert!(!outcome.body().to_string().contains("hunter2"));
    }
}
