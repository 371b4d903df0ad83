//! App Engine push queues: `queue.xml` or `queue.yaml` (told apart by their
//! content) become, per push queue, a topic and a subscription named after
//! the queue, with the queue's rate, bucket size, concurrency and retry
//! parameters, and App Engine's task headers on every push.

use std::time::Duration;

use serde::Deserialize;

use super::{ImportError, Imported};
use crate::config::TopicDecl;
use crate::dialect::HeadersProfile;
use crate::duration::{HumanDuration, parse_duration};
use crate::model::{DEFAULT_MAX_CONCURRENCY, SubscriptionSpec};
use crate::rate::{MAX_BUCKET_SIZE, Rate};
use crate::retry::policy::{APPENGINE_BACKOFF, Backoff, LimitMode, RetryPolicy};

/// App Engine's defaults for what a queue leaves out.
const DEFAULT_RATE: &str = "5/s";
const DEFAULT_BUCKET_SIZE: u32 = 5;

/// Where each queue's pushes go.
#[derive(Clone, Debug)]
pub enum EndpointRule {
    /// `BASE/_ah/queue/NAME`, App Engine's own task handler path.
    Base(String),
    /// A URL with `{queue}` where the queue's name goes.
    Template(String),
}

impl EndpointRule {
    fn endpoint(&self, queue: &str) -> String {
        match self {
            EndpointRule::Base(base) => {
                format!("{}/_ah/queue/{queue}", base.trim_end_matches('/'))
            }
            EndpointRule::Template(template) => template.replace("{queue}", queue),
        }
    }
}

/// One queue as written, in either format.
struct RawQueue {
    name: String,
    mode: Option<String>,
    rate: Option<String>,
    bucket_size: Option<String>,
    max_concurrent_requests: Option<String>,
    target: Option<String>,
    task_retry_limit: Option<String>,
    task_age_limit: Option<String>,
    min_backoff_seconds: Option<String>,
    max_backoff_seconds: Option<String>,
    max_doublings: Option<String>,
}

