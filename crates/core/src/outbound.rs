//! What an endpoint receives: every header and the body of one push, in
//! the subscription's payload format and headers profile, signed. Pure, so
//! the exact bytes are tested here; the server only sends them.

use jiff::Timestamp;

use crate::dialect::{
    HeadersProfile, PayloadFormat, PushContext, appengine_headers, pubsub_push_body,
};
use crate::event::media_type::STRUCTURED;
use crate::event::{CloudEvent, binary_headers, structured_body};
use crate::security::SigningSecret;

/// One push of an event, as the dispatcher knows it when it starts.
#[derive(Clone, Copy, Debug)]
pub struct Push<'a> {
    pub event: &'a CloudEvent,
    pub payload_format: PayloadFormat,
    pub headers_profile: HeadersProfile,
    /// The delivery, its attempt number and its times.
    pub context: PushContext<'a>,
    /// When the attempt starts: `webhook-timestamp`, and what the
    /// signature covers.
    pub started_at: Timestamp,
    /// The secrets that sign it, newest first; none sends it unsigned.
    pub secrets: &'a [SigningSecret],
}

/// The request an endpoint receives (its method is POST, its URL the
/// subscription's endpoint).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutboundRequest {
    /// In the order they are sent.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// The request of `push`: the CloudEvents HTTP binding (binary or
