//! `redrive policy explain`: the retries a policy makes, when each starts,
//! and why the list ends.

use std::time::Duration;

use anyhow::bail;
use clap::{Args, ValueEnum};
use redrive_core::duration::{HumanDuration, format_duration, parse_duration};
use redrive_core::explain::{Schedule, ScheduleEnd};
use redrive_core::lifecycle::{
    DEFAULT_MESSAGE_RETENTION, MAX_MESSAGE_RETENTION, MIN_MESSAGE_RETENTION,
};
use redrive_core::policy::{Backoff, LimitMode, RetryPolicy, ScheduledRetry};
use serde::Serialize;

// App Engine's defaults, which are also `RetryPolicy::default()`'s.
const DEFAULT_MIN_BACKOFF: Duration = Duration::from_millis(100);
const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(3600);
const DEFAULT_MAX_DOUBLINGS: u32 = 16;

/// Print a retry policy's schedule, assuming every attempt fails instantly.
///
/// Without flags this is App Engine's default: exponential from 0.1s to 3600s
/// with 16 doublings and no limits.
#[derive(Args, Debug)]
pub struct ExplainArgs {
    /// How the delay grows between retries [default: exponential, or fixed
    /// when --interval is given, or schedule when --schedule is given]
    #[arg(long, value_enum)]
    pub backoff: Option<BackoffKind>,

    /// Exponential backoff: the delay before the first retry [default: 0.1s]
    #[arg(long, value_name = "DURATION", value_parser = duration_arg)]
    pub min_backoff: Option<Duration>,

    /// Exponential backoff: the longest delay [default: 3600s]
    #[arg(long, value_name = "DURATION", value_parser = duration_arg)]
    pub max_backoff: Option<Duration>,

    /// Exponential backoff: how many times the delay doubles before it grows
    /// linearly [default: 16]
    #[arg(long, value_name = "N")]
    pub max_doublings: Option<u32>,

    /// Fixed backoff: the delay before every retry, e.g. 30s
    #[arg(long, value_name = "DURATION", value_parser = duration_arg)]
    pub interval: Option<Duration>,

    /// Schedule backoff: the delays before retries 1, 2, …, comma-separated;
    /// the last one repeats, e.g. 5s,5m,30m
    #[arg(long, value_name = "DURATIONS", value_delimiter = ',', value_parser = duration_arg)]
    pub schedule: Vec<Duration>,

    /// Most retries (N retries = N+1 attempts) [default: no limit]
    #[arg(long, value_name = "N")]
    pub retry_limit: Option<u32>,

    /// Time since the first attempt after which no retry starts, e.g. 1d
    /// [default: no limit]
    #[arg(long, value_name = "DURATION", value_parser = duration_arg)]
    pub age_limit: Option<Duration>,

    /// With both limits set: stop once both are reached (App Engine), or as
    /// soon as either is [default: both, or the preset's]
    #[arg(long, value_enum)]
    pub limit_mode: Option<LimitModeArg>,

    /// Start from a preset (see `redrive policy presets`); --retry-limit,
    /// --age-limit and --limit-mode override its limits
    #[arg(long, value_name = "NAME")]
    pub preset: Option<String>,

    /// How long the subscription keeps trying an event (its
    /// `message_retention`): no retry starts later, the delivery fails as
    /// retention_expired [default: the preset's, else 7d as for any
    /// subscription]
    #[arg(long, value_name = "DURATION", value_parser = duration_arg)]
    pub message_retention: Option<Duration>,

    /// Whether the subscription has push backoff, which may start retries
    /// later than the schedule [default: the preset's, else off]
    #[arg(long, value_enum, value_name = "ON|OFF")]
    pub push_backoff: Option<OnOff>,

    /// How many retries to show when the limits do not end the list first
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub count: usize,

    /// Print a JSON array of {retry, delay_seconds, at_seconds} instead of a
    /// table
    #[arg(long)]
    pub json: bool,
}

/// The `--backoff` kinds, named as in a policy's `backoff.kind`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BackoffKind {
    /// App Engine's: double `--max-doublings` times, then grow linearly,
    /// capped at `--max-backoff`
    Exponential,
    /// The same `--interval` before every retry
    Fixed,
    /// The delays listed in `--schedule`, the last one repeating
    Schedule,
    /// No delay at all
    Immediate,
}

