//! The secrets a push is signed with, read before it starts. An unsigned
//! push would be refused by careful receivers and accepted by careless
//! ones: neither is right, so a node that cannot read a subscription's
//! secrets sends nothing. It hands the claim back whole — no attempt spent,
//! due as before — for a node that can sign to take, and pauses the
//! subscription on this node (`flow`), saying why once per pause.

use std::time::Duration;

use jiff::Timestamp;
use redrive_store::StoreError;

use super::flow::SECRET_UNREADABLE_PAUSE;
use crate::security::Security;
use crate::security::secrets::Keys;

/// The pause after the store failed to hand over a secret: it is likely
/// failing the claims too, which report themselves; a short pause only
/// keeps claims from going round in a loop meanwhile.
const STORE_TROUBLE_PAUSE: Duration = Duration::from_secs(1);

/// Why a push could not be signed.
#[derive(Debug)]
pub(super) struct Unsigned {
    /// The error with its causes.
    pub error: String,
    /// The store did not answer; else the secret did not open with this
    /// node's key (or is damaged).
    pub store_trouble: bool,
}

impl Unsigned {
    /// How long this node leaves the subscription alone.
    pub fn pause(&self) -> Duration {
        if self.store_trouble {
            STORE_TROUBLE_PAUSE
        } else {
            SECRET_UNREADABLE_PAUSE
        }
    }

    /// Says so once, as a pause of `subscription` starts.
    pub fn log(&self, subscription: &str) {
        let pause_seconds = self.pause().as_secs_f64();
        if self.store_trouble {
            tracing::warn!(%subscription, error = %self.error, pause_seconds,
                "cannot read the subscription's signing secret from the store; nothing is sent \
                 and no attempt spent, the claims are handed back");
        } else {
            tracing::error!(%subscription, error = %self.error, pause_seconds,
                "cannot read the subscription's signing secret: this node's secret key is not \
                 the one it was stored with (start every node with the same --secret-key / \
                 REDRIVE_SECRET_KEY); nothing is sent and no attempt spent, its deliveries are \
                 left to nodes that can sign them and this node looks again after the pause");
        }
    }
}

/// The subscription's signing secrets; `None` when this dispatcher signs
/// nothing (it was set up without security).
pub(super) async fn keys(
    security: Option<&Security>,
    subscription: &str,
    now: Timestamp,
) -> Result<Option<Keys>, Unsigned> {
    let Some(security) = security else {
        return Ok(None);
    };
    security
        .secrets
        .keys(subscription, now)
        .await
        .map(Some)
        .map_err(|err| Unsigned {
            store_trouble: err.downcast_ref::<StoreError>().is_some(),
            error: format!("{err:#}"),
        })
}
