//! Flow control per subscription: how many pushes may be in flight to it,
//! and whether it is paused. Two modes, chosen by the subscription's
//! `push_backoff` setting.
//!
//! **Exact (push backoff off, the default).** A due delivery is claimed when
//! it is due; nothing here delays it. The only limit is on how many pushes
//! the subscription has in flight, and it only reacts to pushes that get no
//! answer within the timeout: those hold a push slot for the whole timeout,
//! and an endpoint that never answers would otherwise hold every slot of the
//! server. The window starts at [`INITIAL_WINDOW`] (or `max_concurrency` when
//! lower), halves on a timeout (once per round of pushes, see below) down to
//! one push, and grows by one for every push that ends any other way — a
//! success, an error status, a refused connection: each gave its slot back
//! promptly. An endpoint that answers, even with failures, so keeps its
//! window at `max_concurrency` and every retry starts on time.
//!
//! **Push backoff (Pub/Sub's model).** The window starts the same, grows by
//! one on each success (so it doubles every round trip while the endpoint
//! keeps up, as in TCP's slow start) up to `max_concurrency`, and halves on
//! any failure. Once it is down to one push and pushes still fail, failures
//! dominate: pushes pause for 100 ms, then 200 ms, 400 ms, … up to 60 s per
//! consecutive failure; a success ends the streak. Retries due during a
//! pause start after it, later than the retry policy says.
//!
//! In both modes a 429 or 503 with `Retry-After` pauses the subscription for
//! that long: the endpoint asked for it. The pause is capped like the retry
//! it delays — by the policy's longest delay — and at 60 s.
//!
//! A node that cannot read a subscription's signing secret (its secret key
//! is not the one the secret was stored with) pauses it too, on that node
//! only, for [`SECRET_UNREADABLE_PAUSE`]: it would sign nothing, so it
//! leaves the deliveries to nodes that can, and looks again after.
//!
//! A pause only holds back claims: deliveries due meanwhile stay scheduled
//! and are claimed after it, so pauses consume no attempts.
//!
//! Many pushes run at once, so the failures of one burst arrive together.
//! Each push carries the window's generation when it started, and only a
//! failure of a push started after the last cut cuts again: a burst of 64
//! failures halves the window once, not 64 times (TCP's once-per-round-trip
//! rule), and lengthens a pause by one step.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use jiff::Timestamp;

use crate::clock::Clock;

/// Where a new subscription's window starts: enough for a healthy
/// endpoint's burst to ramp up within a few round trips, small enough that a
/// dead endpoint only ever holds a handful of pushes.
pub const INITIAL_WINDOW: u32 = 16;
/// The first pause once failures dominate.
pub const MIN_PAUSE: Duration = Duration::from_millis(100);
/// The longest pause, from backoff or `Retry-After`.
pub const MAX_PAUSE: Duration = Duration::from_secs(60);
/// How long a node that cannot read a subscription's signing secret leaves
/// its deliveries to other nodes before it looks again: long enough to log
/// the trouble a couple of times a minute, not once per delivery; short
/// enough that a secret rotated to one this node can read is used soon.
pub const SECRET_UNREADABLE_PAUSE: Duration = Duration::from_secs(30);

/// What a finished push tells the flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    Success,
    Failure {
        /// The endpoint asked to wait this long (a 429 or 503 with
        /// `Retry-After`), already capped by the retry policy.
        retry_after: Option<Duration>,
        /// No answer came within the timeout: the push held its slot all
        /// along.
        timed_out: bool,
    },
}

/// Identifies when a push started, relative to the window's cuts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Ticket(u64);

/// Why a subscription's pushes are held back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HoldReason {
    /// Push backoff after this many consecutive failures.
    PushBackoff { consecutive_failures: u32 },
    /// The endpoint answered 429 or 503 with `Retry-After`.
    RetryAfter,
    /// This node cannot read the subscription's signing secret.
    SigningSecretUnreadable,
}

