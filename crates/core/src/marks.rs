//! Which icons a delivery carries in lists: the rule lives here, as plain
//! logic, so the console and anything else that flags trouble agree.

use crate::model::{Delivery, DeliveryState};

/// One icon a delivery can carry. A delivery can carry several: a delivery
/// retried and then delivered is both [`Mark::Retried`] and
/// [`Mark::Delivered`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mark {
    /// It failed for good, or its latest attempt failed.
    Failed,
    /// It took more than one attempt, whatever happened after.
    Retried,
    /// It was delivered.
    Delivered,
}

impl Mark {
    /// The text alternative of the icon (and what tests look for).
    pub fn label(self) -> &'static str {
        match self {
            Mark::Failed => "failed",
            Mark::Retried => "retried",
            Mark::Delivered => "delivered",
        }
    }
}

/// Whether the latest finished attempt of `delivery` failed. A delivered
/// delivery's latest attempt succeeded by definition, even with a status
/// outside 2xx that its policy counts as success (Pub/Sub's 102).
pub fn latest_attempt_failed(delivery: &Delivery) -> bool {
    if delivery.state == DeliveryState::Delivered || delivery.attempts == 0 {
        return false;
    }
    delivery.last_error.is_some()
        || delivery
            .last_status
            .is_some_and(|status| !(200..300).contains(&status))
}

/// The icons of `delivery`, in display order (failed, retried, delivered).
pub fn marks(delivery: &Delivery) -> Vec<Mark> {
    let mut marks = Vec::with_capacity(2);
    if delivery.state == DeliveryState::Failed || latest_attempt_failed(delivery) {
        marks.push(Mark::Failed);
    }
    if delivery.attempts > 1 {
        marks.push(Mark::Retried);
    }
    if delivery.state == DeliveryState::Delivered {
        marks.push(Mark::Delivered);
    }
    marks
}

#[cfg(test)]
mod tests {
    use jiff::Timestamp;

    use super::*;
    use crate::retry::classify::ErrorClass;
    use crate::retry::decision::FailureReason;

    fn delivery(state: DeliveryState, attempts: u32, last_status: Option<u16>) -> Delivery {
        Delivery {
            id: "d1".into(),
            subscription: "s".into(),
            event_id: "e1".into(),
            event_source: "/tests".into(),
            event_type: "t".into(),
            state,
            attempts,
            next_attempt_at: None,
            first_attempt_at: None,
            last_attempt_at: None,
            last_status,
            last_error: None,
            failure_reason: None,
            dead_letter_event: None,
            attempts_before_redrive: 0,
            redriven_at: None,
            created_at: Timestamp::UNIX_EPOCH,
            updated_at: Timestamp::UNIX_EPOCH,
        }
    }

    #[test]
    fn delivered_first_time_is_only_delivered() {
        let d = delivery(DeliveryState::Delivered, 1, Some(200));
        assert_eq!(marks(&d), [Mark::Delivered]);
    }

    #[test]
    fn delivered_after_a_retry_is_retried_and_delivered() {
        let d = delivery(DeliveryState::Delivered, 3, Some(204));
        assert_eq!(marks(&d), [Mark::Retried, Mark::Delivered]);
    }

    #[test]
    fn delivered_with_a_non_2xx_success_code_is_not_failed() {
        let d = delivery(DeliveryState::Delivered, 1, Some(102));
        assert_eq!(marks(&d), [Mark::Delivered]);
    }

    #[test]
    fn finally_failed_after_retries_is_failed_and_retried() {
        let mut d = delivery(DeliveryState::Failed, 4, Some(500));
        d.failure_reason = Some(FailureReason::RetriesExhausted);
        assert_eq!(marks(&d), [Mark::Failed, Mark::Retried]);
    }

    #[test]
    fn failed_without_any_attempt_is_failed() {
        let mut d = delivery(DeliveryState::Failed, 0, None);
        d.failure_reason = Some(FailureReason::Cancelled);
        assert_eq!(marks(&d), [Mark::Failed]);
    }

    #[test]
    fn waiting_for_a_retry_after_a_failed_status_is_failed() {
        let d = delivery(DeliveryState::Scheduled, 1, Some(503));
        assert_eq!(marks(&d), [Mark::Failed]);
    }

    #[test]
    fn waiting_for_a_retry_after_a_timeout_is_failed_and_retried() {
        let mut d = delivery(DeliveryState::Scheduled, 2, None);
        d.last_error = Some(ErrorClass::Timeout);
        assert_eq!(marks(&d), [Mark::Failed, Mark::Retried]);
    }

    #[test]
    fn scheduled_for_the_first_time_has_no_mark() {
        let d = delivery(DeliveryState::Scheduled, 0, None);
        assert!(marks(&d).is_empty());
    }

    #[test]
    fn retried_now_after_success_is_not_failed() {
        // A delivered delivery sent again with "retry now" keeps its 200.
        let d = delivery(DeliveryState::Scheduled, 1, Some(200));
        assert!(marks(&d).is_empty());
    }

    #[test]
    fn labels_are_the_text_alternatives() {
        let labels: Vec<_> = [Mark::Failed, Mark::Retried, Mark::Delivered]
            .map(Mark::label)
            .to_vec();
        assert_eq!(labels, ["failed", "retried", "delivered"]);
    }
}
