//! The console's templates with awkward data: markup in every field a
//! producer or an endpoint controls, huge payloads, binary payloads.

use std::collections::BTreeMap;

use jiff::Timestamp;
use redrive_core::duration::HumanDuration;
use redrive_core::hold::{HeldReason, PushesHeld};
use redrive_core::policy::Backoff;
use redrive_core::{
    Attempt, CloudEvent, Decision, Delivery, DeliveryState, ErrorClass, FailureReason, RetryPolicy,
};
use redrive_server::console::views::{self, PAYLOAD_HEX_LIMIT, PAYLOAD_TEXT_LIMIT};

const NASTY: &str = "<script>alert(\"x\")</script><img src=x onerror=alert(1)>";

fn at(second: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + second).expect("a valid time")
}

fn event(data: Option<Vec<u8>>, content_type: &str) -> CloudEvent {
    let mut extensions = BTreeMap::new();
    extensions.insert("tenant".to_owned(), serde_json::Value::String(NASTY.into()));
    CloudEvent {
        id: NASTY.into(),
        source: NASTY.into(),
        ty: NASTY.into(),
        specversion: "1.0".into(),
        subject: Some(NASTY.into()),
        time: None,
        datacontenttype: Some(content_type.into()),
        dataschema: None,
        extensions,
        data,
    }
}

fn delivery(state: DeliveryState, attempts: u32) -> Delivery {
    Delivery {
        id: "d-1".into(),
        subscription: "hooks".into(),
        event_id: NASTY.into(),
        event_source: NASTY.into(),
        event_type: NASTY.into(),
        state,
        attempts,
        next_attempt_at: None,
        first_attempt_at: Some(at(0)),
        last_attempt_at: Some(at(1)),
        last_status: Some(500),
        last_error: None,
        failure_reason: (state == DeliveryState::Failed).then_some(FailureReason::RetriesExhausted),
        dead_letter_event: None,
        attempts_before_redrive: 0,
        redriven_at: None,
        created_at: at(0),
        updated_at: at(1),
    }
}

fn attempt(number: u32, decision: Decision) -> Attempt {
    Attempt {
        number,
        kind: redrive_core::AttemptKind::Push,
        started_at: at(i64::from(number)),
        duration_ms: 12,
        status: Some(500),
        error: None,
        error_message: Some(NASTY.into()),
        response_snippet: Some(NASTY.into()),
        decision,
    }
}

/// No tag or attribute of the nasty string survived unescaped.
fn assert_escaped(html: &str) {
    assert!(
        !html.contains("<script>alert"),
        "raw script tag in:\n{html}"
    );
    assert!(!html.contains("<img src=x"), "raw img tag in:\n{html}");
    assert!(
        html.contains("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;"),
        "the text is shown escaped"
    );
}

#[test]
fn markup_in_events_attempts_and_payloads_is_escaped() {
    let event = event(Some(NASTY.as_bytes().to_vec()), "text/plain");
    let failed = delivery(DeliveryState::Failed, 2);
    let attempts = [
        attempt(
            1,
            Decision::Retry {
                at: at(2),
                retry: 1,
            },
        ),
        attempt(
            2,
            Decision::Failed {
                reason: FailureReason::RetriesExhausted,
            },
        ),
    ];
    let html = views::delivery(
        &failed,
        &event,
        &attempts,
        Some("tok<en>"),
        &Default::default(),
        &Default::default(),
    )
    .into_string();
    assert_escaped(&html);
    assert!(html.contains("retry 1 at"), "the retry decision is shown");
    assert!(html.contains("failed because the retry limit was reached"));
    assert!(html.contains("aria-label=\"failed\""));
    assert!(html.contains("aria-label=\"retried\""));
    assert!(
        html.contains("name=\"csrf_token\" value=\"tok&lt;en&gt;\""),
        "the retry form carries the CSRF token"
    );
}

#[test]
fn markup_in_list_rows_is_escaped() {
    let rows = views::DeliveryRows {
        subscription: "hooks".into(),
        deliveries: vec![delivery(DeliveryState::Failed, 3)],
        filters: redrive_server::console::links::Filters {
            event_type: NASTY.into(),
            ..Default::default()
        },
        next_cursor: Some(NASTY.into()),
        paged: false,
        csrf: Some("tok<en>".into()),
        waits: Default::default(),
    };
    let html = views::delivery_table(&rows).into_string();
    assert_escaped(&html);
    // The filter and the cursor end up percent-encoded in links.
    assert!(html.contains("type=%3Cscript%3E"), "{html}");
    assert!(html.contains("name=\"csrf_token\" value=\"tok&lt;en&gt;\""));
}