impl From<HoldReason> for redrive_core::hold::NodePause {
    fn from(reason: HoldReason) -> Self {
        match reason {
            HoldReason::PushBackoff {
                consecutive_failures,
            } => redrive_core::hold::NodePause::PushBackoff {
                consecutive_failures,
            },
            HoldReason::RetryAfter => redrive_core::hold::NodePause::RetryAfter,
            HoldReason::SigningSecretUnreadable => {
                redrive_core::hold::NodePause::SigningSecretUnreadable
            }
        }
    }
}

/// A pause in force: no push starts before `until`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hold {
    pub until: Instant,
    pub reason: HoldReason,
}

/// One subscription's flow state.
#[derive(Clone, Debug)]
pub struct Flow {
    window: u32,
    max: u32,
    push_backoff: bool,
    generation: u64,
    /// Consecutive failures once the window is at one push (push backoff).
    streak: u32,
    backoff_until: Option<Instant>,
    retry_after_until: Option<Instant>,
    secret_unreadable_until: Option<Instant>,
}

impl Flow {
    pub fn new(max_concurrency: u32, push_backoff: bool) -> Flow {
        let max = max_concurrency.max(1);
        Flow {
            window: INITIAL_WINDOW.min(max),
            max,
            push_backoff,
            generation: 0,
            streak: 0,
            backoff_until: None,
            retry_after_until: None,
            secret_unreadable_until: None,
        }
    }

    /// Follows a changed `max_concurrency` or `push_backoff`.
    pub fn follow(&mut self, max_concurrency: u32, push_backoff: bool) {
        self.max = max_concurrency.max(1);
        self.window = self.window.min(self.max);
        if self.push_backoff && !push_backoff {
            // Turned off: the schedule holds again from now on.
            self.streak = 0;
            self.backoff_until = None;
        }
        self.push_backoff = push_backoff;
    }

    pub fn window(&self) -> u32 {
        self.window
    }

    /// Pushes that may be in flight at `now`: none while paused.
    pub fn allowed(&self, now: Instant) -> u32 {
        if self.paused_until(now).is_some() {
            0
        } else {
            self.window
        }
    }

    /// The end of the pause in force at `now`, if any.
    pub fn paused_until(&self, now: Instant) -> Option<Instant> {
        self.hold(now).map(|hold| hold.until)
    }

    /// The pause in force at `now` and why; the later one when both are.
    pub fn hold(&self, now: Instant) -> Option<Hold> {
        let backoff = self.backoff_until.map(|until| Hold {
            until,
            reason: HoldReason::PushBackoff {
                consecutive_failures: self.streak,
            },
        });
        let retry_after = self.retry_after_until.map(|until| Hold {
            until,
            reason: HoldReason::RetryAfter,
        });
        let secret = self.secret_unreadable_until.map(|until| Hold {
            until,
            reason: HoldReason::SigningSecretUnreadable,
        });
        [backoff, retry_after, secret]
            .into_iter()
            .flatten()
            .filter(|hold| hold.until > now)
            .max_by_key(|hold| hold.until)
    }

    /// To be kept with a push as it starts and handed back with its signal.
    pub fn ticket(&self) -> Ticket {
        Ticket(self.generation)
    }

    /// Takes in the end of a push started with `ticket`.
    pub fn record(&mut self, ticket: Ticket, signal: Signal, now: Instant) {
        match signal {
            Signal::Success => self.answered(),
            Signal::Failure {
                retry_after,
                timed_out,
            } => {
                if let Some(wait) = retry_after {
                    let until = now + wait.min(MAX_PAUSE);
                    self.retry_after_until =
                        Some(self.retry_after_until.map_or(until, |u| u.max(until)));
                }
                if self.push_backoff {
                    self.backoff_failure(ticket, now);
                } else if timed_out {
                    self.cut(ticket);
                } else {
                    // An answer, even a failing one, gave the slot back at
                    // once: nothing to hold back.
                    self.window = self.window.saturating_add(1).min(self.max);
                }
            }
        }
    }

    /// Pauses for `wait` because a push found the signing secret
    /// unreadable; true when this starts a pause (none of this kind was in
    /// force), false for the pushes of the same round finding the same. A
    /// pause is never lengthened: every round of claims after it looks
    /// again.
    pub fn secret_unreadable(&mut self, wait: Duration, now: Instant) -> bool {
        if self
            .secret_unreadable_until
            .is_some_and(|until| until > now)
        {
            return false;
        }
        self.secret_unreadable_until = Some(now + wait);
        true
    }

