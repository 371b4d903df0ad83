//! The console's pages as pure functions from data to HTML. maud escapes
//! every interpolated value, so payloads and names can't inject markup.

use std::time::Duration;

use jiff::Timestamp;
use maud::{DOCTYPE, Markup, PreEscaped, html};
use redrive_core::duration::format_duration;
use redrive_core::explain::Schedule;
use redrive_core::hold::{HeldReason, PushesHeld, delivery_waiting};
use redrive_core::marks::{Mark, marks};
use redrive_core::rate::Rate;
use redrive_core::{
    Attempt, AttemptKind, CloudEvent, Decision, Delivery, DeliveryState, ErrorClass, FailureReason,
};
use redrive_store::{OutcomeBucket, StateCounts};

use super::links;
use super::links::Filters;

/// Most payload bytes shown as text; the rest is cut with a note.
pub const PAYLOAD_TEXT_LIMIT: usize = 64 * 1024;
/// Most bytes of a binary payload shown as a hex dump.
pub const PAYLOAD_HEX_LIMIT: usize = 1024;

const STYLESHEET_PATH: &str = "/console/assets/console.css";
const SCRIPT_PATH: &str = "/console/assets/console.js";

/// What the frame of a page needs from its request.
#[derive(Clone, Debug, Default)]
pub struct Frame {
    /// The CSRF token the sign-out form carries; `None` when there is no
    /// session to end (authentication off, a bearer token, an error page).
    pub sign_out: Option<String>,
}

fn head(title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            title { (title) " · redrive" }
            link rel="stylesheet" href=(STYLESHEET_PATH);
            script src=(SCRIPT_PATH) defer {}
        }
    }
}

/// The frame every page shares.
pub fn layout(title: &str, frame: &Frame, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body {
                header.top {
                    a.brand href="/console" { "redrive" }
                    a href="/console" { "Overview" }
                    a href="/console/policy" { "Policy preview" }
                    @if let Some(csrf) = &frame.sign_out {
                        form.sign-out method="post" action="/console/logout" {
                            (csrf_input(csrf))
                            button.secondary #sign-out type="submit" { "Sign out" }
                        }
                    }
                }
                main { (body) }
            }
        }
    }
}

/// The sign-in page: styled like the rest, its stylesheet served without a
/// session.
pub fn login(next: &str, error: Option<&str>) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head("Sign in"))
            body.login {
                main {
                    form.card.login-card method="post" action="/console/login" {
                        h1 { span.brand { "redrive" } " console" }
                        label for="token" { "API token" }
                        input #token name="token" type="password" autocomplete="current-password" required autofocus;
                        input type="hidden" name="next" value=(next);
                        button type="submit" { "Sign in" }
                        @if let Some(error) = error {
                            p.error-box role="alert" { (error) }
                        }
                        p.note {
                            "The admin token is in the data directory's " code { "api-token" }
                            " file, or was given with " code { "--api-token" } "; "
                            code { "redrive tokens create --scope read" } " makes one that may only look."
                        }
                    }
                }
            }
        }
    }
}

/// A value that must not wrap (an id, an event type, an endpoint): one line,
/// cut with an ellipsis where it does not fit, the whole value on hover and
/// in a copy button (shown once the script runs; without it the text can
/// still be selected and copied whole).
pub fn ident(value: &str) -> Markup {
    html! {
        span.ident {
            span.ident-text title=(value) { (value) }
            (copy_button(value))
        }
    }
}

/// Copies `value` (see `console.js`); two overlapping sheets.
fn copy_button(value: &str) -> Markup {
    html! {
        button.copy type="button" data-copy=(value) title={ "Copy " (value) } aria-label="Copy" {
            svg viewBox="0 0 16 16" aria-hidden="true" {
                path fill="currentColor" d="M5 1h8a2 2 0 0 1 2 2v8h-2V3H5V1zM1 5a2 2 0 0 1 2-2h7a2 2 0 0 1 2 2v8a2 2 0 0 1-2 2H3a2 2 0 0 1-2-2V5zm2 0v8h7V5H3z" {}
            }
        }
    }
}

/// [`ident`] as a link.
fn ident_link(value: &str, href: &str) -> Markup {
    html! {
        span.ident {
            a.ident-text href=(href) title=(value) { (value) }
            (copy_button(value))
        }
    }
}

