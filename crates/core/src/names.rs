//! Names of topics and subscriptions: `[A-Za-z0-9._-]`, 1 to 255 characters.

/// Longest topic or subscription name.
pub const MAX_NAME_LEN: usize = 255;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind} name {name:?}: {reason}")]
pub struct NameError {
    pub kind: &'static str,
    pub name: String,
    pub reason: &'static str,
}

/// `kind` is `"topic"` or `"subscription"`, used in the message.
///
/// `.` and `..` are refused although their characters are allowed: names sit
/// in URL paths (`/topics/{name}`), where clients collapse those segments.
pub fn validate_name(kind: &'static str, name: &str) -> Result<(), NameError> {
    let reason = if name.is_empty() {
        "must not be empty"
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        "may contain only letters, digits, '.', '_' and '-'"
    } else if name.len() > MAX_NAME_LEN {
        "must be at most 255 characters"
    } else if name == "." || name == ".." {
        "must not be '.' or '..'"
    } else {
        return Ok(());
    };
    Err(NameError {
        kind,
        name: name.to_owned(),
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(name: &str) -> &'static str {
        validate_name("topic", name).unwrap_err().reason
    }

    #[test]
    fn ordinary_names_are_accepted() {
        for name in [
            "orders",
            "Orders.v2",
            "a",
            "team_a-orders.eu-1",
            "0",
            "...",
            ".hidden",
        ] {
            assert_eq!(validate_name("topic", name), Ok(()), "{name}");
        }
    }

    #[test]
    fn empty_name_is_rejected() {
        assert_eq!(reason(""), "must not be empty");
    }

    #[test]
    fn name_of_255_characters_is_accepted_256_rejected() {
        assert_eq!(validate_name("topic", &"a".repeat(255)), Ok(()));
        assert_eq!(reason(&"a".repeat(256)), "must be at most 255 characters");
    }

    #[test]
    fn name_with_other_characters_is_rejected() {
        for name in ["a b", "a/b", "a:b", "é", "a*", "a\n", "a%20"] {
            assert_eq!(
                reason(name),
                "may contain only letters, digits, '.', '_' and '-'",
                "{name:?}"
            );
        }
    }

    #[test]
    fn dot_segments_are_rejected() {
        assert_eq!(reason("."), "must not be '.' or '..'");
        assert_eq!(reason(".."), "must not be '.' or '..'");
    }

    #[test]
    fn error_names_kind_and_name() {
        let error = validate_name("subscription", "a b").unwrap_err();
        assert_eq!(error.kind, "subscription");
        assert_eq!(error.name, "a b");
        assert_eq!(
            error.to_string(),
            "invalid subscription name \"a b\": may contain only letters, digits, '.', '_' and '-'"
        );
    }
}
