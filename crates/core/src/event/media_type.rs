//! Media types as CloudEvents uses them: which content types are JSON or
//! text, which carry events (the API reads a publish by them), and the
//! rule for `datacontenttype`.

use super::excerpt;

/// An event in the JSON format.
pub const STRUCTURED: &str = "application/cloudevents+json";
/// A batch of events in the JSON format.
pub const BATCH: &str = "application/cloudevents-batch+json";

/// What a request's `content-type` says it carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Carried {
    /// One event in the JSON format.
    Structured,
    /// A batch of events in the JSON format.
    Batch,
    /// Anything else: binary mode when `ce-*` headers come with it.
    Other,
}

/// What `content_type` carries, parameters and case ignored.
///
/// ```
/// use redrive_core::event::media_type::{Carried, carried};
/// assert_eq!(carried("Application/CloudEvents+JSON; charset=utf-8"), Carried::Structured);
/// assert_eq!(carried("application/cloudevents-batch+json"), Carried::Batch);
/// assert_eq!(carried("application/json"), Carried::Other);
/// ```
pub fn carried(content_type: &str) -> Carried {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match essence.as_str() {
        STRUCTURED => Carried::Structured,
        BATCH => Carried::Batch,
        _ => Carried::Other,
    }
}

/// Whether a `datacontenttype` declares JSON: a media type of the form
/// `*/json` or `*/*+json`, parameters and case ignored. An absent content
/// type counts as JSON, as the JSON format prescribes.
pub fn is_json_content_type(ct: Option<&str>) -> bool {
    let Some(ct) = ct else { return true };
    match split_media_type(ct) {
        Some((_, subtype, _)) => subtype == "json" || subtype.ends_with("+json"),
        None => false,
    }
}

/// Whether a content type is text that can travel as a JSON string without
/// changing its bytes: `text/*`, XML, YAML and a few textual application
/// types, in UTF-8 (or with no charset said).
pub(crate) fn is_text_content_type(ct: Option<&str>) -> bool {
    let Some((ty, subtype, params)) = ct.and_then(split_media_type) else {
        return false;
    };
    let textual = ty == "text"
        || subtype == "xml"
        || subtype.ends_with("+xml")
        || subtype == "yaml"
        || subtype == "x-yaml"
        || subtype.ends_with("+yaml")
        || (ty == "application"
            && matches!(
                subtype.as_str(),
                "javascript" | "ecmascript" | "x-www-form-urlencoded" | "toml"
            ));
    // Another charset would make the JSON string's code points differ from
    // the payload's bytes.
    let utf8 = params.split(';').all(|param| match param.split_once('=') {
        Some((name, value)) if name.trim().eq_ignore_ascii_case("charset") => {
            let value = value.trim().trim_matches('"');
            ["utf-8", "utf8", "us-ascii"]
                .iter()
                .any(|ok| value.eq_ignore_ascii_case(ok))
        }
        _ => true,
    });
    textual && utf8
}

/// `(type, subtype, parameters)` of a media type, type and subtype
/// lower-cased; `None` when it is not `type/subtype`.
pub(crate) fn split_media_type(ct: &str) -> Option<(String, String, &str)> {
    let (essence, params) = ct.split_once(';').unwrap_or((ct, ""));
    let (ty, subtype) = essence.trim().split_once('/')?;
    let (ty, subtype) = (ty.trim(), subtype.trim());
    let is_token =
        |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_graphic() && !is_separator(b));
    if !is_token(ty) || !is_token(subtype) {
        return None;
    }
    Some((
        ty.to_ascii_lowercase(),
        subtype.to_ascii_lowercase(),
        params,
    ))
}

/// The separators a token leaves out (RFC 9110), one bit per ASCII byte:
/// searching a list of them is a `memchr` call, for each byte of each
/// event published and pushed.
const SEPARATORS: u128 = {
    let list = b"()<>@,;:\\\"/[]?=";
    let mut bits = 0u128;
    let mut i = 0;
    while i < list.len() {
        bits |= 1 << list[i];
        i += 1;
    }
    bits
};

fn is_separator(b: u8) -> bool {
    b < 128 && SEPARATORS & (1 << b) != 0
}

/// `datacontenttype` becomes a `content-type` header, so it must be one.
pub(crate) fn check_media_type(value: &str) -> Result<(), String> {
    let printable = value
        .bytes()
        .all(|b| b == b'\t' || (b' '..=b'~').contains(&b));
    if printable && split_media_type(value).is_some() {
        Ok(())
    } else {
        Err(format!(
            "must be a media type such as application/json, not {:?}",
            excerpt(value)
        ))
    }
}