/// An inline SVG icon with its text alternative, for one mark.
pub fn icon(mark: Mark) -> Markup {
    let label = mark.label();
    // Hand-drawn 24×24 paths: a warning triangle, a circular arrow, a check.
    let path = match mark {
        Mark::Failed => {
            "M12 2 1 21h22L12 2zm0 5.5 7.5 12.5h-15L12 7.5zM11 10v5h2v-5h-2zm0 6v2h2v-2h-2z"
        }
        Mark::Retried => {
            "M12 4a8 8 0 1 0 7.75 10h-2.08A6 6 0 1 1 12 6c1.66 0 3.14.69 4.22 1.78L13 11h7V4l-2.35 2.35A7.96 7.96 0 0 0 12 4z"
        }
        Mark::Delivered => "M9 16.2 4.8 12l-1.4 1.4L9 19 21 7l-1.4-1.4L9 16.2z",
    };
    html! {
        svg class={ "icon icon-" (label) } role="img" aria-label=(label) viewBox="0 0 24 24" data-mark=(label) {
            title { (label) }
            path fill="currentColor" d=(path) {}
        }
    }
}

pub fn mark_icons(delivery: &Delivery) -> Markup {
    html! {
        span.marks { @for mark in marks(delivery) { (icon(mark)) } }
    }
}

/// `healthy`, `unstable` or `disabled`, with why on hover.
pub fn health_badge(health: &str, reason: Option<&str>) -> Markup {
    let title = match reason {
        Some(reason) if health != "healthy" => format!("endpoint health {health}: {reason}"),
        _ => format!("endpoint health {health}"),
    };
    html! { span class={ "badge badge-" (health) } title=(title) data-health=(health) { (health) } }
}

/// The gist of a health reason: its count, without the thresholds in
/// parentheses (they stay in the badge's title).
pub fn short_reason(reason: &str) -> &str {
    reason.split(" (").next().unwrap_or(reason)
}

/// A small badge saying pushes are held back, the detail on hover.
fn held_badge(held: &PushesHeld) -> Markup {
    html! { span.badge.badge-held title=(held.detail) data-held=(held.reason.as_str()) { "held: " (held.reason.label()) } }
}

/// What holds a subscription's pushes back, for its page.
pub fn held_banner(held: &PushesHeld) -> Markup {
    html! {
        div.card.banner #pushes-held role="status" data-reason=(held.reason.as_str()) {
            strong {
                @match held.until {
                    Some(until) => { "Pushes held until " (when(until)) }
                    None => { "Pushes held" }
                }
            }
            " because " (held.detail) "."
        }
    }
}

fn paused_badge() -> Markup {
    html! { span.badge.badge-paused title="pushes paused by hand" { "paused" } }
}

