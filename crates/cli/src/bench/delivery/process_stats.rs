//! A process's CPU time and resident memory (now and at its peak), read from
//! `/proc` (Linux only; elsewhere the figures are unavailable and the report
//! says so).

use std::time::Duration;

/// What `/proc/PID/stat` and `/proc/PID/status` say about one process.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ProcessSample {
    /// User plus system CPU time of all its threads so far.
    pub cpu: Duration,
    /// Peak resident set size (`VmHWM`) in bytes.
    pub peak_rss: u64,
    /// Resident set size now (`VmRSS`) in bytes.
    pub rss: u64,
}

/// `pid`'s CPU time and peak RSS, or why they cannot be read.
#[cfg(target_os = "linux")]
pub fn sample(pid: u32) -> anyhow::Result<ProcessSample> {
    use anyhow::Context;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("cannot read /proc/{pid}/stat"))?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("cannot read /proc/{pid}/status"))?;
    let ticks = cpu_ticks(&stat).with_context(|| format!("/proc/{pid}/stat is not as expected"))?;
    let peak_rss =
        peak_rss(&status).with_context(|| format!("/proc/{pid}/status has no VmHWM line"))?;
    let rss = status_kib(&status, "VmRSS")
        .with_context(|| format!("/proc/{pid}/status has no VmRSS line"))?;
    Ok(ProcessSample {
        cpu: ticks_to_duration(ticks, rustix::param::clock_ticks_per_second()),
        peak_rss,
        rss,
    })
}

#[cfg(not(target_os = "linux"))]
pub fn sample(_pid: u32) -> anyhow::Result<ProcessSample> {
    anyhow::bail!("CPU time and peak RSS are read from /proc, which only Linux has")
}

/// This process's own figures (the generator and the sink).
pub fn sample_self() -> anyhow::Result<ProcessSample> {
    sample(std::process::id())
}

/// utime + stime, in clock ticks, from a `/proc/PID/stat` line.
pub fn cpu_ticks(stat: &str) -> anyhow::Result<u64> {
    let [utime, stime, _, _] = times(stat)?;
    Ok(utime + stime)
}

/// utime, stime, cutime and cstime (the last two: of children it waited
/// for), in clock ticks. The command name (field 2) is in parentheses and
/// may itself hold spaces and parentheses, so fields are counted from the
/// last `)`.
fn times(stat: &str) -> anyhow::Result<[u64; 4]> {
    let after_name = stat
        .rfind(')')
        .map(|end| &stat[end + 1..])
        .ok_or_else(|| anyhow::anyhow!("no command name in parentheses"))?;
    // After the name: state (field 3), ..., utime (field 14) to cstime (17).
    let mut fields = after_name.split_whitespace().skip(11);
    let mut next = |name: &str| -> anyhow::Result<u64> {
        let text = fields
            .next()
            .ok_or_else(|| anyhow::anyhow!("no {name} field"))?;
        text.parse()
            .map_err(|err| anyhow::anyhow!("{name} {text:?}: {err}"))
    };
    Ok([
        next("utime")?,
        next("stime")?,
        next("cutime")?,
        next("cstime")?,
    ])
}

/// The command name of a `/proc/PID/stat` line.
fn command_name(stat: &str) -> Option<&str> {
    let start = stat.find('(')?;
    let end = stat.rfind(')')?;
    stat.get(start + 1..end)
}

/// The CPU time of every process on this machine named `name`, with that of
/// their children that ended (a server's finished workers): how a local
/// PostgreSQL's work is counted, all its databases together.
#[cfg(target_os = "linux")]
pub fn cpu_of_processes_named(name: &str) -> anyhow::Result<Duration> {
    use anyhow::Context;
    let mut ticks = 0;
    let mut found = false;
    for entry in std::fs::read_dir("/proc").context("cannot list /proc")? {
        let Ok(entry) = entry else { continue };
        let file_name = entry.file_name();
        let Some(pid) = file_name
            .to_str()
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        // A process may end between the listing and the read.
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        if command_name(&stat) == Some(name) {
            found = true;
            ticks += times(&stat)?.iter().sum::<u64>();
        }
    }
    anyhow::ensure!(found, "no process named {name:?} on this machine");
    Ok(ticks_to_duration(
        ticks,
        rustix::param::clock_ticks_per_second(),
    ))
}