/// structured mode) or Pub/Sub's push body, Standard Webhooks headers
/// (`webhook-id` is the delivery's id, the same on every retry; a
/// `webhook-signature` over the exact body when there are secrets), the
/// attempt number, and App Engine's task headers when that profile is
/// chosen.
pub fn request(push: &Push<'_>) -> OutboundRequest {
    let event = push.event;
    let context = &push.context;
    // Built before the headers: the signature covers the exact bytes sent.
    let (body, content_type) = match push.payload_format {
        PayloadFormat::CloudeventsBinary => (event.data.clone().unwrap_or_default(), None),
        PayloadFormat::CloudeventsStructured => (structured_body(event), Some(STRUCTURED)),
        PayloadFormat::PubsubPush => (
            pubsub_push_body(event, context),
            Some(crate::event::JSON_CONTENT_TYPE),
        ),
    };
    let timestamp = push.started_at.as_second();
    let mut headers = vec![
        ("webhook-id".to_owned(), context.delivery_id.to_owned()),
        ("webhook-timestamp".to_owned(), timestamp.to_string()),
        ("redrive-attempt".to_owned(), context.attempt.to_string()),
    ];
    if !push.secrets.is_empty() {
        let signature = crate::security::sign(push.secrets, context.delivery_id, timestamp, &body);
        headers.push(("webhook-signature".to_owned(), signature));
    }
    match content_type {
        Some(content_type) => headers.push(("content-type".to_owned(), content_type.to_owned())),
        None => headers.extend(binary_headers(event)),
    }
    if push.headers_profile == HeadersProfile::Appengine {
        headers.extend(appengine_headers(context));
    }
    OutboundRequest { headers, body }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;

    use super::*;
    use crate::security::verify;

    const DATA: &[u8] = br#"{"total": 12.50, "items":[1]}"#;
    /// `webhook-timestamp` of the pushes below (2024-05-01T12:00:01Z).
    const STARTED: i64 = 1_714_564_801;

    fn event() -> CloudEvent {
        CloudEvent {
            id: "e-1".into(),
            source: "/shop".into(),
            ty: "order.created".into(),
            specversion: "1.0".into(),
            subject: Some("order 7".into()),
            time: Some("2024-05-01T11:59:58Z".into()),
            datacontenttype: Some("application/json".into()),
            dataschema: None,
            extensions: BTreeMap::from([
                ("tenant".to_owned(), json!("acme")),
                ("priority".to_owned(), json!(3)),
            ]),
            data: Some(DATA.to_vec()),
        }
    }

    fn context() -> PushContext<'static> {
        PushContext {
            subscription: "orders",
            delivery_id: "d-1",
            attempt: 2,
            due_at: "2024-05-01T12:00:00.25Z".parse().unwrap(),
            published_at: "2024-05-01T11:59:59Z".parse().unwrap(),
        }
    }

    fn push<'a>(
        event: &'a CloudEvent,
        payload_format: PayloadFormat,
        headers_profile: HeadersProfile,
        secrets: &'a [SigningSecret],
    ) -> OutboundRequest {
        request(&Push {
            event,
            payload_format,
            headers_profile,
            context: context(),
            started_at: Timestamp::from_second(STARTED).unwrap(),
            secrets,
        })
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect()
    }

    /// What every push starts with, the signature aside.
    const WEBHOOK: [(&str, &str); 3] = [
        ("webhook-id", "d-1"),
        ("webhook-timestamp", "1714564801"),
        ("redrive-attempt", "2"),
    ];

    /// App Engine's task headers of attempt 2 (one earlier attempt).
    const APPENGINE: [(&str, &str); 5] = [
        ("X-AppEngine-QueueName", "orders"),
        ("X-AppEngine-TaskName", "d-1"),
        ("X-AppEngine-TaskRetryCount", "1"),
        ("X-AppEngine-TaskExecutionCount", "1"),
        ("X-AppEngine-TaskETA", "1714564800.250000"),
    ];

    /// A payload format, its body and the headers that describe it.
    type Format = (PayloadFormat, Vec<u8>, Vec<(String, String)>);

    /// Each payload format's body and the headers that describe it.
    fn formats() -> Vec<Format> {
        vec![
            (
                PayloadFormat::CloudeventsBinary,
                DATA.to_vec(),
                pairs(&[
                    ("ce-id", "e-1"),
                    ("ce-source", "/shop"),
                    ("ce-type", "order.created"),
                    ("ce-specversion", "1.0"),
                    ("ce-time", "2024-05-01T11:59:58Z"),
                    ("ce-subject", "order%207"),
                    ("ce-priority", "3"),
                    ("ce-tenant", "acme"),
                    ("content-type", "application/json"),
                ]),
            ),
            (
                PayloadFormat::CloudeventsStructured,
                concat!(
                    r#"{"datacontenttype":"application/json","id":"e-1","priority":3,"#,
                    r#""source":"/shop","specversion":"1.0","subject":"order 7","#,
                    r#""tenant":"acme","time":"2024-05-01T11:59:58Z","type":"order.created","#,
                    r#""data":{"total": 12.50, "items":[1]}}"#
                )
                .as_bytes()
                .to_vec(),
                pairs(&[("content-type", "application/cloudevents+json")]),
            ),
            (
                PayloadFormat::PubsubPush,
                concat!(
                    r#"{"deliveryAttempt":2,"message":{"attributes":{"#,
                    r#""ce-datacontenttype":"application/json","ce-id":"e-1","#,
                    r#""ce-source":"/shop","ce-specversion":"1.0","ce-subject":"order 7","#,
                    r#""ce-time":"2024-05-01T11:59:58Z","ce-type":"order.created","#,
                    r#""priority":"3","tenant":"acme"},"#,
                    r#""data":"eyJ0b3RhbCI6IDEyLjUwLCAiaXRlbXMiOlsxXX0=","#,
                    r#""messageId":"e-1","message_id":"e-1","#,
                    r#""publishTime":"2024-05-01T11:59:59Z","publish_time":"2024-05-01T11:59:59Z"},"#,
                    r#""subscription":"projects/redrive/subscriptions/orders"}"#
                )
                .as_bytes()
                .to_vec(),
                pairs(&[("content-type", "application/json")]),
            ),
        ]
    }

    #[test]
    fn every_payload_format_and_headers_profile_sends_these_exact_bytes() {
        let event = event();
        for (format, body, described) in formats() {
            for profile in [HeadersProfile::Standard, HeadersProfile::Appengine] {
                let sent = push(&event, format, profile, &[]);
                let mut headers = pairs(&WEBHOOK);
                headers.extend(described.clone());
                if profile == HeadersProfile::Appengine {
                    headers.extend(pairs(&APPENGINE));
                }
                assert_eq!(
                    String::from_utf8_lossy(&sent.body),
                    String::from_utf8_lossy(&body),
                    "{format:?} {profile:?}"
                );
                assert_eq!(sent.body, body, "{format:?} {profile:?}");
                assert_eq!(sent.headers, headers, "{format:?} {profile:?}");
            }
        }
    }

    #[test]
    fn a_signed_push_carries_the_signature_of_its_exact_body_after_the_webhook_headers() {
        let event = event();
        let secret: SigningSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".parse().unwrap();
        for (format, body, described) in formats() {
            for profile in [HeadersProfile::Standard, HeadersProfile::Appengine] {
                let sent = push(&event, format, profile, std::slice::from_ref(&secret));
                let (name, signature) = &sent.headers[3];
                assert_eq!(name, "webhook-signature");
                assert!(
                    verify(&secret, signature, "d-1", STARTED, &body),
                    "{format:?}"
                );
                let mut unsigned = sent.headers.clone();
                unsigned.remove(3);
                let mut expected = pairs(&WEBHOOK);
                expected.extend(described.clone());
                if profile == HeadersProfile::Appengine {
                    expected.extend(pairs(&APPENGINE));
                }
                assert_eq!(unsigned, expected, "{format:?} {profile:?}");
                assert_eq!(sent.body, body);
            }
        }
    }

    /// Standard Webhooks' own test vector, during a rotation: the new
    /// secret's signature first, then the replaced one's, which is the
    /// vector's.
    #[test]
    fn during_a_rotation_both_secrets_sign_newest_first() {
        let replaced: SigningSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".parse().unwrap();
        let newest: SigningSecret = "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
            .parse()
            .unwrap();
        let event = CloudEvent {
            datacontenttype: None,
            extensions: BTreeMap::new(),
            subject: None,
            time: None,
            data: Some(br#"{"test": 2432232314}"#.to_vec()),
            ..self::event()
        };
        let sent = request(&Push {
            event: &event,
            payload_format: PayloadFormat::CloudeventsBinary,
            headers_profile: HeadersProfile::Standard,
            context: PushContext {
                delivery_id: "msg_p5jXN8AQM9LWM0D4loKWxJek",
                ..context()
            },
            started_at: Timestamp::from_second(1_614_265_330).unwrap(),
            secrets: &[newest.clone(), replaced.clone()],
        });
        assert_eq!(sent.body, br#"{"test": 2432232314}"#);
        let (name, signature) = &sent.headers[3];
        assert_eq!(name, "webhook-signature");
        let (first, second) = signature.split_once(' ').expect("two signatures");
        assert_eq!(second, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        let id = "msg_p5jXN8AQM9LWM0D4loKWxJek";
        assert!(verify(&newest, first, id, 1_614_265_330, &sent.body));
        assert!(!verify(&replaced, first, id, 1_614_265_330, &sent.body));
        assert_eq!(
            sent.headers,
            pairs(&[
                ("webhook-id", id),
                ("webhook-timestamp", "1614265330"),
                ("redrive-attempt", "2"),
                ("webhook-signature", signature),
                ("ce-id", "e-1"),
                ("ce-source", "/shop"),
                ("ce-type", "order.created"),
                ("ce-specversion", "1.0"),
                ("content-type", "application/json"),
            ])
        );
    }
}