/// A switch given as `on` or `off`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OnOff {
    On,
    Off,
}

impl OnOff {
    pub fn is_on(self) -> bool {
        self == OnOff::On
    }
}

/// The `--limit-mode` values; see [`LimitMode`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LimitModeArg {
    /// Stop only when both limits are reached (App Engine)
    Both,
    /// Stop as soon as either limit is reached
    Either,
}

impl From<LimitModeArg> for LimitMode {
    fn from(mode: LimitModeArg) -> Self {
        match mode {
            LimitModeArg::Both => LimitMode::Both,
            LimitModeArg::Either => LimitMode::Either,
        }
    }
}

/// clap's error already quotes the input and names the flag, so only the
/// reason is kept.
fn duration_arg(value: &str) -> Result<Duration, String> {
    parse_duration(value).map_err(|err| err.reason)
}

/// The policy the flags describe, validated.
pub fn policy_from_args(args: &ExplainArgs) -> anyhow::Result<RetryPolicy> {
    if let Some(name) = &args.preset {
        return preset_policy(name, args);
    }
    let kind = match (args.backoff, args.interval, args.schedule.is_empty()) {
        (Some(kind), _, _) => kind,
        (None, Some(_), false) => {
            bail!("--interval and --schedule belong to different backoffs; give one of them")
        }
        (None, Some(_), true) => BackoffKind::Fixed,
        (None, None, false) => BackoffKind::Schedule,
        (None, None, true) => BackoffKind::Exponential,
    };
    // A flag that the chosen backoff ignores is almost always a typo'd
    // intention; saying so beats printing a schedule the user did not mean.
    if kind != BackoffKind::Exponential {
        let exponential_flags = [
            ("--min-backoff", args.min_backoff.is_some()),
            ("--max-backoff", args.max_backoff.is_some()),
            ("--max-doublings", args.max_doublings.is_some()),
        ];
        if let Some((flag, _)) = exponential_flags.iter().find(|(_, given)| *given) {
            bail!("{flag} only applies to --backoff exponential");
        }
    }
    if kind != BackoffKind::Fixed && args.interval.is_some() {
        bail!("--interval only applies to --backoff fixed");
    }
    if kind != BackoffKind::Schedule && !args.schedule.is_empty() {
        bail!("--schedule only applies to --backoff schedule");
    }
    let backoff = match kind {
        BackoffKind::Exponential => Backoff::Exponential {
            min_backoff: HumanDuration(args.min_backoff.unwrap_or(DEFAULT_MIN_BACKOFF)),
            max_backoff: HumanDuration(args.max_backoff.unwrap_or(DEFAULT_MAX_BACKOFF)),
            max_doublings: args.max_doublings.unwrap_or(DEFAULT_MAX_DOUBLINGS),
        },
        BackoffKind::Fixed => match args.interval {
            Some(interval) => Backoff::Fixed {
                interval: HumanDuration(interval),
            },
            None => bail!("--backoff fixed needs --interval, e.g. --interval 30s"),
        },
        BackoffKind::Schedule if args.schedule.is_empty() => {
            bail!("--backoff schedule needs --schedule, e.g. --schedule 5s,5m,30m")
        }
        BackoffKind::Schedule => Backoff::Schedule {
            delays: args.schedule.iter().copied().map(HumanDuration).collect(),
        },
        BackoffKind::Immediate => Backoff::Immediate,
    };
    let policy = RetryPolicy {
        backoff,
        retry_limit: args.retry_limit,
        age_limit: args.age_limit.map(HumanDuration),
        limit_mode: args.limit_mode.map_or(LimitMode::Both, Into::into),
        ..RetryPolicy::default()
    };
    if let Err(err) = policy.validate() {
        match flag_for_field(&err.field) {
            Some(flag) => bail!("{flag}: {}", err.message),
            None => return Err(err.into()),
        }
    }
    Ok(policy)
}