#[derive(Deserialize)]
struct XmlEntries {
    #[serde(default)]
    queue: Vec<XmlQueue>,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct XmlQueue {
    name: String,
    mode: Option<String>,
    rate: Option<String>,
    bucket_size: Option<String>,
    max_concurrent_requests: Option<String>,
    target: Option<String>,
    retry_parameters: Option<XmlRetry>,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct XmlRetry {
    task_retry_limit: Option<String>,
    task_age_limit: Option<String>,
    min_backoff_seconds: Option<String>,
    max_backoff_seconds: Option<String>,
    max_doublings: Option<String>,
}

/// A YAML scalar as App Engine accepts it: `5`, `0.5`, `5/s` or `2d` alike.
#[derive(Deserialize)]
#[serde(untagged)]
enum Scalar {
    Int(i64),
    Float(f64),
    Text(String),
}

impl Scalar {
    fn text(self) -> String {
        match self {
            Scalar::Int(v) => v.to_string(),
            Scalar::Float(v) => v.to_string(),
            Scalar::Text(v) => v,
        }
    }
}

#[derive(Deserialize)]
struct YamlFile {
    #[serde(default)]
    queue: Vec<YamlQueue>,
}

#[derive(Deserialize)]
struct YamlQueue {
    name: String,
    mode: Option<String>,
    rate: Option<Scalar>,
    bucket_size: Option<Scalar>,
    max_concurrent_requests: Option<Scalar>,
    target: Option<String>,
    retry_parameters: Option<YamlRetry>,
}

#[derive(Deserialize)]
struct YamlRetry {
    task_retry_limit: Option<Scalar>,
    task_age_limit: Option<Scalar>,
    min_backoff_seconds: Option<Scalar>,
    max_backoff_seconds: Option<Scalar>,
    max_doublings: Option<Scalar>,
}

fn text(scalar: Option<Scalar>) -> Option<String> {
    scalar.map(Scalar::text)
}

fn read(content: &str) -> Result<Vec<RawQueue>, ImportError> {
    if content.trim_start().starts_with('<') {
        let entries: XmlEntries = quick_xml::de::from_str(content)
            .map_err(|err| ImportError(format!("invalid queue.xml: {err}")))?;
        Ok(entries
            .queue
            .into_iter()
            .map(|q| {
                let (limit, age, min, max, doublings) = match q.retry_parameters {
                    Some(r) => (
                        r.task_retry_limit,
                        r.task_age_limit,
                        r.min_backoff_seconds,
                        r.max_backoff_seconds,
                        r.max_doublings,
                    ),
                    None => (None, None, None, None, None),
                };
                RawQueue {
                    name: q.name.trim().to_owned(),
                    mode: q.mode,
                    rate: q.rate,
                    bucket_size: q.bucket_size,
                    max_concurrent_requests: q.max_concurrent_requests,
                    target: q.target,
                    task_retry_limit: limit,
                    task_age_limit: age,
                    min_backoff_seconds: min,
                    max_backoff_seconds: max,
                    max_doublings: doublings,
                }
            })
            .collect())
    } else {
        let file: YamlFile = serde_yaml_ng::from_str(content)
            .map_err(|err| ImportError(format!("invalid queue.yaml: {err}")))?;
        Ok(file
            .queue
            .into_iter()
            .map(|q| {
                let retry = q.retry_parameters;
                let (limit, age, min, max, doublings) = match retry {
                    Some(r) => (
                        text(r.task_retry_limit),
                        text(r.task_age_limit),
                        text(r.min_backoff_seconds),
                        text(r.max_backoff_seconds),
                        text(r.max_doublings),
                    ),
                    None => (None, None, None, None, None),
                };
                RawQueue {
                    name: q.name.trim().to_owned(),
                    mode: q.mode,
                    rate: text(q.rate),
                    bucket_size: text(q.bucket_size),
                    max_concurrent_requests: text(q.max_concurrent_requests),
                    target: q.target,
                    task_retry_limit: limit,
                    task_age_limit: age,
                    min_backoff_seconds: min,
                    max_backoff_seconds: max,
                    max_doublings: doublings,
                }
            })
            .collect())
    }
}

/// Reads `queue.xml` or `queue.yaml` and declares a topic and a subscription
/// per push queue. Pull queues are skipped with a note.
pub fn import(content: &str, endpoints: &EndpointRule) -> Result<Imported, ImportError> {
    let mut imported = Imported::default();
    let queues = read(content)?;
    if queues.is_empty() {
        return Err(ImportError("the file declares no queue".into()));
    }
    let mut seen = std::collections::HashSet::new();
    for queue in queues {
        if !seen.insert(queue.name.clone()) {
            return Err(ImportError(format!(
                "queue {:?} is declared twice",
                queue.name
            )));
        }
        match queue.mode.as_deref().map(str::trim) {
            None | Some("push") => {}
            Some("pull") => {
                imported.notes.push(format!(
                    "queue {:?} is a pull queue: skipped (redrive pushes; a pull consumer \
                     can read a subscription's journal)",
                    queue.name
                ));
                continue;
            }
            Some(other) => {
                return Err(ImportError(format!(
                    "queue {:?}: mode {other:?} is neither push nor pull",
                    queue.name
                )));
            }
        }
        if let Some(target) = &queue.target {
            imported.notes.push(format!(
                "queue {:?}: target {target:?} is not used; pushes go to the endpoint",
                queue.name
            ));
        }
        let spec = subscription(&queue, endpoints)
            .map_err(|message| ImportError(format!("queue {:?}: {message}", queue.name)))?;
        imported.desired.topics.push(TopicDecl {
            name: queue.name.clone(),
        });
        imported.desired.subscriptions.push(spec);
    }
    Ok(imported)
}

fn number<T: std::str::FromStr>(field: &str, value: &Option<String>) -> Result<Option<T>, String> {
    value
        .as_deref()
        .map(|text| {
            text.trim()
                .parse::<T>()
                .map_err(|_| format!("{field} {text:?} is not a valid number"))
        })
        .transpose()
}

fn seconds(field: &str, value: &Option<String>, default: Duration) -> Result<Duration, String> {
    let Some(secs) = number::<f64>(field, value)? else {
        return Ok(default);
    };
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!("{field} must be 0 or more, got {secs}"));
    }
    Duration::try_from_secs_f64(secs).map_err(|_| format!("{field} {secs} is too large"))
}

