//! Names of topics and subscriptions: `[A-Za-z0-9._-]`, 1 to 255 characters.

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind} name {name:?}: {reason}")]
pub struct NameError {
    pub kind: &'static str,
    pub name: String,
    pub reason: &'static str,
}

/// `kind` is `"topic"` or `"subscription"`, used in the message.
pub fn validate_name(kind: &'static str, name: &str) -> Result<(), NameError> {
    let _ = (kind, name);
    todo!()
}