#[test]
fn json_payloads_are_pretty_printed_and_escaped() {
    let data = serde_json::to_vec(&serde_json::json!({"note": NASTY, "n": 1})).unwrap();
    let html = views::payload(Some(&data), Some("application/json")).into_string();
    assert!(
        !html.contains("<script>") && !html.contains("<img"),
        "{html}"
    );
    assert!(
        html.contains("&lt;script&gt;alert(\\&quot;x\\&quot;)"),
        "{html}"
    );
    assert!(html.contains("{\n  &quot;n&quot;: 1,"), "{html}");
}

#[test]
fn huge_payloads_are_truncated_with_a_note() {
    let huge = format!("{{\"blob\": \"{}\"}}", "é".repeat(1024 * 1024));
    let html = views::payload(Some(huge.as_bytes()), Some("application/json")).into_string();
    assert!(
        html.len() < PAYLOAD_TEXT_LIMIT + 2048,
        "rendered {} bytes",
        html.len()
    );
    assert!(
        html.contains("Truncated: showing the first"),
        "a note says so"
    );
}

#[test]
fn binary_payloads_are_shown_as_a_bounded_hex_dump() {
    let binary: Vec<u8> = (0..=255u8).cycle().take(10_000).collect();
    let html = views::payload(Some(&binary), Some("application/octet-stream")).into_string();
    assert!(html.contains("Binary data, 10000 bytes"), "{html}");
    assert!(html.contains("00000000  00 01 02 03"), "a hex dump");
    assert!(
        html.contains(&format!(
            "showing the first {PAYLOAD_HEX_LIMIT} of 10000 bytes"
        )),
        "cut with a note"
    );
    assert!(
        !html.chars().any(|c| c.is_control() && c != '\n'),
        "no raw control characters reach the page"
    );
    // `<` (0x3c) in the bytes shows as `&lt;` in the text column, not a tag.
    assert!(!html.contains("<=>"));
}

#[test]
fn a_missing_payload_says_so() {
    let html = views::payload(None, None).into_string();
    assert!(html.contains("This event has no data."));
}

#[test]
fn the_policy_preview_shows_the_same_numbers_as_policy_explain() {
    // README: `redrive policy explain --min-backoff 10s --max-backoff 300s
    // --max-doublings 3 --retry-limit 6`.
    let policy = RetryPolicy {
        backoff: Backoff::Exponential {
            min_backoff: HumanDuration::from_secs(10),
            max_backoff: HumanDuration::from_secs(300),
            max_doublings: 3,
        },
        retry_limit: Some(6),
        ..RetryPolicy::default()
    };
    let html = views::schedule_view(&policy.schedule(20)).into_string();
    let cells: Vec<&str> = html
        .split("<td>")
        .skip(1)
        .map(|cell| cell.split('<').next().unwrap_or(""))
        .collect();
    assert_eq!(
        cells,
        [
            "1", "10s", "10s", "2", "20s", "30s", "3", "40s", "1m 10s", "4", "1m 20s", "2m 30s",
            "5", "2m 40s", "5m 10s", "6", "4m", "9m 10s"
        ]
    );
    assert!(html.contains("no more retries: retry limit 6 reached"));
    assert!(html.contains("<svg"), "a chart");
}

