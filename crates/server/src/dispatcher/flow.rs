//! Push backoff and flow control per subscription, Pub/Sub's model.
//!
//! Each subscription has a concurrency window: how many pushes may be in
//! flight to it at once. It starts at [`INITIAL_WINDOW`] (or the
//! subscription's `max_concurrency` when that is lower), grows by one on each
//! success (so it doubles every round trip while the endpoint keeps up, as
//! in TCP's slow start) up to `max_concurrency`, and halves on a failure.
//!
//! Once the window is down to one push and pushes still fail, failures
//! dominate: pushes pause for 100 ms, then 200 ms, 400 ms, … up to 60 s
//! per consecutive failure; a success ends the streak. A 429 or 503 with
//! `Retry-After` pauses pushes for that long (at most 60 s).
//!
//! A pause only holds back claims: deliveries due meanwhile stay scheduled
//! and are claimed after it, so pauses consume no attempts.
//!
//! Many pushes run at once, so the failures of one burst arrive together.
//! Each push carries the window's generation when it started, and only a
//! failure of a push started after the last cut cuts again: a burst of 64
//! failures halves the window once, not 64 times (TCP's once-per-round-trip
//! rule), and lengthens a pause by one step.

use std::time::{Duration, Instant};

/// Where a new subscription's window starts: enough for a healthy
/// endpoint's burst to ramp up within a few round trips, small enough that a
/// dead endpoint only ever holds a handful of pushes.
pub const INITIAL_WINDOW: u32 = 16;
/// The first pause once failures dominate.
pub const MIN_PAUSE: Duration = Duration::from_millis(100);
/// The longest pause, from backoff or `Retry-After`.
pub const MAX_PAUSE: Duration = Duration::from_secs(60);

/// What a finished push tells the flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    Success,
    Failure {
        /// The endpoint asked to wait this long (a 429 or 503 with
        /// `Retry-After`).
        retry_after: Option<Duration>,
    },
}

/// Identifies when a push started, relative to the window's cuts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Ticket(u64);

/// One subscription's flow state.
#[derive(Clone, Debug)]
pub struct Flow {
    window: u32,
    max: u32,
    generation: u64,
    /// Consecutive failures once the window is at one push.
    streak: u32,
    backoff_until: Option<Instant>,
    retry_after_until: Option<Instant>,
}

impl Flow {
    pub fn new(max_concurrency: u32) -> Flow {
        let max = max_concurrency.max(1);
        Flow {
            window: INITIAL_WINDOW.min(max),
            max,
            generation: 0,
            streak: 0,
            backoff_until: None,
            retry_after_until: None,
        }
    }

    /// Follows a changed `max_concurrency`.
    pub fn set_max(&mut self, max_concurrency: u32) {
        self.max = max_concurrency.max(1);
        self.window = self.window.min(self.max);
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
        [self.backoff_until, self.retry_after_until]
            .into_iter()
            .flatten()
            .filter(|until| *until > now)
            .max()
    }

    /// To be kept with a push as it starts and handed back with its signal.
    pub fn ticket(&self) -> Ticket {
        Ticket(self.generation)
    }

    /// Takes in the end of a push started with `ticket`.
    pub fn record(&mut self, ticket: Ticket, signal: Signal, now: Instant) {
        match signal {
            Signal::Success => {
                self.window = self.window.saturating_add(1).min(self.max);
                self.streak = 0;
                // The endpoint works again; but a wait it asked for stands.
                self.backoff_until = None;
            }
            Signal::Failure { retry_after } => {
                if let Some(wait) = retry_after {
                    let until = now + wait.min(MAX_PAUSE);
                    self.retry_after_until =
                        Some(self.retry_after_until.map_or(until, |u| u.max(until)));
                }
                if ticket.0 < self.generation {
                    // Started before the last cut: that cut already answered it.
                    return;
                }
                self.generation += 1;
                if self.window > 1 {
                    self.window = (self.window / 2).max(1);
                    return;
                }
                self.streak = self.streak.saturating_add(1);
                self.backoff_until = Some(now + backoff(self.streak));
            }
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
        Signal::Failure { retry_after: None }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn the_window_starts_small_and_grows_by_one_per_success_up_to_the_limit() {
        let now = Instant::now();
        let mut flow = Flow::new(64);
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
        assert_eq!(Flow::new(4).window(), 4);
        flow.set_max(10);
        assert_eq!(flow.window(), 10);
        assert_eq!(Flow::new(0).window(), 1);
    }

    #[test]
    fn a_failure_halves_the_window_once_per_burst() {
        let now = Instant::now();
        let mut flow = Flow::new(64);
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
        let mut flow = Flow::new(1);
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
        let mut flow = Flow::new(1);
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
        let mut flow = Flow::new(1);
        let first = flow.ticket();
        let second = flow.ticket();
        flow.record(first, fail(), now);
        flow.record(second, fail(), now);
        assert_eq!(flow.paused_until(now), Some(now + ms(100)));
    }

    #[test]
    fn retry_after_pauses_for_that_long_capped_at_60s() {
        let now = Instant::now();
        let mut flow = Flow::new(64);
        let ticket = flow.ticket();
        flow.record(
            ticket,
            Signal::Failure {
                retry_after: Some(Duration::from_secs(2)),
            },
            now,
        );
        assert_eq!(flow.paused_until(now), Some(now + Duration::from_secs(2)));
        assert_eq!(flow.allowed(now + ms(1999)), 0);
        assert_eq!(flow.allowed(now + ms(2000)), 8);
        // A success does not cut short a wait the endpoint asked for.
        let ticket = flow.ticket();
        flow.record(ticket, Signal::Success, now);
        assert_eq!(flow.allowed(now + ms(1000)), 0);
        // Stale or not, a Retry-After is honoured, at most 60s.
        let stale = Ticket(0);
        flow.record(
            stale,
            Signal::Failure {
                retry_after: Some(Duration::from_secs(3600)),
            },
            now,
        );
        assert_eq!(flow.paused_until(now), Some(now + MAX_PAUSE));
    }
}
