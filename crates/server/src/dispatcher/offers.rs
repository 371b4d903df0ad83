//! The claim loop's side of claims at publish (`redrive_store::Handoff`):
//! which subscriptions' due queues its claims found empty, the slots it
//! offers publishes while it waits, and the deliveries publishes hand over.
//!
//! A subscription whose claim took fewer deliveries than it could had
//! nothing due (within the claim's lookahead): it is *quiet*, and its free
//! slots are offered to publishes, so that a new delivery of it needs no
//! claim. A quiet subscription stays so until a claim takes all it could of
//! it (more may be due): then the claims have its slots to themselves, and
//! due deliveries go in the order they fell due. Until something may have
//! fallen due again (a wake-up from the store, a timer, a change), claiming
//! a quiet subscription again would find nothing: the loop claims only the
//! subscriptions it knows nothing of. The offer stays open while the loop
//! claims (claims take from it too, see `Handoff::reserve`).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use redrive_store::{ClaimWant, ClaimedDelivery, Handoff, Offer, Store};
use tokio::sync::mpsc;

pub(super) struct Offers {
    /// `None` when the store's publishes never take deliveries into flight,
    /// or another dispatcher of this store takes what they hand over.
    handoff: Option<(Arc<Handoff>, mpsc::UnboundedReceiver<Vec<ClaimedDelivery>>)>,
    /// Quiet subscriptions, whose slots are offered.
    quiet: HashSet<String>,
    /// Quiet subscriptions with nothing due since their claim: not
    /// claimed until something may have fallen due.
    drained: HashSet<String>,
    /// Handed over while the loop waited, to start at its next round.
    arrived: Vec<ClaimedDelivery>,
}

/// What a withdrawn offer leaves: deliveries to start, and how many more
/// each subscription has on the way (count them in flight).
pub(super) struct Withdrawn {
    pub(super) arrived: Vec<ClaimedDelivery>,
    pub(super) in_transit: HashMap<String, u32>,
}

impl Offers {
    pub(super) fn new(store: &dyn Store) -> Offers {
        let handoff = store
            .handoff()
            .and_then(|handoff| handoff.receiver().map(|arrivals| (handoff, arrivals)));
        Offers {
            handoff,
            quiet: HashSet::new(),
            drained: HashSet::new(),
            arrived: Vec::new(),
        }
    }

    /// Closes the offer (the loop opens the next with its counts made
    /// current) and collects what was handed over.
    pub(super) fn withdraw(&mut self) -> Withdrawn {
        let Some((handoff, arrivals)) = self.handoff.as_mut() else {
            return Withdrawn {
                arrived: Vec::new(),
                in_transit: HashMap::new(),
            };
        };
        // Withdrawn first: what left transit before is in the channel now.
        let in_transit = handoff.withdraw();
        let mut arrived = std::mem::take(&mut self.arrived);
        while let Ok(claimed) = arrivals.try_recv() {
            arrived.extend(claimed);
        }
        Withdrawn {
            arrived,
            in_transit,
        }
    }

    /// Closes the offer, leaving what was handed over for the next
    /// [`Offers::withdraw`].
    pub(super) fn withdraw_offer(&self) {
        if let Some((handoff, _)) = self.handoff.as_ref() {
            handoff.close();
        }
    }

    /// Something may have fallen due: claim every subscription again (the
    /// quiet ones stay offered meanwhile).
    pub(super) fn forget(&mut self) {
        self.drained.clear();
    }

    /// What to claim, if a claim could find anything: every want, with no
    /// room for those whose queue is known to be empty (the store still
    /// says when each falls due next); `None` when only those have room.
    /// A quiet subscription is claimed for half its room: the claim
    /// reserves what it asks for while it runs (a round trip on a shared
    /// database), and publishes meanwhile take the other half instead of
    /// leaving their deliveries due for yet another claim. One that has
    /// more due than that takes all it asked, stops being quiet and is
    /// claimed whole next.
    pub(super) fn to_claim(&self, wants: &[ClaimWant]) -> Option<Vec<ClaimWant>> {
        let unknown =
            |want: &ClaimWant| want.limit > 0 && !self.drained.contains(&want.subscription);
        if !wants.iter().any(unknown) {
            return None;
        }
        Some(
            wants
                .iter()
                .map(|want| {
                    let limit = match (unknown(want), self.quiet.contains(&want.subscription)) {
                        (false, _) => 0,
                        (true, true) => want.limit.div_ceil(2),
                        (true, false) => want.limit,
                    };
                    ClaimWant {
                        limit,
                        ..want.clone()
                    }
                })
                .collect(),
        )
    }