#[test]
fn failures_without_a_status_show_their_error_class() {
    let mut d = delivery(DeliveryState::Scheduled, 1);
    d.last_status = None;
    d.last_error = Some(ErrorClass::Timeout);
    d.next_attempt_at = Some(at(60));
    let rows = views::DeliveryRows {
        subscription: "hooks".into(),
        deliveries: vec![d],
        filters: Default::default(),
        next_cursor: None,
        paged: false,
        csrf: Some("tok<en>".into()),
        waits: Default::default(),
    };
    let html = views::delivery_rows(&rows).into_string();
    assert!(html.contains("<td>timeout</td>"), "{html}");
    assert!(
        html.contains("aria-label=\"failed\""),
        "the latest attempt failed"
    );
    assert!(!html.contains("aria-label=\"retried\""), "one attempt only");

    let mut timed_out = attempt(
        1,
        Decision::Retry {
            at: at(60),
            retry: 1,
        },
    );
    timed_out.status = None;
    timed_out.error = Some(ErrorClass::Timeout);
    let html = views::timeline(&rows.deliveries[0], &[timed_out]).into_string();
    assert!(
        html.contains("error: timeout (no answer in time)"),
        "{html}"
    );
    assert!(
        html.contains("Next attempt scheduled at 2027-01-15 08:01:00 UTC."),
        "{html}"
    );
}

#[test]
fn a_cancel_shows_in_the_timeline_as_an_entry_of_its_own() {
    let mut d = delivery(DeliveryState::Failed, 1);
    d.failure_reason = Some(FailureReason::Cancelled);
    let tried = attempt(
        1,
        Decision::Retry {
            at: at(60),
            retry: 1,
        },
    );
    let mut cancel = attempt(
        1,
        Decision::Failed {
            reason: FailureReason::Cancelled,
        },
    );
    cancel.kind = redrive_core::AttemptKind::Cancel;
    cancel.started_at = at(30);
    let html = views::timeline(&d, &[tried, cancel]).into_string();
    assert_eq!(html.matches("data-attempt=").count(), 1, "{html}");
    assert!(html.contains("data-cancel=\"1\""), "{html}");
    assert!(html.contains("<strong>Cancelled</strong>"), "{html}");
    assert!(html.contains("failed because it was cancelled"), "{html}");
}

#[test]
fn empty_lists_explain_themselves() {
    let mut rows = views::DeliveryRows {
        subscription: "hooks".into(),
        deliveries: vec![],
        filters: Default::default(),
        next_cursor: None,
        paged: false,
        csrf: Some("tok<en>".into()),
        waits: Default::default(),
    };
    let html = views::delivery_table(&rows).into_string();
    assert!(html.contains("No deliveries yet."));
    rows.filters.state = "failed".into();
    let html = views::delivery_table(&rows).into_string();
    assert!(html.contains("No deliveries match these filters."));
    assert!(html.contains("Show all deliveries"));
}

fn held(reason: HeldReason, until: Option<Timestamp>) -> PushesHeld {
    PushesHeld {
        until,
        reason,
        detail: format!("{} <b>detail</b>", reason.as_str()),
    }
}

#[test]
fn a_due_delivery_says_what_it_waits_on_and_a_later_one_does_not() {
    let mut due = delivery(DeliveryState::Scheduled, 1);
    due.id = "d-due".into();
    due.next_attempt_at = Some(at(10));
    let mut later = delivery(DeliveryState::Scheduled, 1);
    later.id = "d-later".into();
    later.next_attempt_at = Some(at(100));
    let mut rows = views::DeliveryRows {
        subscription: "hooks".into(),
        deliveries: vec![due.clone(), later],
        filters: Default::default(),
        next_cursor: None,
        paged: false,
        csrf: None,
        waits: views::Waits {
            held: Some(held(HeldReason::PushBackoff, Some(at(60)))),
            rate: None,
            now: at(50),
        },
    };
    let html = views::delivery_rows(&rows).into_string();
    let note = ">held back: push backoff</span>";
    assert_eq!(html.matches(note).count(), 1, "only the due one: {html}");
    let (before, _) = html.split_once("d-later").unwrap();
    assert!(before.contains(note), "on the due delivery's row");
    assert!(
        html.contains(
            "title=\"held back by push backoff until 2027-01-15 08:01:00 UTC: pushes are held \
             because push_backoff &lt;b&gt;detail&lt;/b&gt;\""
        ),
        "{html}"
    );

    for (reason, text) in [
        (HeldReason::Paused, ">held back: paused by hand<"),
        (HeldReason::Disabled, ">held back: endpoint disabled<"),
        (HeldReason::RateZero, ">held back: rate is 0<"),
    ] {
        rows.waits.held = Some(held(reason, None));
        let html = views::delivery_rows(&rows).into_string();
        assert!(html.contains(text), "{reason:?}: {html}");
    }
    rows.waits.held = None;
    rows.waits.rate = Some("2/m".parse().unwrap());
    let html = views::delivery_rows(&rows).into_string();
    assert!(html.contains(">waiting: rate limit 2/m<"), "{html}");

    // The delivery page says it beside the next attempt.
    let waits = views::Waits {
        held: Some(held(HeldReason::RetryAfter, Some(at(60)))),
        rate: None,
        now: at(50),
    };
    let html = views::delivery_live(&due, &[], None, &waits).into_string();
    assert!(
        html.contains("held back by the endpoint's Retry-After until 2027-01-15 08:01:00 UTC"),
        "{html}"
    );
}

