//! Which events a subscription receives: exact match on `type`, `source`,
//! `subject`; a trailing `*` makes a prefix match.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::event::CloudEvent;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Filter {
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub ty: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
}

impl Filter {
    /// Every given pattern must match; an empty filter matches everything.
    pub fn matches(&self, event: &CloudEvent) -> bool {
        let _ = event;
        todo!()
    }
}