/// A preset's policy with the limits the flags override.
fn preset_policy(name: &str, args: &ExplainArgs) -> anyhow::Result<RetryPolicy> {
    let backoff_flags = [
        ("--backoff", args.backoff.is_some()),
        ("--min-backoff", args.min_backoff.is_some()),
        ("--max-backoff", args.max_backoff.is_some()),
        ("--max-doublings", args.max_doublings.is_some()),
        ("--interval", args.interval.is_some()),
        ("--schedule", !args.schedule.is_empty()),
    ];
    if let Some((flag, _)) = backoff_flags.iter().find(|(_, given)| *given) {
        bail!("{flag} can't be combined with --preset: a preset brings its own backoff");
    }
    let mut policy = redrive_core::presets::preset(name)?.policy();
    if let Some(limit) = args.retry_limit {
        policy.retry_limit = Some(limit);
    }
    if let Some(age) = args.age_limit {
        policy.age_limit = Some(HumanDuration(age));
    }
    if let Some(mode) = args.limit_mode {
        policy.limit_mode = mode.into();
    }
    Ok(policy)
}

/// `redrive policy presets`: each preset, its source system and numbers.
pub fn presets_table() -> String {
    let presets = redrive_core::presets::PRESETS;
    let width = presets.iter().map(|p| p.name.len()).max().unwrap_or(0);
    let mut out = String::new();
    for preset in presets {
        out.push_str(&format!(
            "{:width$}  {}\n{:width$}  ({})\n",
            preset.name, preset.summary, "", preset.source
        ));
    }
    out.push_str("\nSee one schedule with `redrive policy explain --preset NAME`.");
    out
}

/// The flag that sets a policy field, to word validation errors in the
/// user's terms.
fn flag_for_field(field: &str) -> Option<&'static str> {
    match field {
        "backoff.min_backoff" => Some("--min-backoff"),
        "backoff.max_backoff" => Some("--max-backoff"),
        "backoff.max_doublings" => Some("--max-doublings"),
        "backoff.interval" => Some("--interval"),
        "backoff.delays" => Some("--schedule"),
        _ => None,
    }
}

/// One row of `--json` output.
#[derive(Serialize)]
struct JsonRetry {
    retry: u32,
    delay_seconds: f64,
    at_seconds: f64,
}

/// Whether push backoff applies: as asked, else as the preset brings it.
fn push_backoff_of(args: &ExplainArgs) -> anyhow::Result<bool> {
    if let Some(choice) = args.push_backoff {
        return Ok(choice.is_on());
    }
    match &args.preset {
        Some(name) => Ok(redrive_core::presets::preset(name)?.push_backoff),
        None => Ok(false),
    }
}

/// The message retention the schedule is read against: as asked, else the
/// preset's, else every subscription's default.
fn retention_of(args: &ExplainArgs) -> anyhow::Result<Duration> {
    let retention = match (args.message_retention, &args.preset) {
        (Some(retention), _) => retention,
        (None, Some(name)) => redrive_core::presets::preset(name)?
            .message_retention
            .unwrap_or(DEFAULT_MESSAGE_RETENTION),
        (None, None) => DEFAULT_MESSAGE_RETENTION,
    };
    if !(MIN_MESSAGE_RETENTION..=MAX_MESSAGE_RETENTION).contains(&retention) {
        bail!(
            "--message-retention: must be from {} to {}",
            format_duration(MIN_MESSAGE_RETENTION),
            format_duration(MAX_MESSAGE_RETENTION)
        );
    }
    Ok(retention)
}

/// The first `count` retries of `policy` for a subscription keeping events
/// `retention`, as a table followed by a line saying why the list ends, or
/// as a JSON array; no trailing newline.
pub fn render(policy: &RetryPolicy, count: usize, retention: Duration, json: bool) -> String {
    let Schedule { retries, end } = policy.schedule_within(count, retention);
    if json {
        let rows: Vec<JsonRetry> = retries
            .iter()
            .map(|r| JsonRetry {
                retry: r.retry,
                delay_seconds: r.delay.as_secs_f64(),
                at_seconds: r.at.as_secs_f64(),
            })
            .collect();
        return serde_json::to_string_pretty(&rows)
            .expect("integers and finite floats always serialize");
    }
    let mut out = table(&retries);
    out.push_str(&ending(&end));
    out
}

