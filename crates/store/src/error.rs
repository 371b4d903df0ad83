/// What can go wrong in a store, in terms the API maps to HTTP statuses once.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("{kind} {name:?} not found")]
    NotFound { kind: &'static str, name: String },
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Invalid(String),
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("store error: {0}")]
    Backend(String),
}

impl StoreError {
    pub fn not_found(kind: &'static str, name: impl Into<String>) -> Self {
        StoreError::NotFound {
            kind,
            name: name.into(),
        }
    }
}

impl StoreError {
    /// Whether the store may well work again without anyone changing the
    /// request: a full disk, an I/O error, a lost connection. Callers answer
    /// 503 and retry; anything else is final for the request.
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(err: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode;
        match err.sqlite_error_code() {
            // The disk is full, the file cannot be written or read back, or
            // the filesystem went read-only: the data is intact and writes
            // work again once the operator frees space or fixes the disk.
            Some(
                ErrorCode::DiskFull
                | ErrorCode::SystemIoFailure
                | ErrorCode::ReadOnly
                | ErrorCode::CannotOpen,
            ) => StoreError::Unavailable(format!("the store cannot write: {err}")),
            _ => StoreError::Backend(err.to_string()),
        }
    }
}

impl From<serde_json::Error> for StoreError {
    fn from(err: serde_json::Error) -> Self {
        StoreError::Backend(format!("stored JSON is unreadable: {err}"))
    }
}
