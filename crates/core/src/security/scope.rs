//! What a token may do. Three scopes cover the roles a delivery service
//! meets: operators (`admin`), dashboards and on-call readers (`read`), and
//! producers that may only publish to their own topic (`publish:TOPIC`).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::names::validate_name;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Everything, including tokens and signing secrets.
    Admin,
    /// The console and every GET route, except signing secrets.
    Read,
    /// Publishing to one topic, nothing else.
    Publish(String),
}

/// What one request needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Permission {
    Read,
    Publish { topic: String },
    Admin,
}

impl Scope {
    pub fn allows(&self, permission: &Permission) -> bool {
        match (self, permission) {
            (Scope::Admin, _) => true,
            (Scope::Read, Permission::Read) => true,
            (Scope::Publish(mine), Permission::Publish { topic }) => mine == topic,
            _ => false,
        }
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Permission::Read => f.write_str("read access"),
            Permission::Publish { topic } => write!(f, "permission to publish to topic {topic:?}"),
            Permission::Admin => f.write_str("the admin scope"),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid scope {input:?}: {reason}")]
pub struct ScopeError {
    pub input: String,
    pub reason: String,
}

impl FromStr for Scope {
    type Err = ScopeError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        match input {
            "admin" => Ok(Scope::Admin),
            "read" => Ok(Scope::Read),
            _ => match input.strip_prefix("publish:") {
                Some(topic) => validate_name("topic", topic)
                    .map(|()| Scope::Publish(topic.to_owned()))
                    .map_err(|err| ScopeError {
                        input: input.to_owned(),
                        reason: err.to_string(),
                    }),
                None => Err(ScopeError {
                    input: input.to_owned(),
                    reason: "use admin, read or publish:TOPIC".into(),
                }),
            },
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::Admin => f.write_str("admin"),
            Scope::Read => f.write_str("read"),
            Scope::Publish(topic) => write!(f, "publish:{topic}"),
        }
    }
}

impl Serialize for Scope {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Scope {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn publish(topic: &str) -> Permission {
        Permission::Publish {
            topic: topic.into(),
        }
    }

    #[test]
    fn admin_may_do_everything() {
        for permission in [Permission::Read, Permission::Admin, publish("orders")] {
            assert!(Scope::Admin.allows(&permission));
        }
    }

    #[test]
    fn read_may_only_read() {
        assert!(Scope::Read.allows(&Permission::Read));
        assert!(!Scope::Read.allows(&publish("orders")));
        assert!(!Scope::Read.allows(&Permission::Admin));
    }

    #[test]
    fn publish_may_only_publish_to_its_topic() {
        let scope: Scope = "publish:orders".parse().unwrap();
        assert!(scope.allows(&publish("orders")));
        assert!(!scope.allows(&publish("other")));
        assert!(!scope.allows(&Permission::Read));
        assert!(!scope.allows(&Permission::Admin));
    }

    #[test]
    fn scopes_parse_print_and_reject_nonsense() {
        for text in ["admin", "read", "publish:orders.v2"] {
            assert_eq!(text.parse::<Scope>().unwrap().to_string(), text);
        }
        for bad in [
            "",
            "Admin",
            "write",
            "publish:",
            "publish:a b",
            "publish:..",
        ] {
            assert!(bad.parse::<Scope>().is_err(), "{bad:?}");
        }
        let json = serde_json::to_string(&Scope::Publish("t".into())).unwrap();
        assert_eq!(json, "\"publish:t\"");
        assert!(serde_json::from_str::<Scope>("\"root\"").is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        #[test]
        fn scope_parser_never_panics_and_round_trips(input in "\\PC{0,40}") {
            if let Ok(scope) = input.parse::<Scope>() {
                prop_assert_eq!(scope.to_string(), input);
            }
        }
    }
}