fn table(retries: &[ScheduledRetry]) -> String {
    let header = ["retry", "delay", "since first attempt"];
    let rows: Vec<[String; 3]> = retries
        .iter()
        .map(|r| {
            [
                r.retry.to_string(),
                format_duration(r.delay),
                format_duration(r.at),
            ]
        })
        .collect();
    let width = |column: usize| {
        rows.iter()
            .map(|row| row[column].chars().count())
            .chain([header[column].len()])
            .max()
            .unwrap_or(0)
    };
    let widths = [width(0), width(1), width(2)];
    let mut out = String::new();
    let header = header.map(str::to_string);
    for row in std::iter::once(&header).chain(&rows) {
        let line = format!(
            "{:>w0$}  {:>w1$}  {:>w2$}",
            row[0],
            row[1],
            row[2],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2],
        );
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// Why the list stops where it does, worded for the command line.
fn ending(end: &ScheduleEnd) -> String {
    match end {
        ScheduleEnd::MoreFollow { .. } | ScheduleEnd::RetentionFollows { .. } => {
            format!("{} (raise --count to see them)", end.describe())
        }
        _ => end.describe(),
    }
}

/// Runs `redrive policy explain`, returning the text to print.
pub fn run(args: &ExplainArgs) -> anyhow::Result<String> {
    if args.count == 0 {
        bail!("--count must be at least 1");
    }
    let policy = policy_from_args(args)?;
    let mut out = render(&policy, args.count, retention_of(args)?, args.json);
    if !args.json {
        out.push('\n');
        out.push_str(redrive_core::explain::push_backoff_note(push_backoff_of(
            args,
        )?));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::*;

    #[derive(Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        args: ExplainArgs,
    }

    fn args(flags: &[&str]) -> ExplainArgs {
        let argv = std::iter::once("explain").chain(flags.iter().copied());
        Cli::try_parse_from(argv).unwrap().args
    }

    fn parse_error(flags: &[&str]) -> String {
        let argv = std::iter::once("explain").chain(flags.iter().copied());
        Cli::try_parse_from(argv).unwrap_err().to_string()
    }

    fn run_error(flags: &[&str]) -> String {
        run(&args(flags)).unwrap_err().to_string()
    }

    fn policy(flags: &[&str]) -> RetryPolicy {
        policy_from_args(&args(flags)).unwrap()
    }

    #[test]
    fn command_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn no_flags_mean_the_appengine_default() {
        assert_eq!(policy(&[]), RetryPolicy::default());
        let args = args(&[]);
        assert_eq!(args.count, 20);
        assert!(!args.json);
    }

    #[test]
    fn exponential_flags_set_the_backoff() {
        let p = policy(&[
            "--min-backoff",
            "10s",
            "--max-backoff",
            "5m",
            "--max-doublings",
            "3",
        ]);
        assert_eq!(
            p.backoff,
            Backoff::Exponential {
                min_backoff: HumanDuration::from_secs(10),
                max_backoff: HumanDuration::from_secs(300),
                max_doublings: 3,
            }
        );
    }

    #[test]
    fn a_preset_brings_its_policy_and_flags_override_its_limits() {
        let p = policy(&["--preset", "standard-webhooks"]);
        assert_eq!(p.retry_limit, Some(9));
        let text = run(&args(&["--preset", "standard-webhooks"])).unwrap();
        assert!(
            text.contains("no more retries: retry limit 9 reached"),
            "{text}"
        );
        let p = policy(&[
            "--preset",
            "adobe-io",
            "--age-limit",
            "1h",
            "--limit-mode",
            "both",
        ]);
        assert_eq!(p.age_limit, Some(HumanDuration::from_secs(3600)));
        assert_eq!(p.limit_mode, LimitMode::Both);
        assert_eq!(p.preset.as_deref(), Some("adobe-io"));
    }

    #[test]
    fn a_preset_refuses_backoff_flags_and_unknown_names() {
        assert!(
            run_error(&["--preset", "pubsub", "--min-backoff", "1s"])
                .contains("--min-backoff can't be combined with --preset")
        );
        assert!(run_error(&["--preset", "nope"]).contains("unknown preset \"nope\""));
    }

    #[test]
    fn presets_table_lists_every_preset() {
        let table = presets_table();
        for preset in redrive_core::presets::PRESETS {
            assert!(table.contains(preset.name), "{table}");
        }
    }

    #[test]
    fn limits_and_limit_mode_are_read() {
        let p = policy(&[
            "--retry-limit",
            "5",
            "--age-limit",
            "1d",
            "--limit-mode",
            "either",
        ]);
        assert_eq!(p.retry_limit, Some(5));
        assert_eq!(p.age_limit, Some(HumanDuration::from_secs(86_400)));
        assert_eq!(p.limit_mode, LimitMode::Either);
    }

    #[test]
    fn schedule_takes_a_comma_separated_list() {
        let p = policy(&["--backoff", "schedule", "--schedule", "5s,5m,30m"]);
        assert_eq!(
            p.backoff,
            Backoff::Schedule {
                delays: vec![
                    HumanDuration::from_secs(5),
                    HumanDuration::from_secs(300),
                    HumanDuration::from_secs(1800),
                ]
            }
        );
    }

    #[test]
    fn schedule_or_interval_alone_imply_their_backoff() {
        assert!(matches!(
            policy(&["--schedule", "1s,2s"]).backoff,
            Backoff::Schedule { .. }
        ));
        assert_eq!(
            policy(&["--interval", "30s"]).backoff,
            Backoff::Fixed {
                interval: HumanDuration::from_secs(30)
            }
        );
    }

    #[test]
    fn immediate_backoff_needs_no_other_flag() {
        assert_eq!(
            policy(&["--backoff", "immediate"]).backoff,
            Backoff::Immediate
        );
    }

    #[test]
    fn fixed_without_interval_is_an_error() {
        assert_eq!(
            run_error(&["--backoff", "fixed"]),
            "--backoff fixed needs --interval, e.g. --interval 30s"
        );
    }

    #[test]
    fn schedule_backoff_without_a_schedule_is_an_error() {
        assert_eq!(
            run_error(&["--backoff", "schedule"]),
            "--backoff schedule needs --schedule, e.g. --schedule 5s,5m,30m"
        );
    }

    #[test]
    fn flags_of_another_backoff_are_errors() {
        assert_eq!(
            run_error(&["--backoff", "exponential", "--interval", "5s"]),
            "--interval only applies to --backoff fixed"
        );
        assert_eq!(
            run_error(&["--backoff", "fixed", "--interval", "5s", "--schedule", "1s"]),
            "--schedule only applies to --backoff schedule"
        );
        assert_eq!(
            run_error(&["--schedule", "1s", "--max-doublings", "3"]),
            "--max-doublings only applies to --backoff exponential"
        );
        assert_eq!(
            run_error(&["--interval", "5s", "--schedule", "1s"]),
            "--interval and --schedule belong to different backoffs; give one of them"
        );
    }

    #[test]
    fn invalid_policies_are_reported_by_flag() {
        assert_eq!(
            run_error(&["--min-backoff", "10s", "--max-backoff", "5s"]),
            "--max-backoff: must be at least min_backoff (10s), got 5s"
        );
        assert_eq!(
            run_error(&["--max-doublings", "100"]),
            "--max-doublings: must be at most 62, got 100"
        );
    }

    #[test]
    fn bad_durations_are_rejected_with_the_reason() {
        let message = parse_error(&["--min-backoff", "10x"]);
        assert!(message.contains("'10x'"), "{message}");
        assert!(message.contains("unknown unit \"x\""), "{message}");
        let message = parse_error(&["--schedule", "5s,-1s"]);
        assert!(
            message.contains("negative durations are not allowed"),
            "{message}"
        );
    }

    #[test]
    fn zero_count_is_an_error() {
        assert_eq!(run_error(&["--count", "0"]), "--count must be at least 1");
    }

    const WEEK: Duration = DEFAULT_MESSAGE_RETENTION;

    fn ten_to_300() -> RetryPolicy {
        policy(&[
            "--min-backoff",
            "10s",
            "--max-backoff",
            "300s",
            "--max-doublings",
            "3",
        ])
    }

    #[test]
    fn json_lists_delays_and_times_in_seconds() {
        let expected = r#"[
  {
    "retry": 1,
    "delay_seconds": 10.0,
    "at_seconds": 10.0
  },
  {
    "retry": 2,
    "delay_seconds": 20.0,
    "at_seconds": 30.0
  },
  {
    "retry": 3,
    "delay_seconds": 40.0,
    "at_seconds": 70.0
  },
  {
    "retry": 4,
    "delay_seconds": 80.0,
    "at_seconds": 150.0
  },
  {
    "retry": 5,
    "delay_seconds": 160.0,
    "at_seconds": 310.0
  },
  {
    "retry": 6,
    "delay_seconds": 240.0,
    "at_seconds": 550.0
  },
  {
    "retry": 7,
    "delay_seconds": 300.0,
    "at_seconds": 850.0
  },
  {
    "retry": 8,
    "delay_seconds": 300.0,
    "at_seconds": 1150.0
  }
]"#;
        assert_eq!(render(&ten_to_300(), 8, WEEK, true), expected);
    }

    #[test]
    fn json_prints_decimal_seconds_exactly() {
        let rows: serde_json::Value =
            serde_json::from_str(&render(&RetryPolicy::default(), 3, WEEK, true)).unwrap();
        assert_eq!(
            rows,
            serde_json::json!([
                {"retry": 1, "delay_seconds": 0.1, "at_seconds": 0.1},
                {"retry": 2, "delay_seconds": 0.2, "at_seconds": 0.3},
                {"retry": 3, "delay_seconds": 0.4, "at_seconds": 0.7},
            ])
        );
        let text = render(&RetryPolicy::default(), 3, WEEK, true);
        assert!(text.contains("\"at_seconds\": 0.3\n"), "{text}");
    }

    #[test]
    fn json_of_a_policy_without_retries_is_an_empty_array() {
        let p = RetryPolicy {
            retry_limit: Some(0),
            ..RetryPolicy::default()
        };
        assert_eq!(render(&p, 20, WEEK, true), "[]");
    }

    #[test]
    fn table_right_aligns_columns_and_says_the_retention_ends_the_retries() {
        let expected = "\
retry   delay  since first attempt
    1     10s                  10s
    2     20s                  30s
    3     40s               1m 10s
    4  1m 20s               2m 30s
    5  2m 40s               5m 10s
    6      4m               9m 10s
    7      5m              14m 10s
    8      5m              19m 10s
showing the first 8 retries; more follow until the message retention of 7d runs out: \
the last is retry 2020, 6d 23h 59m 10s after the first attempt, then the delivery fails as \
retention_expired (raise --count to see them)";
        assert_eq!(render(&ten_to_300(), 8, WEEK, false), expected);
    }

    #[test]
    fn table_ends_at_the_retry_limit() {
        let p = RetryPolicy {
            retry_limit: Some(2),
            ..ten_to_300()
        };
        let expected = "\
retry  delay  since first attempt
    1    10s                  10s
    2    20s                  30s
no more retries: retry limit 2 reached";
        assert_eq!(render(&p, 20, WEEK, false), expected);
    }

    #[test]
    fn table_ends_at_the_age_limit() {
        let p = RetryPolicy {
            age_limit: Some(HumanDuration::from_secs(60)),
            ..ten_to_300()
        };
        let text = render(&p, 20, WEEK, false);
        assert_eq!(
            text.lines().last(),
            Some(
                "no more retries: age limit 1m reached (attempt 4 fails 1m 10s after the first attempt)"
            )
        );
        assert_eq!(text.lines().count(), 5);
    }

    #[test]
    fn table_ends_when_both_limits_are_reached() {
        let p = RetryPolicy {
            retry_limit: Some(2),
            age_limit: Some(HumanDuration::from_secs(60)),
            ..ten_to_300()
        };
        assert_eq!(
            render(&p, 20, WEEK, false).lines().last(),
            Some(
                "no more retries: retry limit 2 and age limit 1m both reached \
                 (attempt 4 fails 1m 10s after the first attempt)"
            )
        );
    }

    #[test]
    fn table_in_either_mode_names_the_limit_that_ended_it() {
        let p = RetryPolicy {
            retry_limit: Some(2),
            age_limit: Some(HumanDuration::from_secs(60)),
            limit_mode: LimitMode::Either,
            ..ten_to_300()
        };
        assert_eq!(
            render(&p, 20, WEEK, false).lines().last(),
            Some("no more retries: retry limit 2 reached")
        );
        let p = RetryPolicy {
            retry_limit: Some(10),
            ..p
        };
        assert_eq!(
            render(&p, 20, WEEK, false).lines().last(),
            Some(
                "no more retries: age limit 1m reached (attempt 4 fails 1m 10s after the first attempt)"
            )
        );
    }

    #[test]
    fn table_truncated_under_limits_says_more_follow() {
        let p = RetryPolicy {
            retry_limit: Some(100),
            ..ten_to_300()
        };
        assert_eq!(
            render(&p, 3, WEEK, false).lines().last(),
            Some("showing the first 3 retries; more follow (raise --count to see them)")
        );
    }

    #[test]
    fn table_ending_exactly_at_count_reports_the_limit() {
        let p = RetryPolicy {
            retry_limit: Some(3),
            ..ten_to_300()
        };
        assert_eq!(
            render(&p, 3, WEEK, false).lines().last(),
            Some("no more retries: retry limit 3 reached")
        );
    }

    #[test]
    fn table_of_a_policy_without_retries_says_so() {
        let p = RetryPolicy {
            retry_limit: Some(0),
            ..RetryPolicy::default()
        };
        assert_eq!(
            render(&p, 20, WEEK, false),
            "retry  delay  since first attempt\nno retries: retry limit 0 reached"
        );
    }

    #[test]
    fn pubsub_retries_until_its_retention_runs_out_not_forever() {
        let last_but_one = |flags: &[&str]| {
            let out = run(&args(flags)).unwrap();
            assert!(!out.contains("forever"), "{out}");
            out.lines().rev().nth(1).unwrap().to_owned()
        };
        assert_eq!(
            last_but_one(&["--preset", "pubsub"]),
            "showing the first 20 retries; more follow until the message retention of 7d runs \
             out: the last is retry 1012, 6d 23h 50m 30s after the first attempt, then the \
             delivery fails as retention_expired (raise --count to see them)"
        );
        assert!(
            last_but_one(&["--preset", "eventarc"])
                .contains("the message retention of 1d runs out"),
        );
        // 10, 30, 70, 150, 310s; retry 6 would start at 630s.
        assert_eq!(
            last_but_one(&["--preset", "pubsub", "--message-retention", "10m"]),
            "no more retries: the message retention of 10m runs out first (retry 6 would start \
             10m 30s after the first attempt); the delivery fails as retention_expired"
        );
        assert_eq!(
            run_error(&["--message-retention", "1m"]),
            "--message-retention: must be from 10m to 31d"
        );
    }

    #[test]
    fn run_prints_json_when_asked() {
        let out = run(&args(&["--backoff", "immediate", "--count", "1", "--json"])).unwrap();
        assert_eq!(
            out,
            "[\n  {\n    \"retry\": 1,\n    \"delay_seconds\": 0.0,\n    \"at_seconds\": 0.0\n  }\n]"
        );
    }

    #[test]
    fn run_says_whether_push_backoff_applies_as_the_preset_brings_it() {
        let last = |flags: &[&str]| {
            run(&args(flags))
                .unwrap()
                .lines()
                .last()
                .unwrap()
                .to_owned()
        };
        let off = "push backoff off: every retry starts at the time shown";
        assert_eq!(last(&[]), off);
        assert_eq!(last(&["--preset", "appengine"]), off);
        for preset in ["pubsub", "eventarc"] {
            let line = last(&["--preset", preset]);
            assert!(line.starts_with("push backoff on: "), "{preset}: {line}");
            assert!(
                line.contains("up to 60s for each push due before it"),
                "{line}"
            );
        }
        // Asked for, it overrides the preset.
        assert_eq!(last(&["--preset", "pubsub", "--push-backoff", "off"]), off);
        assert!(last(&["--push-backoff", "on"]).starts_with("push backoff on"));
        assert!(parse_error(&["--push-backoff", "maybe"]).contains("maybe"));
        // JSON stays the bare schedule.
        let json = run(&args(&["--preset", "pubsub", "--json", "--count", "1"])).unwrap();
        assert!(!json.contains("push backoff"), "{json}");
    }
}
