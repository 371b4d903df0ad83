//! Claims at publish. While the dispatcher waits with slots free, it
//! *offers* those of subscriptions whose due queue its last claim found
//! empty to the store; a publish then writes its new deliveries of an
//! offered subscription straight into flight, under the lease a claim would
//! give, and hands them to the dispatcher once committed. Such a delivery
//! is never written to the due queue, read back, claimed and rewritten: its
//! first attempt starts at its publish, as its policy says, without a round
//! trip through the store.
//!
//! Everything a claim guarantees still holds, because the delivery is
//! stored exactly as a claim at its publish would leave it (`plan::claimed`
//! decides both): in flight under a lease, its first attempt counted. A
//! crash makes it due again like any claim; the console shows it in flight.
//! The dispatcher offers only what its limits allow at that moment (its
//! concurrency, flow and rate), per subscription and in all, and counts
//! what was taken and not yet handed over (`in_transit`) as in flight. Its
//! own claims reserve from the same offer while it is open and give back
//! what they did not take, so no slot is given twice and the offer need
//! not close while the loop claims; the loop replaces it whenever its
//! counts change. The store checks at the publish what only it knows
//! (paused, disabled). On a shared backend each node's dispatcher offers to
//! its own store only, so a node hands its own publishes to itself.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use jiff::Timestamp;
use tokio::sync::mpsc;

use crate::{ClaimWant, ClaimedDelivery};

/// Slots the dispatcher offers: how many new deliveries of each
/// subscription a publish may take into flight, and how many in all.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Offer {
    pub slots: HashMap<String, u32>,
    pub total: u32,
    /// The lease a delivery taken is claimed under.
    pub lease: Duration,
}

/// The meeting point of one store's publishes and one dispatcher.
#[derive(Debug)]
pub struct Handoff {
    state: Mutex<State>,
    /// One message per commit: the dispatcher wakes once for all of them.
    sender: mpsc::UnboundedSender<Vec<ClaimedDelivery>>,
    receiver: Mutex<Option<mpsc::UnboundedReceiver<Vec<ClaimedDelivery>>>>,
}

#[derive(Debug, Default)]
struct State {
    offer: Option<Offer>,
    /// Taken by a publish not yet handed over (or given up), per subscription.
    in_transit: HashMap<String, u32>,
}

impl Handoff {
    pub fn new() -> Arc<Handoff> {
        let (sender, receiver) = mpsc::unbounded_channel();
        Arc::new(Handoff {
            state: Mutex::default(),
            sender,
            receiver: Mutex::new(Some(receiver)),
        })
    }

    /// Where handed-over deliveries arrive; the first caller (the one
    /// dispatcher of this store) gets it, later ones `None` and offer nothing.
    pub fn receiver(&self) -> Option<mpsc::UnboundedReceiver<Vec<ClaimedDelivery>>> {
        self.receiver
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }

    /// Opens `offer`, in place of any before it.
    pub fn offer(&self, offer: Offer) {
        self.state().offer = (offer.total > 0).then_some(offer);
    }

    /// Closes the offer: publishes take nothing until the next one.
    pub fn close(&self) {
        self.state().offer = None;
    }