fn subscription(queue: &RawQueue, endpoints: &EndpointRule) -> Result<SubscriptionSpec, String> {
    let name = &queue.name;
    if name.is_empty()
        || name.len() > 100
        || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        return Err("a queue name has 1 to 100 letters, digits and hyphens".into());
    }
    let rate: Rate = queue
        .rate
        .as_deref()
        .unwrap_or(DEFAULT_RATE)
        .parse()
        .map_err(|err: crate::rate::RateError| err.to_string())?;
    let bucket_size =
        number::<u32>("bucket-size", &queue.bucket_size)?.unwrap_or(DEFAULT_BUCKET_SIZE);
    if !(1..=MAX_BUCKET_SIZE).contains(&bucket_size) {
        return Err(format!(
            "bucket-size must be between 1 and {MAX_BUCKET_SIZE}, got {bucket_size}"
        ));
    }
    let max_concurrency = number::<u32>("max-concurrent-requests", &queue.max_concurrent_requests)?;
    if max_concurrency == Some(0) {
        return Err("max-concurrent-requests must be at least 1".into());
    }
    let retry_limit = number::<u32>("task-retry-limit", &queue.task_retry_limit)?;
    let age_limit = queue
        .task_age_limit
        .as_deref()
        .map(|text| {
            let age = parse_duration(text).map_err(|err| format!("task-age-limit: {err}"))?;
            if age.is_zero() {
                return Err(format!("task-age-limit must be positive, got {text:?}"));
            }
            Ok(HumanDuration(age))
        })
        .transpose()?;
    let min_backoff = seconds(
        "min-backoff-seconds",
        &queue.min_backoff_seconds,
        APPENGINE_BACKOFF.min_backoff,
    )?;
    let max_backoff = seconds(
        "max-backoff-seconds",
        &queue.max_backoff_seconds,
        APPENGINE_BACKOFF.max_backoff,
    )?;
    if min_backoff > max_backoff {
        return Err(format!(
            "min-backoff-seconds ({}) is greater than max-backoff-seconds ({})",
            min_backoff.as_secs_f64(),
            max_backoff.as_secs_f64()
        ));
    }
    let max_doublings = number::<u32>("max-doublings", &queue.max_doublings)?
        .unwrap_or(APPENGINE_BACKOFF.max_doublings);
    let retry_policy = RetryPolicy {
        backoff: Backoff::Exponential {
            min_backoff: HumanDuration(min_backoff),
            max_backoff: HumanDuration(max_backoff),
            max_doublings,
        },
        retry_limit,
        age_limit,
        limit_mode: LimitMode::Both,
        ..crate::retry::presets::preset("appengine")
            .map_err(|err| err.to_string())?
            .policy()
    };
    retry_policy.validate().map_err(|err| err.to_string())?;
    // Everything else as a subscription leaving it out gets; App Engine
    // keeps a queue's retry parameters exactly: no push backoff.
    Ok(SubscriptionSpec {
        retry_policy,
        max_concurrency: max_concurrency.unwrap_or(DEFAULT_MAX_CONCURRENCY),
        rate: Some(rate),
        bucket_size: Some(bucket_size),
        headers_profile: HeadersProfile::Appengine,
        ..SubscriptionSpec::new(name.clone(), name.clone(), endpoints.endpoint(name))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> EndpointRule {
        EndpointRule::Base("https://app.example.com/".into())
    }

    const XML: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<queue-entries>
  <total-storage-limit>120M</total-storage-limit>
  <queue>
    <name>emails</name>
    <rate>20/s</rate>
    <bucket-size>40</bucket-size>
    <max-concurrent-requests>10</max-concurrent-requests>
    <retry-parameters>
      <task-retry-limit>7</task-retry-limit>
      <task-age-limit>3.5d</task-age-limit>
      <min-backoff-seconds>10</min-backoff-seconds>
      <max-backoff-seconds>200</max-backoff-seconds>
      <max-doublings>2</max-doublings>
    </retry-parameters>
  </queue>
  <queue>
    <name>defaults</name>
  </queue>
  <queue>
    <name>pulled</name>
    <mode>pull</mode>
  </queue>
</queue-entries>
"#;

    #[test]
    fn queue_xml_maps_every_setting() {
        let imported = import(XML, &base()).unwrap();
        let specs = &imported.desired.subscriptions;
        assert_eq!(specs.len(), 2);
        let emails = &specs[0];
        assert_eq!(emails.endpoint, "https://app.example.com/_ah/queue/emails");
        assert_eq!(emails.rate, Some("20/s".parse().unwrap()));
        assert_eq!(emails.bucket_size, Some(40));
        assert_eq!(emails.headers_profile, HeadersProfile::Appengine);
        assert_eq!(emails.max_concurrency, 10);
        let policy = &emails.retry_policy;
        assert_eq!(policy.retry_limit, Some(7));
        assert_eq!(policy.age_limit, Some(HumanDuration::from_secs(302_400)));
        assert_eq!(policy.limit_mode, LimitMode::Both);
        let delays: Vec<u64> = policy
            .explain(5)
            .iter()
            .map(|r| r.delay.as_secs())
            .collect();
        assert_eq!(delays, [10, 20, 40, 80, 120]);
        // App Engine keeps the retry parameters exactly: no push backoff.
        assert!(specs.iter().all(|s| !s.push_backoff));
        assert!(imported.notes[0].contains("pull queue"));
    }

    #[test]
    fn missing_settings_take_app_engine_defaults() {
        let imported = import(XML, &base()).unwrap();
        let defaults = &imported.desired.subscriptions[1];
        assert_eq!(defaults.rate, Some("5/s".parse().unwrap()));
        assert_eq!(defaults.bucket_size, Some(5));
        let policy = &defaults.retry_policy;
        assert_eq!(
            RetryPolicy {
                preset: None,
                ..policy.clone()
            },
            RetryPolicy::default()
        );
    }

    #[test]
    fn queue_yaml_reads_the_same_settings() {
        let yaml = r#"
total_storage_limit: 120M
queue:
- name: emails
  rate: 20/s
  bucket_size: 40
  max_concurrent_requests: 10
  retry_parameters:
    task_retry_limit: 7
    task_age_limit: 3.5d
    min_backoff_seconds: 10
    max_backoff_seconds: 200
    max_doublings: 2
- name: paused
  rate: 0
- name: pulled
  mode: pull
"#;
        let from_yaml = import(yaml, &base()).unwrap();
        let from_xml = import(XML, &base()).unwrap();
        assert_eq!(
            from_yaml.desired.subscriptions[0],
            from_xml.desired.subscriptions[0]
        );
        assert!(from_yaml.desired.subscriptions[1].rate.unwrap().is_paused());
        assert_eq!(from_yaml.desired.subscriptions.len(), 2);
    }

    #[test]
    fn a_template_places_the_queue_name() {
        let rule = EndpointRule::Template("http://127.0.0.1:9000/tasks/{queue}/run".into());
        let imported = import(XML, &rule).unwrap();
        assert_eq!(
            imported.desired.subscriptions[0].endpoint,
            "http://127.0.0.1:9000/tasks/emails/run"
        );
    }

    fn error(content: &str) -> String {
        import(content, &base()).unwrap_err().to_string()
    }

    #[test]
    fn invalid_queues_are_refused_with_the_reason() {
        let q = |body: &str| {
            format!("<queue-entries><queue><name>q</name>{body}</queue></queue-entries>")
        };
        let retry = |body: &str| q(&format!("<retry-parameters>{body}</retry-parameters>"));
        assert!(
            error(&retry("<min-backoff-seconds>20</min-backoff-seconds><max-backoff-seconds>10</max-backoff-seconds>"))
                .contains("min-backoff-seconds (20) is greater than max-backoff-seconds (10)")
        );
        assert!(error(&retry("<task-age-limit>0s</task-age-limit>")).contains("must be positive"));
        assert!(error(&retry("<task-age-limit>-1d</task-age-limit>")).contains("negative"));
        assert!(error(&q("<rate>fast</rate>")).contains("invalid rate"));
        assert!(error(&q("<bucket-size>0</bucket-size>")).contains("bucket-size"));
        assert!(error(&q("<mode>poll</mode>")).contains("neither push nor pull"));
        assert!(
            error("<queue-entries><queue><name>a_b</name></queue></queue-entries>")
                .contains("letters, digits and hyphens")
        );
        assert!(error("<queue-entries></queue-entries>").contains("no queue"));
        assert!(error("<queue-entries><queue>").contains("invalid queue.xml"));
        assert!(error("queue: [{rate: 5/s}]").contains("invalid queue.yaml"));
    }
}