#[cfg(not(target_os = "linux"))]
pub fn cpu_of_processes_named(_name: &str) -> anyhow::Result<Duration> {
    anyhow::bail!("CPU time is read from /proc, which only Linux has")
}

/// `VmHWM` of a `/proc/PID/status` text, in bytes.
pub fn peak_rss(status: &str) -> anyhow::Result<u64> {
    status_kib(status, "VmHWM")
}

/// A `NAME:  1234 kB` line of a `/proc/PID/status` text, in bytes.
fn status_kib(status: &str, name: &str) -> anyhow::Result<u64> {
    let line = status
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
        .ok_or_else(|| anyhow::anyhow!("no {name} line"))?;
    let kib = line
        .trim()
        .strip_suffix("kB")
        .map(str::trim)
        .ok_or_else(|| anyhow::anyhow!("{name} {line:?} is not in kB"))?;
    let kib: u64 = kib
        .parse()
        .map_err(|err| anyhow::anyhow!("{name} {line:?}: {err}"))?;
    Ok(kib * 1024)
}

fn ticks_to_duration(ticks: u64, per_second: u64) -> Duration {
    if per_second == 0 {
        return Duration::ZERO;
    }
    Duration::from_secs(ticks / per_second)
        + Duration::from_nanos((ticks % per_second) * 1_000_000_000 / per_second)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_add_utime_and_stime_past_an_awkward_name() {
        let stat = "4242 (red) drive (x)) S 1 4242 4242 0 -1 4194560 900 0 0 0 \
                    1234 56 0 0 20 0 9 0 1000 20000000 3000 18446744073709551615";
        assert_eq!(cpu_ticks(stat).unwrap(), 1234 + 56);
        assert!(cpu_ticks("4242 redrive S 1").is_err());
        assert!(cpu_ticks("4242 (redrive) S 1 2").is_err());
    }

    #[test]
    fn times_include_the_children_waited_for() {
        let stat = "4242 (postgres) S 1 4242 4242 0 -1 4194560 900 0 0 0 \
                    1234 56 7 8 20 0 9 0 1000 20000000 3000 18446744073709551615";
        assert_eq!(times(stat).unwrap(), [1234, 56, 7, 8]);
        assert_eq!(command_name(stat), Some("postgres"));
        assert_eq!(command_name("1 (a (b)) S"), Some("a (b)"));
        assert!(times("4242 (postgres) S 1 2 3 4 5 6 7 8 9 10 11 12 13").is_err());
    }

    #[test]
    fn peak_rss_is_vmhwm_in_bytes() {
        let status =
            "Name:\tredrive\nVmPeak:\t  900000 kB\nVmHWM:\t   45120 kB\nVmRSS:\t 40000 kB\n";
        assert_eq!(peak_rss(status).unwrap(), 45_120 * 1024);
        assert_eq!(status_kib(status, "VmRSS").unwrap(), 40_000 * 1024);
        assert!(peak_rss("Name:\tredrive\n").is_err());
    }

    #[test]
    fn ticks_become_durations() {
        assert_eq!(ticks_to_duration(250, 100), Duration::from_millis(2500));
        assert_eq!(ticks_to_duration(3, 1000), Duration::from_millis(3));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_can_be_sampled() {
        // Burn a little CPU so the figure cannot be zero at 100 ticks/s.
        let started = std::time::Instant::now();
        let mut x = 0u64;
        while started.elapsed() < Duration::from_millis(60) {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        let sample = sample_self().unwrap();
        assert!(sample.cpu > Duration::ZERO);
        assert!(sample.peak_rss > 0);
        assert!(sample.rss > 0 && sample.rss <= sample.peak_rss);
    }
}