pub fn when(ts: Timestamp) -> String {
    ts.strftime("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// A time in a table cell, the zone in the column's header (`UTC`).
fn cell_when(ts: Option<Timestamp>) -> String {
    ts.map(|ts| ts.strftime("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|| "—".into())
}

fn opt_when(ts: Option<Timestamp>) -> String {
    ts.map(when).unwrap_or_else(|| "—".into())
}

fn state_badge(state: DeliveryState) -> Markup {
    html! { span class={ "state-" (state.as_str()) } { (state.as_str().replace('_', " ")) } }
}

/// The latest answer: a status code, or the class of error.
fn last_answer(delivery: &Delivery) -> String {
    match (delivery.last_status, delivery.last_error) {
        (Some(status), _) => status.to_string(),
        (None, Some(error)) => error.as_str().to_owned(),
        (None, None) => "—".into(),
    }
}

// ---------------------------------------------------------------------------
// Overview
// ---------------------------------------------------------------------------

/// One subscription's line of the overview.
pub struct SubscriptionSummary {
    pub name: String,
    pub topic: String,
    pub endpoint: String,
    pub health: String,
    pub health_reason: Option<String>,
    /// What holds its pushes back now, if anything.
    pub held: Option<PushesHeld>,
    /// Pushes paused by hand.
    pub paused: bool,
    pub last_hour: StateCounts,
    pub last_day: StateCounts,
    pub buckets: Vec<OutcomeBucket>,
}

pub struct Overview {
    pub topics: Vec<String>,
    pub subscriptions: Vec<SubscriptionSummary>,
}

pub fn overview(data: &Overview, frame: &Frame) -> Markup {
    layout(
        "Overview",
        frame,
        html! {
            h1 { "Overview" }
            @if data.topics.is_empty() {
                div.empty {
                    p { "No topics yet." }
                    p.note { "Create one with " code { "redrive topics create NAME" } " or " code { "POST /v1/topics" } "." }
                }
            } @else {
                div data-refresh="/console/fragments/overview" { (overview_topics(data)) }
            }
        },
    )
}

/// The refreshable part of the overview.
pub fn overview_topics(data: &Overview) -> Markup {
    html! {
        @for topic in &data.topics {
            section.card {
                h2 { "Topic " code { (topic) } }
                @let subs: Vec<&SubscriptionSummary> = data.subscriptions.iter().filter(|s| &s.topic == topic).collect();
                @if subs.is_empty() {
                    p.muted { "No subscriptions read from this topic." }
                } @else {
                    div.table-wrap {
                        table {
                            thead { tr {
                                th { "Subscription" } th { "Health" } th.hide-narrow { "Endpoint" }
                                th { "Last hour" } th { "Last 24h" } th { "Delivered vs failed, 24h" }
                            } }
                            tbody {
                                @for sub in subs {
                                    tr data-subscription=(sub.name) {
                                        td.ident-cell { (ident_link(&sub.name, &links::subscription(&sub.name))) }
                                        td {
                                            (health_badge(&sub.health, sub.health_reason.as_deref()))
                                            @if sub.paused { " " (paused_badge()) }
                                            @if let Some(held) = sub.held.as_ref().filter(|h| h.reason != HeldReason::Paused && h.reason != HeldReason::Disabled) { " " (held_badge(held)) }
                                        }
                                        td.ident-cell.hide-narrow { (ident(&sub.endpoint)) }
                                        td { (counts(&sub.last_hour)) }
                                        td { (counts(&sub.last_day)) }
                                        td { (outcome_chart(&sub.buckets)) }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn counts(counts: &StateCounts) -> Markup {
    html! {
        span.counts {
            @for state in DeliveryState::ALL {
                span class={ "state-" (state.as_str()) } title=(state.as_str()) {
                    (counts.get(state)) " " (state.as_str().replace('_', " "))
                }
            }
        }
    }
}

/// Stacked bars, delivered (green) over failed (red), one per bucket.
pub fn outcome_chart(buckets: &[OutcomeBucket]) -> Markup {
    const HEIGHT: u64 = 40;
    const BAR: usize = 6;
    let peak = buckets
        .iter()
        .map(|b| b.delivered + b.failed)
        .max()
        .unwrap_or(0)
        .max(1);
    let delivered: u64 = buckets.iter().map(|b| b.delivered).sum();
    let failed: u64 = buckets.iter().map(|b| b.failed).sum();
    let width = buckets.len() * BAR;
    let scale = |n: u64| n.saturating_mul(HEIGHT) / peak;
    html! {
        svg.chart role="img" aria-label={ (delivered) " delivered, " (failed) " failed" }
            viewBox={ "0 0 " (width.max(1)) " " (HEIGHT) } width=(width.max(1)) height=(HEIGHT) {
            title { (delivered) " delivered, " (failed) " failed" }
            rect x="0" y=(HEIGHT - 1) width=(width) height="1" fill="#dde1e6" {}
            @for (i, bucket) in buckets.iter().enumerate() {
                @let ok = scale(bucket.delivered);
                @let bad = scale(bucket.failed);
                @if ok > 0 || bucket.delivered > 0 {
                    rect x=(i * BAR) y=(HEIGHT - ok.max(1)) width=(BAR - 1) height=(ok.max(1)) fill="#1a7f37" {}
                }
                @if bad > 0 || bucket.failed > 0 {
                    rect x=(i * BAR) y=(HEIGHT.saturating_sub(ok + bad.max(1))) width=(BAR - 1) height=(bad.max(1)) fill="#c62828" {}
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Subscription
// ---------------------------------------------------------------------------

pub struct SubscriptionPage {
    pub name: String,
    pub topic: String,
    pub endpoint: String,
    pub health: String,
    pub health_reason: Option<String>,
    /// What holds its pushes back now, if anything.
    pub held: Option<PushesHeld>,
    /// Pushes paused by hand.
    pub paused: bool,
    /// Pub/Sub's push backoff: retries may start later than the policy says.
    pub push_backoff: bool,
    pub filters: Filters,
    pub rows: DeliveryRows,
    /// Why the filters could not be applied, shown above an empty list.
    pub filter_error: Option<String>,
    /// How many failed deliveries the redrive button just put back.
    pub redriven: Option<u64>,
}

pub struct DeliveryRows {
    pub subscription: String,
    pub deliveries: Vec<Delivery>,
    pub filters: Filters,
    pub next_cursor: Option<String>,
    /// This is a later page: it is not refreshed (rows would shift).
    pub paged: bool,
    /// The token every posted form carries; `None` for a session that may
    /// only read, which is shown no button that changes anything.
    pub csrf: Option<String>,
    /// What a due delivery may be waiting on.
    pub waits: Waits,
}

/// What holds a subscription's due deliveries back, read once per page.
#[derive(Clone, Debug, Default)]
pub struct Waits {
    pub held: Option<PushesHeld>,
    pub rate: Option<Rate>,
    pub now: Timestamp,
}

/// Why a due delivery has not been pushed yet, in a sentence; nothing for
/// any other.
pub fn waiting_note(delivery: &Delivery, waits: &Waits) -> Markup {
    waiting(delivery, waits, false)
}

/// [`waiting_note`] in a few words for a list row, the sentence on hover.
pub fn waiting_badge(delivery: &Delivery, waits: &Waits) -> Markup {
    waiting(delivery, waits, true)
}

fn waiting(delivery: &Delivery, waits: &Waits, short: bool) -> Markup {
    let Some(waiting) = delivery_waiting(delivery, waits.held.as_ref(), waits.rate, waits.now)
    else {
        return html! {};
    };
    let held = waits.held.as_ref();
    let mut sentence = waiting.describe();
    if let Some(until) = held.and_then(|held| held.until) {
        sentence = format!("{sentence} until {}", when(until));
    }
    let title = match held {
        Some(held) => format!("{sentence}: pushes are held because {}", held.detail),
        None => sentence.clone(),
    };
    html! {
        span.note.waiting data-waiting=(held.map_or("", |h| h.reason.as_str())) title=(title) {
            @if short { (waiting.short()) } @else { (sentence) }
        }
    }
}

pub fn subscription(page: &SubscriptionPage, frame: &Frame) -> Markup {
    let f = &page.filters;
    layout(
        &page.name,
        frame,
        html! {
            h1.title-line { "Subscription " code.ident-text title=(page.name) { (page.name) } " " (health_badge(&page.health, page.health_reason.as_deref())) @if page.paused { " " (paused_badge()) } }
            @if let Some(held) = &page.held { (held_banner(held)) }
            div.card {
                dl.attrs {
                    dt { "Topic" } dd { (ident(&page.topic)) }
                    dt { "Endpoint" } dd { (ident(&page.endpoint)) }
                    dt { "Health" }
                    dd #health {
                        (page.health)
                        @if let Some(reason) = page.health_reason.as_deref().filter(|_| page.health != "healthy") {
                            " — " span.health-reason title=(reason) { (short_reason(reason)) }
                        }
                    }
                    dt { "Push backoff" }
                    dd #push-backoff {
                        @if page.push_backoff {
                            "on — after failures pushes slow down and pause (100ms doubling to 60s), so retries may start later than the retry policy says"
                        } @else {
                            "off — every retry starts when the retry policy says"
                        }
                    }
                }
                div.actions {
                    @if let Some(csrf) = page.rows.csrf.as_deref() {
                        form.inline method="post" action=(links::redrive(&page.name)) {
                            (csrf_input(csrf))
                            button type="submit" name="redrive" { "Redrive failed" }
                        }
                        (subscription_controls(page, csrf))
                    }
                    a href=(links::policy_of(&page.name)) { "Its retry schedule" }
                }
            }
            form.filters method="get" action=(links::subscription(&page.name)) {
                label { "State"
                    select name="state" {
                        option value="" selected[f.state.is_empty()] { "any" }
                        @for state in DeliveryState::ALL {
                            option value=(state.as_str()) selected[f.state == state.as_str()] { (state.as_str()) }
                        }
                    }
                }
                label { "Failure reason"
                    select name="reason" {
                        option value="" selected[f.reason.is_empty()] { "any" }
                        @for reason in FailureReason::ALL {
                            option value=(reason.as_str()) selected[f.reason == reason.as_str()] { (reason.as_str()) }
                        }
                    }
                }
                label { "Event type" input type="text" name="type" value=(f.event_type) placeholder="order.created"; }
                label { "Status code" input type="text" name="status" value=(f.status) inputmode="numeric" size="5" placeholder="503"; }
                label { "Since" input type="text" name="since" value=(f.since) placeholder="1h or 2026-01-02T15:04Z" size="18"; }
                label { "Until" input type="text" name="until" value=(f.until) placeholder="2026-01-02T16:00Z" size="18"; }
                button type="submit" { "Filter" }
                @if !f.is_empty() { a href=(links::subscription(&page.name)) { "Clear filters" } }
            }
            @if let Some(count) = page.redriven {
                div.card #notice role="status" {
                    @if count == 0 { "Nothing to redrive: no delivery has failed." }
                    @else { "Redrive started: " (count) " failed " (if count == 1 { "delivery is" } else { "deliveries are" }) " due again." }
                }
            }
            @if let Some(error) = &page.filter_error {
                div.card.error-box role="alert" { (error) }
            }
            h2 { "Deliveries" span.note { " newest first" } }
            (delivery_table(&page.rows))
        },
    )
}

/// Pause or resume by hand; enable once health has disabled it.
fn subscription_controls(page: &SubscriptionPage, csrf: &str) -> Markup {
    let (action, label) = if page.paused {
        ("resume", "Resume")
    } else {
        ("pause", "Pause")
    };
    html! {
        form.inline method="post" action=(links::subscription_action(&page.name, action)) {
            (csrf_input(csrf))
            button type="submit" name=(action) { (label) }
        }
        @if page.health == "disabled" {
            form.inline method="post" action=(links::subscription_action(&page.name, "enable")) {
                (csrf_input(csrf))
                button type="submit" name="enable" { "Enable" }
            }
        }
    }
}

pub fn delivery_table(rows: &DeliveryRows) -> Markup {
    if rows.deliveries.is_empty() {
        return html! {
            div.empty #deliveries-empty {
                @if rows.filters.is_empty() && !rows.paged {
                    p { "No deliveries yet." }
                    p.note { "Events published to the topic appear here as they fan out." }
                } @else {
                    p { "No deliveries match these filters." }
                    p { a href=(links::subscription(&rows.subscription)) { "Show all deliveries" } }
                }
            }
        };
    }
    let refresh = (!rows.paged).then(|| links::rows(&rows.subscription, &rows.filters));
    html! {
        div.table-wrap {
            table #deliveries {
                thead { tr {
                    th { "" } th { "Event" } th.hide-narrow { "Type" } th { "State" } th { "Attempts" }
                    th { "Last answer" } th.hide-narrow { "Last attempt (UTC)" } th.hide-narrow { "Next attempt (UTC)" } th { "" }
                } }
                tbody data-refresh=[refresh] { (delivery_rows(rows)) }
            }
        }
        div.pager {
            @if rows.paged { a href=(links::subscription_filtered(&rows.subscription, &rows.filters, None)) { "Newest" } }
            @if let Some(cursor) = &rows.next_cursor {
                a rel="next" href=(links::subscription_filtered(&rows.subscription, &rows.filters, Some(cursor))) { "Older deliveries →" }
            }
        }
    }
}

/// The `<tr>`s of a delivery list (the auto-refreshed fragment).
pub fn delivery_rows(rows: &DeliveryRows) -> Markup {
    html! {
        @for d in &rows.deliveries {
            tr data-delivery=(d.id) data-event=(d.event_id) {
                td { (mark_icons(d)) }
                td.ident-cell { (ident_link(&d.event_id, &links::delivery(&d.id))) }
                td.ident-cell.hide-narrow { (ident(&d.event_type)) }
                td {
                    (state_badge(d.state))
                    @if let Some(reason) = d.failure_reason { br; span.note { (reason.as_str()) } }
                    @let waiting = waiting_badge(d, &rows.waits);
                    @if !waiting.0.is_empty() { br; (waiting) }
                }
                td { (d.attempts) }
                td { (last_answer(d)) }
                td.hide-narrow { (cell_when(d.last_attempt_at)) }
                td.hide-narrow { (cell_when(d.next_attempt_at)) }
                td { (retry_button(d, rows.csrf.as_deref())) }
            }
        }
    }
}

/// The hidden field that proves a form came from a console page.
fn csrf_input(csrf: &str) -> Markup {
    html! {
        input type="hidden" name="csrf_token" value=(csrf);
    }
}

/// Nothing for a session that may only read (no `csrf`).
fn retry_button(delivery: &Delivery, csrf: Option<&str>) -> Markup {
    let Some(csrf) = csrf else {
        return html! {};
    };
    let in_flight = delivery.state == DeliveryState::InFlight;
    html! {
        form.inline method="post" action=(links::retry(&delivery.id)) {
            (csrf_input(csrf))
            button.secondary type="submit" name="retry" disabled[in_flight]
                title=(if in_flight { "in flight: retry once this attempt ends" } else { "attempt it now" }) { "Retry now" }
        }
    }
}

// ---------------------------------------------------------------------------
// Delivery
// ---------------------------------------------------------------------------

pub fn delivery(
    delivery: &Delivery,
    event: &CloudEvent,
    attempts: &[Attempt],
    csrf: Option<&str>,
    waits: &Waits,
    frame: &Frame,
) -> Markup {
    layout(
        &format!("Delivery {}", delivery.event_id),
        frame,
        html! {
            h1.title-line { "Delivery of " code.ident-text title=(delivery.event_id) { (delivery.event_id) } }
            div #delivery-live data-refresh=(links::live(&delivery.id)) { (delivery_live(delivery, attempts, csrf, waits)) }
            h2 { "Event" }
            div.card { (event_attributes(event)) }
            h2 { "Data" }
            (payload(event.data.as_deref(), event.datacontenttype.as_deref()))
        },
    )
}

/// The parts of a delivery page that change as attempts happen (the
/// auto-refreshed fragment).
pub fn delivery_live(
    delivery: &Delivery,
    attempts: &[Attempt],
    csrf: Option<&str>,
    waits: &Waits,
) -> Markup {
    html! {
        div.card {
            dl.attrs {
                dt { "Subscription" } dd { (ident_link(&delivery.subscription, &links::subscription(&delivery.subscription))) }
                dt { "Delivery id" } dd { (ident(&delivery.id)) }
                dt { "State" } dd {
                    (mark_icons(delivery)) " "
                    (state_badge(delivery.state))
                    @if let Some(reason) = delivery.failure_reason { " — " (reason_text(reason)) }
                }
                dt { "Attempts" } dd { (delivery.attempts) }
                dt { "Next attempt" } dd #next-attempt {
                    (opt_when(delivery.next_attempt_at))
                    @let waiting = waiting_note(delivery, waits);
                    @if !waiting.0.is_empty() { " — " (waiting) }
                }
                dt { "First attempt" } dd { (opt_when(delivery.first_attempt_at)) }
                @if let Some(redriven) = delivery.redriven_at {
                    dt { "Fresh budget since" } dd { (when(redriven)) " (redriven after " (delivery.attempts_before_redrive) " attempts)" }
                }
                @if let Some(dead) = &delivery.dead_letter_event { dt { "Dead-letter copy" } dd { (ident(dead)) } }
            }
            div.actions { (retry_button(delivery, csrf)) }
        }
        h2 { "Attempts" }
        div #attempts { (timeline(delivery, attempts)) }
    }
}

fn reason_text(reason: FailureReason) -> &'static str {
    match reason {
        FailureReason::RetriesExhausted => "the retry limit was reached",
        FailureReason::AgeExhausted => "the age limit was reached",
        FailureReason::RetentionExpired => "the event outlived the subscription's retention",
        FailureReason::NonRetryable => "the endpoint's answer is not retried",
        FailureReason::Cancelled => "it was cancelled",
    }
}

/// The attempts, oldest first, each with the decision taken after it.
pub fn timeline(delivery: &Delivery, attempts: &[Attempt]) -> Markup {
    html! {
        @if attempts.is_empty() {
            div.empty { p { "No attempt yet." } p.note { "Next attempt: " (opt_when(delivery.next_attempt_at)) } }
        } @else {
            ol.timeline {
                @for a in attempts {
                    @if a.kind == AttemptKind::Cancel {
                        li.bad data-cancel=(a.number) {
                            strong { "Cancelled" } " · " (when(a.started_at))
                            br;
                            (decision_text(&a.decision))
                        }
                    } @else {
                        li class=(if a.decision == Decision::Delivered { "ok" } else { "bad" }) data-attempt=(a.number) {
                            strong { "Attempt " (a.number) } " · " (when(a.started_at)) " · " (a.duration_ms) " ms"
                            br;
                            @match (a.status, a.error) {
                                (Some(status), _) => { "HTTP " (status) }
                                (None, Some(error)) => { "error: " (error_text(error)) }
                                (None, None) => { "no answer" }
                            }
                            @if let Some(message) = &a.error_message { " — " span.note { (message) } }
                            br;
                            (decision_text(&a.decision))
                            @if let Some(snippet) = a.response_snippet.as_deref().filter(|s| !s.is_empty()) {
                                pre.snippet { (truncate_text(snippet, PAYLOAD_TEXT_LIMIT)) }
                            }
                        }
                    }
                }
            }
            @if let (DeliveryState::Scheduled, Some(next)) = (delivery.state, delivery.next_attempt_at) {
                p.note { "Next attempt scheduled at " (when(next)) "." }
            }
        }
    }
}

/// An error class in words.
fn error_text(error: ErrorClass) -> &'static str {
    match error {
        ErrorClass::Timeout => "timeout (no answer in time)",
        ErrorClass::Connect => "connection refused or reset",
        ErrorClass::Dns => "DNS (the host name did not resolve)",
        ErrorClass::Tls => "TLS handshake failed",
        ErrorClass::Interrupted => "interrupted (the process stopped or the lease ran out)",
        ErrorClass::Blocked => "blocked (the address is not allowed)",
        ErrorClass::Other => "other (a malformed answer or protocol error)",
    }
}

fn decision_text(decision: &Decision) -> Markup {
    html! {
        @match decision {
            Decision::Delivered => { span.state-delivered { "delivered" } }
            Decision::Retry { at, retry } => { span.state-scheduled { "retry " (retry) " at " (when(*at)) } }
            Decision::Failed { reason } => { span.state-failed { "failed because " (reason_text(*reason)) } }
        }
    }
}

fn event_attributes(event: &CloudEvent) -> Markup {
    html! {
        dl.attrs {
            dt { "id" } dd { (ident(&event.id)) }
            dt { "source" } dd { (ident(&event.source)) }
            dt { "type" } dd { (ident(&event.ty)) }
            dt { "specversion" } dd { (event.specversion) }
            @if let Some(v) = &event.subject { dt { "subject" } dd { (v) } }
            @if let Some(v) = &event.time { dt { "time" } dd { (v) } }
            @if let Some(v) = &event.datacontenttype { dt { "datacontenttype" } dd { (v) } }
            @if let Some(v) = &event.dataschema { dt { "dataschema" } dd { (v) } }
            @for (name, value) in &event.extensions {
                dt { (name) } dd { (value.as_str().map(str::to_owned).unwrap_or_else(|| value.to_string())) }
            }
        }
    }
}

/// Cuts `text` to at most `limit` bytes on a character boundary.
fn truncate_text(text: &str, limit: usize) -> &str {
    if text.len() <= limit {
        return text;
    }
    let mut end = limit;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// The event's data: JSON pretty-printed, other text as is, binary as a
/// hex dump; cut at a limit with a note saying so.
pub fn payload(data: Option<&[u8]>, content_type: Option<&str>) -> Markup {
    let Some(data) = data else {
        return html! { div.empty { "This event has no data." } };
    };
    let size = data.len();
    match std::str::from_utf8(data) {
        Ok(text) => {
            let is_json = redrive_core::event::is_json_content_type(content_type);
            let pretty = is_json
                .then(|| serde_json::from_str::<serde_json::Value>(text).ok())
                .flatten()
                .and_then(|value| serde_json::to_string_pretty(&value).ok());
            let text = pretty.as_deref().unwrap_or(text);
            let shown = truncate_text(text, PAYLOAD_TEXT_LIMIT);
            html! {
                pre.payload { (shown) }
                @if shown.len() < text.len() {
                    p.note.truncated { "Truncated: showing the first " (shown.len()) " of " (text.len()) " bytes." }
                }
            }
        }
        Err(_) => {
            let shown = &data[..size.min(PAYLOAD_HEX_LIMIT)];
            html! {
                p.note.binary { "Binary data, " (size) " bytes" @if let Some(ct) = content_type { " (" (ct) ")" } "; shown as hex." }
                pre.payload { (hex_dump(shown)) }
                @if shown.len() < size {
                    p.note.truncated { "Truncated: showing the first " (shown.len()) " of " (size) " bytes." }
                }
            }
        }
    }
}

fn hex_dump(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 4);
    for (line, chunk) in bytes.chunks(16).enumerate() {
        out.push_str(&format!("{:08x}  ", line * 16));
        for byte in chunk {
            out.push_str(&format!("{byte:02x} "));
        }
        out.push_str(&"   ".repeat(16 - chunk.len()));
        out.push(' ');
        out.extend(chunk.iter().map(|&b| {
            if b.is_ascii_graphic() || b == b' ' {
                b as char
            } else {
                '.'
            }
        }));
        out.push('\n');
    }
    out
}

// ---------------------------------------------------------------------------
// Policy preview
// ---------------------------------------------------------------------------

pub struct PolicyPage {
    /// The policy as typed (JSON).
    pub input: String,
    pub count: usize,
    /// Subscriptions whose policy can be picked.
    pub subscriptions: Vec<String>,
    pub outcome: Result<Schedule, String>,
    /// Whether push backoff applies, and whose setting that is.
    pub push_backoff: bool,
    pub push_backoff_source: String,
    /// The message retention the schedule is read against, and whose it is.
    pub retention: Duration,
    pub retention_source: String,
}

pub fn policy(page: &PolicyPage, frame: &Frame) -> Markup {
    layout(
        "Policy preview",
        frame,
        html! {
            h1 { "Retry policy preview" }
            p.note { "The retries a policy makes when every attempt fails instantly — the same numbers as "
                code { "redrive policy explain" } "." }
            form.card method="get" action="/console/policy" {
                label for="policy" { "Retry policy (JSON, as a subscription's " code { "retry_policy" } ")" }
                textarea #policy name="policy" rows="10" { (page.input) }
                div.actions {
                    label { "Retries shown " input type="number" name="count" min="1" max="200" value=(page.count); }
                    button type="submit" { "Explain" }
                }
                @if !page.subscriptions.is_empty() {
                    p.note { "Or pick a subscription's policy: "
                        @for (i, name) in page.subscriptions.iter().enumerate() {
                            @if i > 0 { ", " }
                            a href=(links::policy_of(name)) { (name) }
                        }
                    }
                }
            }
            @match &page.outcome {
                Err(error) => { div.card.error-box role="alert" { (error) } }
                Ok(schedule) => {
                    (schedule_view(schedule))
                    p.note #retention {
                        "Read against a message retention of " (format_duration(page.retention))
                        " (" (page.retention_source) "): no retry starts once an event is that old; its delivery fails as "
                        code { "retention_expired" } "."
                    }
                    p #push-backoff {
                        (redrive_core::explain::push_backoff_note(page.push_backoff))
                        " (" (page.push_backoff_source) ")."
                    }
                }
            }
        },
    )
}

pub fn schedule_view(schedule: &Schedule) -> Markup {
    html! {
        @if !schedule.retries.is_empty() {
            (schedule_chart(schedule))
            div.table-wrap {
                table #schedule {
                    thead { tr { th { "Retry" } th { "Delay" } th { "Since first attempt" } } }
                    tbody {
                        @for r in &schedule.retries {
                            tr { td { (r.retry) } td { (format_duration(r.delay)) } td { (format_duration(r.at)) } }
                        }
                    }
                }
            }
        }
        p #schedule-end { (schedule.end.describe()) }
    }
}

/// One bar per retry, its height the delay before it.
fn schedule_chart(schedule: &Schedule) -> Markup {
    const HEIGHT: f64 = 120.0;
    const BAR: usize = 14;
    let longest = schedule
        .retries
        .iter()
        .map(|r| r.delay)
        .max()
        .unwrap_or(Duration::ZERO)
        .as_secs_f64();
    // At least twenty slots wide, so a short schedule is not one giant bar.
    let width = schedule.retries.len().max(20) * BAR;
    html! {
        svg.chart #schedule-chart role="img" aria-label="delay before each retry" viewBox={ "0 0 " (width) " " (HEIGHT + 14.0) }
            width=(width * 2) preserveAspectRatio="xMinYMax meet" {
            title { "delay before each retry" }
            @for (i, r) in schedule.retries.iter().enumerate() {
                @let h = if longest > 0.0 { (r.delay.as_secs_f64() / longest * HEIGHT).max(1.0) } else { 1.0 };
                rect x=(i * BAR + 1) y=(format!("{:.1}", HEIGHT - h)) width=(BAR - 2) height=(format!("{h:.1}")) fill="#2454c5" {
                    title { "retry " (r.retry) ": " (format_duration(r.delay)) }
                }
                text x=(i * BAR + BAR / 2) y=(HEIGHT + 11.0) font-size="8" text-anchor="middle" fill="#5b6672" { (r.retry) }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

pub fn not_found(what: &str) -> Markup {
    layout(
        "Not found",
        &Frame::default(),
        html! {
            h1 { "Not found" }
            div.empty #not-found {
                p { (what) }
                p { a href="/console" { "Back to the overview" } }
            }
        },
    )
}

pub fn error_page(title: &str, message: &str) -> Markup {
    layout(
        title,
        &Frame::default(),
        html! {
            h1 { (title) }
            div.card.error-box role="alert" { (message) }
            p { a href="/console" { "Back to the overview" } }
        },
    )
}

/// Raw text of trusted, compiled-in assets.
pub fn raw(text: &'static str) -> PreEscaped<&'static str> {
    PreEscaped(text)
}