    /// Closes the offer. Returns what publishes took and have not handed
    /// over yet, per subscription: in flight for the caller's counts, on
    /// top of what arrived (a delivery sent just now may be in both, which
    /// only ever counts a slot twice, never none).
    pub fn withdraw(&self) -> HashMap<String, u32> {
        let mut state = self.state();
        state.offer = None;
        state
            .in_transit
            .iter()
            .filter(|(_, count)| **count > 0)
            .map(|(name, count)| (name.clone(), *count))
            .collect()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes a slot of `subscription` for a delivery being published: the
    /// lease it is claimed under, or `None` when no slot is offered.
    fn take(&self, subscription: &str) -> Option<Duration> {
        let mut state = self.state();
        let offer = state.offer.as_mut()?;
        let slots = offer.slots.get_mut(subscription)?;
        if *slots == 0 || offer.total == 0 {
            return None;
        }
        *slots -= 1;
        offer.total -= 1;
        let lease = offer.lease;
        match state.in_transit.get_mut(subscription) {
            Some(count) => *count += 1,
            None => {
                state.in_transit.insert(subscription.to_owned(), 1);
            }
        }
        Some(lease)
    }

    /// Reserves for a claim of `subscription` up to `wanted` slots of the
    /// open offer: claims and publishes share it, so the dispatcher need
    /// not close it while it claims. All of `wanted` when no offer is open.
    /// What the claim does not take goes back with [`Handoff::refund`].
    pub(crate) fn reserve(&self, subscription: &str, wanted: u32) -> u32 {
        let mut state = self.state();
        let Some(offer) = state.offer.as_mut() else {
            return wanted;
        };
        let own = offer.slots.get(subscription).copied().unwrap_or(wanted);
        let granted = wanted.min(own).min(offer.total);
        if let Some(slots) = offer.slots.get_mut(subscription) {
            *slots -= granted;
        }
        offer.total -= granted;
        granted
    }

    /// Gives back to the open offer reserved slots a claim did not take.
    pub(crate) fn refund(&self, subscription: &str, unused: u32) {
        let mut state = self.state();
        if let Some(offer) = state.offer.as_mut() {
            if let Some(slots) = offer.slots.get_mut(subscription) {
                *slots += unused;
            }
            offer.total += unused;
        }
    }

    /// [`Handoff::reserve`] for each of a claim's wants: their limits as
    /// the open offer allows, in place.
    pub(crate) fn reserve_wants(&self, wants: &mut [ClaimWant]) {
        for want in wants {
            want.limit = self.reserve(&want.subscription, want.limit);
        }
    }

    /// [`Handoff::refund`] what each want reserved and its claim did not take.
    pub(crate) fn refund_wants(&self, wants: &[ClaimWant], claimed: &[ClaimedDelivery]) {
        let took = crate::count_per_subscription(claimed);
        for want in wants {
            let took = took.get(want.subscription.as_str()).copied().unwrap_or(0);
            self.refund(&want.subscription, want.limit.saturating_sub(took));
        }
    }

    /// Ends the transit of these deliveries' slots: sent first, so a
    /// dispatcher that no longer sees them in transit finds them arrived.
    fn settle<'a>(&self, subscriptions: impl Iterator<Item = &'a str>) {
        let mut state = self.state();
        for subscription in subscriptions {
            // Kept at zero: the next take of it allocates nothing.
            if let Some(count) = state.in_transit.get_mut(subscription) {
                *count = count.saturating_sub(1);
            }
        }
    }
}

/// The deliveries one write takes into flight, handed over when it commits
/// and given up when it does not (dropped unsent, their slots are released:
/// the rows were rolled back, so no delivery is lost).
pub(crate) struct Taken<'a> {
    handoff: Option<&'a Handoff>,
    /// The subscription of every slot taken, whether or not its delivery
    /// was kept (a write that failed in between keeps none).
    slots: Vec<String>,
    claimed: Vec<ClaimedDelivery>,
}

/// A point to give up back to: slots and deliveries taken before it stay.
#[derive(Clone, Copy)]
pub(crate) struct Mark {
    slots: usize,
    claimed: usize,
}

impl Mark {
    /// Before anything was taken.
    pub(crate) const START: Mark = Mark {
        slots: 0,
        claimed: 0,
    };
}