    fn answered(&mut self) {
        self.window = self.window.saturating_add(1).min(self.max);
        self.streak = 0;
        // The endpoint works again; but a wait it asked for stands.
        self.backoff_until = None;
    }

    /// Halves the window once per round of pushes; true when it did.
    fn cut(&mut self, ticket: Ticket) -> bool {
        if ticket.0 < self.generation {
            // Started before the last cut: that cut already answered it.
            return false;
        }
        self.generation += 1;
        self.window = (self.window / 2).max(1);
        true
    }

    fn backoff_failure(&mut self, ticket: Ticket, now: Instant) {
        let at_one = self.window <= 1;
        if !self.cut(ticket) || !at_one {
            return;
        }
        self.streak = self.streak.saturating_add(1);
        self.backoff_until = Some(now + backoff(self.streak));
    }
}

/// A pause as others may read it: its end on the wall clock, and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PushHold {
    pub until: Timestamp,
    pub reason: HoldReason,
}

/// The pauses in force on this node, per subscription: the dispatcher
/// writes them as they start and end, the API may read them.
#[derive(Debug, Default)]
pub struct PushHolds {
    holds: Mutex<HashMap<String, PushHold>>,
    /// Turns a pause's monotonic end into wall-clock time.
    clock: Clock,
}

impl PushHolds {
    pub fn new(clock: Clock) -> Self {
        PushHolds {
            holds: Mutex::default(),
            clock,
        }
    }

    /// The pause holding back `subscription`'s pushes at `now`, if any.
    pub fn get(&self, subscription: &str, now: Timestamp) -> Option<PushHold> {
        let holds = self.holds.lock().ok()?;
        holds
            .get(subscription)
            .copied()
            .filter(|hold| hold.until > now)
    }

    /// The pause holding back `subscription`'s pushes at `now` as the
    /// domain words it: its end and why.
    pub fn pause(
        &self,
        subscription: &str,
        now: Timestamp,
    ) -> Option<(Timestamp, redrive_core::hold::NodePause)> {
        self.get(subscription, now)
            .map(|hold| (hold.until, hold.reason.into()))
    }

    /// Notes the pause `hold` of `flow` (ending at a monotonic instant)
    /// for `subscription`, or that it has none.
    pub(super) fn note(&self, subscription: &str, hold: Option<Hold>) {
        let Ok(mut holds) = self.holds.lock() else {
            return;
        };
        match hold {
            Some(hold) => {
                let left = hold.until.saturating_duration_since(Instant::now());
                let until = self.clock.now().checked_add(left).unwrap_or(Timestamp::MAX);
                holds.insert(
                    subscription.to_owned(),
                    PushHold {
                        until,
                        reason: hold.reason,
                    },
                );
            }
            None => {
                holds.remove(subscription);
            }
        }
    }

    /// Forgets the subscriptions `keep` does not name.
    pub(super) fn retain(&self, keep: impl Fn(&str) -> bool) {
        if let Ok(mut holds) = self.holds.lock() {
            holds.retain(|name, _| keep(name));
        }
    }
}

