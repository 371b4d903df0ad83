//! Request headers, however the HTTP stack holds them.

/// The request headers a receiver reads, names compared without case.
///
/// ```
/// use redrive_receiver::Headers;
///
/// let headers = Headers::from_pairs([("Webhook-Id", "msg_1"), ("ce-id", "e%201")]);
/// assert_eq!(headers.get("webhook-id"), Some(&b"msg_1"[..]));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers {
    /// Lower-cased names with their raw values, in arrival order.
    entries: Vec<(String, Vec<u8>)>,
}

impl Headers {
    pub fn new() -> Headers {
        Headers::default()
    }

    /// Headers from `(name, value)` pairs; values as text or bytes.
    pub fn from_pairs<N, V>(pairs: impl IntoIterator<Item = (N, V)>) -> Headers
    where
        N: AsRef<str>,
        V: AsRef<[u8]>,
    {
        let mut headers = Headers::new();
        for (name, value) in pairs {
            headers.insert(name.as_ref(), value.as_ref());
        }
        headers
    }

    /// Adds one header; a repeated name keeps every value.
    pub fn insert(&mut self, name: &str, value: &[u8]) {
        self.entries
            .push((name.to_ascii_lowercase(), value.to_vec()));
    }

    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.entries
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }

    /// The first value of `name` as text, if it is.
    pub fn get_str(&self, name: &str) -> Option<&str> {
        self.get(name).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// Every `(lower-cased name, value)`.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.entries.iter().map(|(n, v)| (n.as_str(), v.as_slice()))
    }
}

#[cfg(feature = "axum")]
impl From<&axum::http::HeaderMap> for Headers {
    fn from(map: &axum::http::HeaderMap) -> Headers {
        Headers::from_pairs(map.iter().map(|(n, v)| (n.as_str(), v.as_bytes())))
    }
}