impl<'a> Taken<'a> {
    /// `None`: nothing is ever taken (a publish inside another write).
    pub(crate) fn new(handoff: Option<&'a Handoff>) -> Taken<'a> {
        Taken {
            handoff,
            slots: Vec::new(),
            claimed: Vec::new(),
        }
    }

    /// The lease under which a new delivery of `subscription` goes straight
    /// into flight, if a slot is offered; `accepts` is asked only then
    /// (whether the store lets the subscription's pushes go: not paused,
    /// not disabled). The caller writes the delivery and [`Taken::keep`]s it.
    pub(crate) fn lease_for(
        &mut self,
        subscription: &str,
        accepts: impl FnOnce() -> crate::Result<bool>,
        now: Timestamp,
    ) -> crate::Result<Option<Timestamp>> {
        let Some(handoff) = self.handoff else {
            return Ok(None);
        };
        let Some(lease) = handoff.take(subscription) else {
            return Ok(None);
        };
        self.slots.push(subscription.to_owned());
        let until = accepts()?.then(|| now.checked_add(lease).ok()).flatten();
        if until.is_none() {
            self.slots.pop();
            handoff.settle(std::iter::once(subscription));
        }
        Ok(until)
    }

    /// Keeps a delivery written under a lease from `lease_for`, to hand
    /// over at the commit.
    pub(crate) fn keep(&mut self, claimed: ClaimedDelivery) {
        self.claimed.push(claimed);
    }

    pub(crate) fn mark(&self) -> Mark {
        Mark {
            slots: self.slots.len(),
            claimed: self.claimed.len(),
        }
    }

    /// Gives up what was taken since `mark` (its writes were rolled back).
    pub(crate) fn give_up_since(&mut self, mark: Mark) {
        self.claimed.truncate(mark.claimed);
        let dropped = self.slots.split_off(mark.slots.min(self.slots.len()));
        if let Some(handoff) = self.handoff {
            handoff.settle(dropped.iter().map(String::as_str));
        }
    }

    /// Gives up the kept deliveries `keep` refuses (their rows were not
    /// written: the event turned out a duplicate).
    pub(crate) fn retain(&mut self, keep: impl Fn(&ClaimedDelivery) -> bool) {
        let Some(handoff) = self.handoff else { return };
        let mut dropped = Vec::new();
        self.claimed.retain(|claimed| {
            let kept = keep(claimed);
            if !kept {
                dropped.push(claimed.delivery.subscription.clone());
            }
            kept
        });
        for name in &dropped {
            if let Some(at) = self.slots.iter().position(|slot| slot == name) {
                self.slots.swap_remove(at);
            }
        }
        handoff.settle(dropped.iter().map(String::as_str));
    }

    /// Hands the kept deliveries over: their writes committed.
    pub(crate) fn hand_over(mut self) {
        let Some(handoff) = self.handoff else { return };
        let claimed = std::mem::take(&mut self.claimed);
        if !claimed.is_empty() {
            // No receiver: the dispatcher stopped; the leases run out (or
            // the next start rescues them) and the deliveries are due again.
            let _ = handoff.sender.send(claimed);
        }
        let slots = std::mem::take(&mut self.slots);
        handoff.settle(slots.iter().map(String::as_str));
    }
}

impl Drop for Taken<'_> {
    fn drop(&mut self) {
        self.give_up_since(Mark::START);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer(slots: &[(&str, u32)], total: u32) -> Offer {
        Offer {
            slots: slots.iter().map(|(s, n)| (s.to_string(), *n)).collect(),
            total,
            lease: Duration::from_secs(60),
        }
    }

    #[test]
    fn takes_no_more_than_offered_per_subscription_and_in_all() {
        let handoff = Handoff::new();
        handoff.offer(offer(&[("a", 2), ("b", 5)], 3));
        assert!(handoff.take("a").is_some());
        assert!(handoff.take("a").is_some());
        assert!(handoff.take("a").is_none(), "a's two slots are taken");
        assert!(handoff.take("b").is_some());
        assert!(handoff.take("b").is_none(), "three in all");
        assert!(handoff.take("c").is_none(), "c was not offered");
        assert_eq!(
            handoff.withdraw(),
            HashMap::from([("a".to_string(), 2), ("b".to_string(), 1)])
        );
        assert!(handoff.take("b").is_none(), "withdrawn");
    }

    #[test]
    fn a_rolled_back_take_leaves_transit_and_a_refusal_takes_nothing() {
        let handoff = Handoff::new();
        handoff.offer(offer(&[("a", 5)], 5));
        let now = Timestamp::UNIX_EPOCH;
        {
            let mut taken = Taken::new(Some(&handoff));
            assert!(taken.lease_for("a", || Ok(true), now).unwrap().is_some());
            assert_eq!(handoff.withdraw().get("a"), Some(&1));
            handoff.offer(offer(&[("a", 5)], 5));
            assert!(taken.lease_for("a", || Ok(false), now).unwrap().is_none());
            assert_eq!(
                handoff.withdraw().get("a"),
                Some(&1),
                "a refusal is not in transit"
            );
            // Dropped without a commit: nothing stays in transit.
        }
        assert!(handoff.withdraw().is_empty());
    }
}