/// The pause after `streak` consecutive failures at the smallest window:
/// 100 ms doubling per failure, at most 60 s.
pub fn backoff(streak: u32) -> Duration {
    let doublings = streak.saturating_sub(1).min(20);
    MIN_PAUSE.saturating_mul(1 << doublings).min(MAX_PAUSE)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fail() -> Signal {
        Signal::Failure {
            retry_after: None,
            timed_out: false,
        }
    }

    fn timeout() -> Signal {
        Signal::Failure {
            retry_after: None,
            timed_out: true,
        }
    }

    fn retry_after(wait: Duration) -> Signal {
        Signal::Failure {
            retry_after: Some(wait),
            timed_out: false,
        }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn the_window_starts_small_and_grows_by_one_per_success_up_to_the_limit() {
        let now = Instant::now();
        let mut flow = Flow::new(64, true);
        assert_eq!(flow.window(), 16);
        assert_eq!(flow.allowed(now), 16);
        for _ in 0..10 {
            let ticket = flow.ticket();
            flow.record(ticket, Signal::Success, now);
        }
        assert_eq!(flow.window(), 26);
        for _ in 0..100 {
            let ticket = flow.ticket();
            flow.record(ticket, Signal::Success, now);
        }
        assert_eq!(flow.window(), 64);
        // A lower limit caps it, also at the start.
        assert_eq!(Flow::new(4, true).window(), 4);
        flow.follow(10, true);
        assert_eq!(flow.window(), 10);
        assert_eq!(Flow::new(0, true).window(), 1);
    }

    #[test]
    fn a_failure_halves_the_window_once_per_burst() {
        let now = Instant::now();
        let mut flow = Flow::new(64, true);
        // 16 pushes start together and all fail: one cut.
        let tickets: Vec<Ticket> = (0..16).map(|_| flow.ticket()).collect();
        for ticket in tickets {
            flow.record(ticket, fail(), now);
        }
        assert_eq!(flow.window(), 8);
        assert_eq!(flow.allowed(now), 8, "no pause while the window can shrink");
        // The next round's failure cuts again.
        let ticket = flow.ticket();
        flow.record(ticket, fail(), now);
        assert_eq!(flow.window(), 4);
    }

    #[test]
    fn at_one_push_failures_pause_exponentially_from_100ms_to_60s() {
        let start = Instant::now();
        let mut flow = Flow::new(1, true);
        let mut now = start;
        let mut pauses = Vec::new();
        for _ in 0..12 {
            let ticket = flow.ticket();
            flow.record(ticket, fail(), now);
            let until = flow.paused_until(now).expect("paused");
            assert_eq!(flow.allowed(now), 0);
            pauses.push(until - now);
            now = until;
            assert_eq!(flow.allowed(now), 1, "the pause ends on time");
        }
        assert_eq!(
            pauses,
            [
                ms(100),
                ms(200),
                ms(400),
                ms(800),
                ms(1600),
                ms(3200),
                ms(6400),
                ms(12_800),
                ms(25_600),
                ms(51_200),
                ms(60_000),
                ms(60_000)
            ]
        );
        assert_eq!(backoff(1000), MAX_PAUSE);
    }

    #[test]
    fn a_success_resets_the_streak_and_ends_the_backoff() {
        let now = Instant::now();
        let mut flow = Flow::new(1, true);
        for _ in 0..5 {
            let ticket = flow.ticket();
            flow.record(ticket, fail(), now);
        }
        assert_eq!(flow.paused_until(now), Some(now + ms(1600)));
        // A push from before the pause comes back fine.
        let ticket = flow.ticket();
        flow.record(ticket, Signal::Success, now);
        assert_eq!(flow.paused_until(now), None);
        let ticket = flow.ticket();
        flow.record(ticket, fail(), now);
        assert_eq!(flow.paused_until(now), Some(now + ms(100)));
    }

    #[test]
    fn stale_failures_do_not_lengthen_the_pause() {
        let now = Instant::now();
        let mut flow = Flow::new(1, true);
        let first = flow.ticket();
        let second = flow.ticket();
        flow.record(first, fail(), now);
        flow.record(second, fail(), now);
        assert_eq!(flow.paused_until(now), Some(now + ms(100)));
    }

    #[test]
    fn retry_after_pauses_for_that_long_capped_at_60s() {
        let now = Instant::now();
        let mut flow = Flow::new(64, true);
        let ticket = flow.ticket();
        flow.record(ticket, retry_after(Duration::from_secs(2)), now);
        assert_eq!(flow.paused_until(now), Some(now + Duration::from_secs(2)));
        assert_eq!(flow.allowed(now + ms(1999)), 0);
        assert_eq!(flow.allowed(now + ms(2000)), 8);
        // A success does not cut short a wait the endpoint asked for.
        let ticket = flow.ticket();
        flow.record(ticket, Signal::Success, now);
        assert_eq!(flow.allowed(now + ms(1000)), 0);
        // Stale or not, a Retry-After is honoured, at most 60s.
        let stale = Ticket(0);
        flow.record(stale, retry_after(Duration::from_secs(3600)), now);
        assert_eq!(flow.paused_until(now), Some(now + MAX_PAUSE));
    }

    #[test]
    fn without_push_backoff_answered_failures_never_pause_or_shrink_the_window() {
        let now = Instant::now();
        let mut flow = Flow::new(64, false);
        for _ in 0..100 {
            let ticket = flow.ticket();
            flow.record(ticket, fail(), now);
            assert_eq!(flow.paused_until(now), None);
        }
        assert_eq!(flow.window(), 64);
        assert_eq!(flow.allowed(now), 64);
    }

    #[test]
    fn without_push_backoff_timeouts_halve_the_window_per_round_down_to_one_without_pausing() {
        let now = Instant::now();
        let mut flow = Flow::new(64, false);
        let mut windows = Vec::new();
        for _ in 0..6 {
            // A whole window of pushes that all time out: one cut.
            let tickets: Vec<Ticket> = (0..flow.window()).map(|_| flow.ticket()).collect();
            for ticket in tickets {
                flow.record(ticket, timeout(), now);
            }
            windows.push(flow.window());
            assert_eq!(flow.paused_until(now), None, "no pause, ever");
        }
        assert_eq!(windows, [8, 4, 2, 1, 1, 1]);
        // Each push that ends with an answer gives one back.
        for expected in 2..=5 {
            let ticket = flow.ticket();
            flow.record(ticket, fail(), now);
            assert_eq!(flow.window(), expected);
        }
    }

    #[test]
    fn retry_after_pauses_without_push_backoff_too() {
        let now = Instant::now();
        let mut flow = Flow::new(64, false);
        let ticket = flow.ticket();
        flow.record(ticket, retry_after(Duration::from_secs(2)), now);
        assert_eq!(
            flow.hold(now),
            Some(Hold {
                until: now + Duration::from_secs(2),
                reason: HoldReason::RetryAfter
            })
        );
        assert_eq!(flow.allowed(now + ms(1999)), 0);
        assert_eq!(flow.allowed(now + ms(2000)), 17);
    }

    #[test]
    fn a_hold_says_why() {
        let now = Instant::now();
        let mut flow = Flow::new(1, true);
        for _ in 0..3 {
            let ticket = flow.ticket();
            flow.record(ticket, fail(), now);
        }
        assert_eq!(
            flow.hold(now),
            Some(Hold {
                until: now + ms(400),
                reason: HoldReason::PushBackoff {
                    consecutive_failures: 3
                }
            })
        );
        let ticket = flow.ticket();
        flow.record(ticket, retry_after(Duration::from_secs(5)), now);
        assert_eq!(
            flow.hold(now).map(|h| h.reason),
            Some(HoldReason::RetryAfter)
        );
    }

    #[test]
    fn an_unreadable_secret_pauses_once_per_round_without_touching_the_window() {
        let now = Instant::now();
        let mut flow = Flow::new(64, false);
        let wait = Duration::from_secs(30);
        assert!(flow.secret_unreadable(wait, now));
        // The other pushes of that round find the same: no new pause.
        assert!(!flow.secret_unreadable(wait, now + ms(5)));
        assert_eq!(
            flow.hold(now + ms(5)),
            Some(Hold {
                until: now + wait,
                reason: HoldReason::SigningSecretUnreadable
            })
        );
        assert_eq!(flow.allowed(now + wait - ms(1)), 0);
        assert_eq!(flow.allowed(now + wait), 16);
        // Found again after it: a new pause.
        assert!(flow.secret_unreadable(wait, now + wait));
        assert_eq!(flow.paused_until(now + wait), Some(now + wait + wait));
    }

    #[test]
    fn turning_push_backoff_off_ends_its_pause_at_once() {
        let now = Instant::now();
        let mut flow = Flow::new(1, true);
        for _ in 0..4 {
            let ticket = flow.ticket();
            flow.record(ticket, fail(), now);
        }
        assert_eq!(flow.paused_until(now), Some(now + ms(800)));
        flow.follow(64, false);
        assert_eq!(flow.paused_until(now), None);
        assert_eq!(flow.allowed(now), 1);
        // From here failures no longer pause.
        let ticket = flow.ticket();
        flow.record(ticket, fail(), now);
        assert_eq!(flow.paused_until(now), None);
        assert_eq!(flow.window(), 2);
    }
}