    /// Notes what a claim of `asked` (at most `limit_total` in all) found,
    /// `took` of each subscription:
    /// the store serves the wants in order, each up to its limit and what
    /// the total has left, so one that took less had nothing more due.
    /// Except under a rate limit: a bucket shared with other nodes may have
    /// cut it short, so such a subscription is always claimed.
    pub(super) fn claimed(
        &mut self,
        asked: &[ClaimWant],
        limit_total: u32,
        took: &HashMap<&str, u32>,
    ) {
        let mut left = limit_total;
        for want in asked {
            let could = want.limit.min(left);
            let took = took.get(want.subscription.as_str()).copied().unwrap_or(0);
            left = left.saturating_sub(took);
            if could == 0 || want.rate.is_some() {
                continue;
            }
            if took < could {
                self.quiet.insert(want.subscription.clone());
                self.drained.insert(want.subscription.clone());
            } else {
                self.quiet.remove(&want.subscription);
            }
        }
    }

    /// Offers publishes the room of each quiet subscription that
    /// `may_offer`, `free` slots in all, until the next [`Offers::withdraw`].
    pub(super) fn open(
        &self,
        wants: &[ClaimWant],
        free: u32,
        lease: Duration,
        may_offer: impl Fn(&str) -> bool,
    ) {
        let Some((handoff, _)) = self.handoff.as_ref() else {
            return;
        };
        let slots: HashMap<String, u32> = wants
            .iter()
            .filter(|want| want.limit > 0 && self.quiet.contains(&want.subscription))
            .filter(|want| may_offer(&want.subscription))
            .map(|want| (want.subscription.clone(), want.limit))
            .collect();
        if !slots.is_empty() {
            handoff.offer(Offer {
                slots,
                total: free,
                lease,
            });
        }
    }

    /// The next deliveries a commit hands over; never, without a hand-off.
    pub(super) async fn arrival(&mut self) -> Option<Vec<ClaimedDelivery>> {
        match self.handoff.as_mut() {
            Some((_, arrivals)) => arrivals.recv().await,
            None => std::future::pending().await,
        }
    }

    /// Keeps deliveries that arrived while the loop waited.
    pub(super) fn arrived(&mut self, claimed: Vec<ClaimedDelivery>) {
        self.arrived.extend(claimed);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use redrive_store::{ClaimRate, ClaimWant};

    use super::*;

    fn want(subscription: &str, limit: u32) -> ClaimWant {
        ClaimWant {
            subscription: subscription.into(),
            limit,
            rate: None,
            lookahead: Duration::ZERO,
        }
    }

    fn took<'a>(counts: &[(&'a str, u32)]) -> HashMap<&'a str, u32> {
        counts.iter().copied().collect()
    }

    fn offers() -> Offers {
        Offers {
            handoff: None,
            quiet: HashSet::new(),
            drained: HashSet::new(),
            arrived: Vec::new(),
        }
    }

    fn limits(wants: &[ClaimWant]) -> Vec<(&str, u32)> {
        wants
            .iter()
            .map(|w| (w.subscription.as_str(), w.limit))
            .collect()
    }

    #[test]
    fn a_claim_that_took_less_than_it_could_makes_its_subscription_quiet() {
        let mut offers = offers();
        let rated = ClaimWant {
            rate: Some(ClaimRate {
                per_second: 1.0,
                burst: 1,
            }),
            ..want("rated", 4)
        };
        // The total (5) is spent in order: "a" takes 2 of 4, "b" 3 of 3,
        // "c" could take none, "rated" none either.
        let asked = [want("a", 4), want("b", 3), want("c", 4), rated];
        offers.claimed(&asked, 5, &took(&[("a", 2), ("b", 3)]));
        assert!(offers.quiet.contains("a") && offers.drained.contains("a"));
        assert!(!offers.quiet.contains("b"), "b took all it could");
        assert!(!offers.quiet.contains("c"), "c had no room left");
        assert!(
            !offers.quiet.contains("rated"),
            "a shared bucket may cut it"
        );

        // A quiet subscription that then takes all it could is not quiet.
        offers.forget();
        offers.claimed(&[want("a", 2)], 10, &took(&[("a", 2)]));
        assert!(!offers.quiet.contains("a"));
    }

    #[test]
    fn only_what_may_be_due_is_claimed_and_a_quiet_subscription_for_half_its_room() {
        let mut offers = offers();
        offers.claimed(&[want("a", 8), want("b", 8)], 100, &took(&[("b", 1)]));
        // Both quiet and drained: nothing to claim.
        assert!(offers.to_claim(&[want("a", 8), want("b", 8)]).is_none());
        // Something may have fallen due: quiet ones for half their room,
        // others whole, none without room.
        offers.forget();
        let wants = [want("a", 7), want("b", 8), want("c", 6), want("d", 0)];
        let to_claim = offers.to_claim(&wants).unwrap();
        assert_eq!(limits(&to_claim), [("a", 4), ("b", 4), ("c", 6), ("d", 0)]);
        // "a" drained again keeps its place with no room; "c" took all it
        // asked and is claimed whole.
        offers.claimed(&to_claim, 100, &took(&[("c", 6)]));
        let to_claim = offers.to_claim(&[want("a", 7), want("c", 6)]).unwrap();
        assert_eq!(limits(&to_claim), [("a", 0), ("c", 6)]);
    }
}