#[test]
fn the_health_badge_and_the_held_banner_say_why() {
    let badge = views::health_badge(
        "unstable",
        Some(
            "9 of 10 attempts failed in the last 1m (at least 80% of at least 5 makes it unstable)",
        ),
    )
    .into_string();
    assert!(
        badge.contains(
            "title=\"endpoint health unstable: 9 of 10 attempts failed in the last 1m (at least 80%"
        ),
        "{badge}"
    );
    assert_eq!(
        views::short_reason(
            "9 of 10 attempts failed in the last 1m (at least 80% of at least 5 makes it unstable)"
        ),
        "9 of 10 attempts failed in the last 1m"
    );
    let banner = views::held_banner(&held(HeldReason::RetryAfter, Some(at(60)))).into_string();
    assert!(
        banner.contains("<strong>Pushes held until 2027-01-15 08:01:00 UTC</strong> because retry_after &lt;b&gt;detail&lt;/b&gt;."),
        "{banner}"
    );
    let banner = views::held_banner(&held(HeldReason::Paused, None)).into_string();
    assert!(
        banner.contains("<strong>Pushes held</strong> because paused"),
        "{banner}"
    );
}

#[test]
fn ids_are_one_line_with_the_whole_value_on_hover_and_a_copy_button() {
    let html = views::ident("evt_0123456789abcdef").into_string();
    assert!(
        html.starts_with(
            "<span class=\"ident\"><span class=\"ident-text\" title=\"evt_0123456789abcdef\">\
             evt_0123456789abcdef</span><button class=\"copy\" type=\"button\" \
             data-copy=\"evt_0123456789abcdef\" title=\"Copy evt_0123456789abcdef\" \
             aria-label=\"Copy\"><svg"
        ),
        "{html}"
    );
    assert_escaped(&views::ident(NASTY).into_string());
}

#[test]
fn the_sign_in_page_uses_the_console_stylesheet() {
    let html = views::login("/console/x?a=\"b\"", Some(NASTY)).into_string();
    assert!(html.contains("<link rel=\"stylesheet\" href=\"/console/assets/console.css\">"));
    assert!(html.contains("value=\"/console/x?a=&quot;b&quot;\""));
    assert_escaped(&html);
}

#[test]
fn the_subscription_page_shows_the_gist_of_its_health_reason_and_its_hold() {
    let reason = "12 of 12 attempts failed in the last 86400s (at least 80% of at least 10 makes it unstable)";
    let page = views::SubscriptionPage {
        name: "hooks".into(),
        topic: "orders".into(),
        endpoint: "http://127.0.0.1:9/hook".into(),
        health: "unstable".into(),
        health_reason: Some(reason.into()),
        held: Some(held(HeldReason::PushBackoff, Some(at(60)))),
        paused: false,
        push_backoff: true,
        filters: Default::default(),
        rows: views::DeliveryRows {
            subscription: "hooks".into(),
            deliveries: vec![],
            filters: Default::default(),
            next_cursor: None,
            paged: false,
            csrf: None,
            waits: Default::default(),
        },
        filter_error: None,
        redriven: None,
    };
    let html = views::subscription(&page, &Default::default()).into_string();
    assert!(
        html.contains(&format!(
            "<dd id=\"health\">unstable — <span class=\"health-reason\" title=\"{reason}\">\
             12 of 12 attempts failed in the last 86400s</span></dd>"
        )),
        "{html}"
    );
    assert!(html.contains(&format!("title=\"endpoint health unstable: {reason}\"")));
    assert!(html.contains("id=\"pushes-held\""), "the banner");
    assert!(!html.contains("id=\"sign-out\""), "no session to end");
}
