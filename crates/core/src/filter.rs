//! Which events a subscription receives: exact match on `type`, `source`,
//! `subject`; a trailing `*` makes a prefix match.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::event::{CloudEvent, MAX_ATTRIBUTE_LEN};

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
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
    ///
    /// A subject pattern never matches an event without a subject, so
    /// `subject: "*"` selects the events that have one.
    pub fn matches(&self, event: &CloudEvent) -> bool {
        let matches = |pattern: &Option<String>, value: Option<&str>| match (pattern, value) {
            (None, _) => true,
            (Some(pattern), Some(value)) => pattern_matches(pattern, value),
            (Some(_), None) => false,
        };
        matches(&self.ty, Some(&event.ty))
            && matches(&self.source, Some(&event.source))
            && matches(&self.subject, event.subject.as_deref())
    }

    /// Rejects patterns that could never match, so a subscription that would
    /// silently receive nothing is refused when it is created.
    pub fn validate(&self) -> Result<(), String> {
        for (field, pattern) in [
            ("type", &self.ty),
            ("source", &self.source),
            ("subject", &self.subject),
        ] {
            let Some(pattern) = pattern else { continue };
            if pattern.is_empty() {
                return Err(format!(
                    "filter {field} must not be empty: no event has an empty {field}; \
                     leave it out to match every event"
                ));
            }
            // The `*` may come on top of the longest attribute.
            if pattern.len() > MAX_ATTRIBUTE_LEN + 1 {
                return Err(format!(
                    "filter {field} must be at most {} bytes: no event attribute is longer",
                    MAX_ATTRIBUTE_LEN + 1
                ));
            }
        }
        Ok(())
    }
}

/// Only a trailing `*` is special: `a*b` is the literal text `a*b`.
fn pattern_matches(pattern: &str, value: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => value.starts_with(prefix),
        None => value == pattern,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn event(ty: &str, source: &str, subject: Option<&str>) -> CloudEvent {
        CloudEvent {
            id: "e-1".into(),
            source: source.into(),
            ty: ty.into(),
            specversion: "1.0".into(),
            subject: subject.map(str::to_owned),
            time: None,
            datacontenttype: None,
            dataschema: None,
            extensions: BTreeMap::new(),
            data: None,
        }
    }

    fn filter(ty: Option<&str>, source: Option<&str>, subject: Option<&str>) -> Filter {
        Filter {
            ty: ty.map(str::to_owned),
            source: source.map(str::to_owned),
            subject: subject.map(str::to_owned),
        }
    }

    #[test]
    fn empty_filter_matches_every_event() {
        assert!(Filter::default().matches(&event("a", "/s", None)));
        assert!(Filter::default().matches(&event("a", "/s", Some("x"))));
    }

    #[test]
    fn pattern_without_star_matches_exactly() {
        let f = filter(Some("order.created"), None, None);
        assert!(f.matches(&event("order.created", "/s", None)));
        assert!(!f.matches(&event("order.created.v2", "/s", None)));
        assert!(!f.matches(&event("order.create", "/s", None)));
        assert!(!f.matches(&event("Order.Created", "/s", None)));
    }

    #[test]
    fn trailing_star_matches_by_prefix() {
        let f = filter(Some("order.*"), None, None);
        assert!(f.matches(&event("order.created", "/s", None)));
        assert!(f.matches(&event("order.", "/s", None)));
        assert!(!f.matches(&event("order", "/s", None)));
        assert!(!f.matches(&event("invoice.created", "/s", None)));
    }

    #[test]
    fn inner_star_is_literal_text() {
        let f = filter(Some("order.*.created"), None, None);
        assert!(!f.matches(&event("order.x.created", "/s", None)));
        assert!(f.matches(&event("order.*.created", "/s", None)));
        let f = filter(Some("a**"), None, None);
        assert!(f.matches(&event("a*b", "/s", None)));
        assert!(!f.matches(&event("ab", "/s", None)));
    }

    #[test]
    fn lone_star_matches_any_value() {
        let f = filter(Some("*"), Some("*"), None);
        assert!(f.matches(&event("anything", "/any", None)));
    }

    #[test]
    fn every_given_pattern_must_match() {
        let f = filter(Some("order.*"), Some("/shop/eu"), Some("customer/*"));
        assert!(f.matches(&event("order.paid", "/shop/eu", Some("customer/7"))));
        assert!(!f.matches(&event("invoice.paid", "/shop/eu", Some("customer/7"))));
        assert!(!f.matches(&event("order.paid", "/shop/us", Some("customer/7"))));
        assert!(!f.matches(&event("order.paid", "/shop/eu", Some("vendor/7"))));
    }

    #[test]
    fn source_pattern_matches_source() {
        let f = filter(None, Some("https://example.com/*"), None);
        assert!(f.matches(&event("t", "https://example.com/orders", None)));
        assert!(!f.matches(&event("t", "https://example.org/orders", None)));
    }

    #[test]
    fn subject_pattern_fails_an_event_without_subject() {
        assert!(!filter(None, None, Some("x")).matches(&event("t", "/s", None)));
        assert!(!filter(None, None, Some("*")).matches(&event("t", "/s", None)));
        assert!(filter(None, None, Some("*")).matches(&event("t", "/s", Some("x"))));
    }

    #[test]
    fn validate_accepts_ordinary_patterns() {
        assert_eq!(Filter::default().validate(), Ok(()));
        assert_eq!(filter(Some("a.*"), Some("*"), Some("x")).validate(), Ok(()));
    }

    #[test]
    fn validate_rejects_empty_pattern_and_says_why() {
        let message = filter(None, None, Some("")).validate().unwrap_err();
        assert!(
            message.starts_with("filter subject must not be empty"),
            "{message}"
        );
        assert!(message.contains("leave it out"), "{message}");
        assert!(
            filter(Some(""), None, None)
                .validate()
                .unwrap_err()
                .contains("type")
        );
        assert!(
            filter(None, Some(""), None)
                .validate()
                .unwrap_err()
                .contains("source")
        );
    }

    #[test]
    fn validate_rejects_pattern_longer_than_any_attribute() {
        let longest = format!("{}*", "a".repeat(MAX_ATTRIBUTE_LEN));
        assert_eq!(filter(Some(&longest), None, None).validate(), Ok(()));
        let too_long = format!("{longest}*");
        assert!(filter(Some(&too_long), None, None).validate().is_err());
    }

    #[test]
    fn filter_serializes_type_as_type_and_omits_unset_patterns() {
        let f = filter(Some("a.*"), None, None);
        assert_eq!(serde_json::to_string(&f).unwrap(), r#"{"type":"a.*"}"#);
        let back: Filter = serde_json::from_str(r#"{"type":"a.*"}"#).unwrap();
        assert_eq!(back, f);
        assert_eq!(
            serde_json::from_str::<Filter>("{}").unwrap(),
            Filter::default()
        );
    }
}
