//! The console's URLs, built in one place with their parts encoded.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

/// The filters of a subscription's list, as typed (they round-trip into
/// the form and the links).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filters {
    pub state: String,
    pub reason: String,
    pub event_type: String,
    pub status: String,
    pub since: String,
    pub until: String,
}

impl Filters {
    pub fn pairs(&self) -> Vec<(&'static str, &str)> {
        [
            ("state", self.state.as_str()),
            ("reason", self.reason.as_str()),
            ("type", self.event_type.as_str()),
            ("status", self.status.as_str()),
            ("since", self.since.as_str()),
            ("until", self.until.as_str()),
        ]
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .collect()
    }

    pub fn is_empty(&self) -> bool {
        self.pairs().is_empty()
    }
}

/// Everything but unreserved characters is encoded, in paths and queries.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

fn encode(text: &str) -> String {
    utf8_percent_encode(text, COMPONENT).to_string()
}

fn query(pairs: &[(&str, &str)]) -> String {
    if pairs.is_empty() {
        return String::new();
    }
    let joined: Vec<String> = pairs
        .iter()
        .map(|(key, value)| format!("{key}={}", encode(value)))
        .collect();
    format!("?{}", joined.join("&"))
}

pub fn subscription(name: &str) -> String {
    format!("/console/subscriptions/{}", encode(name))
}

pub fn subscription_filtered(name: &str, filters: &Filters, cursor: Option<&str>) -> String {
    let mut pairs = filters.pairs();
    if let Some(cursor) = cursor {
        pairs.push(("cursor", cursor));
    }
    format!("{}{}", subscription(name), query(&pairs))
}

/// The refreshable rows of a subscription's first page under `filters`.
pub fn rows(name: &str, filters: &Filters) -> String {
    format!("{}/rows{}", subscription(name), query(&filters.pairs()))
}

/// Where the redrive button leads: the list, saying how many moved.
pub fn redriven(name: &str, total: u64) -> String {
    format!("{}?redriven={total}", subscription(name))
}

pub fn redrive(name: &str) -> String {
    format!("{}/redrive", subscription(name))
}

/// Where a subscription's pause, resume and enable buttons post.
pub fn subscription_action(name: &str, action: &str) -> String {
    format!("{}/{action}", subscription(name))
}

pub fn delivery(id: &str) -> String {
    format!("/console/deliveries/{}", encode(id))
}

/// The refreshable state and attempts of a delivery.
pub fn live(id: &str) -> String {
    format!("{}/live", delivery(id))
}

pub fn retry(id: &str) -> String {
    format!("{}/retry", delivery(id))
}

pub fn policy_of(subscription: &str) -> String {
    format!(
        "/console/policy{}",
        query(&[("subscription", subscription)])
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_filters_are_encoded() {
        assert_eq!(subscription("a.b_c-d"), "/console/subscriptions/a.b_c-d");
        let filters = Filters {
            event_type: "order created&x=<1>".into(),
            status: "503".into(),
            ..Filters::default()
        };
        assert_eq!(
            subscription_filtered("s", &filters, Some("12~ab")),
            "/console/subscriptions/s?type=order%20created%26x%3D%3C1%3E&status=503&cursor=12~ab"
        );
        assert_eq!(
            rows("s", &Filters::default()),
            "/console/subscriptions/s/rows"
        );
    }
}
