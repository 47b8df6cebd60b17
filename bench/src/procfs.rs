//! What `/proc` says of a process: CPU time (utime + stime) and resident
//! memory (`VmHWM`, `VmRSS`). Linux only, as the benchmarks are.

use std::fs;

use anyhow::{Context, bail};

/// Clock ticks per second of `/proc/<pid>/stat`'s times: `USER_HZ`, which
/// the kernel fixes at 100 for user space on every architecture Linux
/// runs this on.
const TICKS_PER_SECOND: f64 = 100.0;

/// A process: `self` or a pid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Process {
    This,
    Pid(u32),
}

impl Process {
    fn path(self, file: &str) -> String {
        match self {
            Process::This => format!("/proc/self/{file}"),
            Process::Pid(pid) => format!("/proc/{pid}/{file}"),
        }
    }

    /// User + system CPU seconds of every thread of the process so far.
    pub fn cpu_seconds(self) -> anyhow::Result<f64> {
        let path = self.path("stat");
        let stat = fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
        parse_cpu_seconds(&stat).with_context(|| format!("parsing {path}"))
    }

    /// The peak resident set (`VmHWM`), KiB.
    pub fn peak_rss_kib(self) -> anyhow::Result<u64> {
        self.status_kib("VmHWM")
    }

    /// The resident set now (`VmRSS`), KiB.
    pub fn rss_kib(self) -> anyhow::Result<u64> {
        self.status_kib("VmRSS")
    }

    /// The anonymous part of the resident set now (`RssAnon`: heap and
    /// stacks, not the index's mapped files), KiB.
    pub fn rss_anon_kib(self) -> anyhow::Result<u64> {
        self.status_kib("RssAnon")
    }

    fn status_kib(self, key: &str) -> anyhow::Result<u64> {
        let path = self.path("status");
        let status = fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
        status_value_kib(&status, key).with_context(|| format!("no {key} in {path}"))
    }

    /// Resets the peak resident set to the current one (writes 5 to
    /// `clear_refs`), so that `VmHWM` covers what follows only.
    pub fn reset_peak_rss(self) -> anyhow::Result<()> {
        let path = self.path("clear_refs");
        fs::write(&path, "5").with_context(|| format!("writing {path}"))
    }
}

/// utime + stime, fields 14 and 15 of `/proc/<pid>/stat`, in seconds. The
/// command name (field 2) is in parentheses and may hold spaces, so the
/// fields are counted after its closing parenthesis.
fn parse_cpu_seconds(stat: &str) -> anyhow::Result<f64> {
    let Some(close) = stat.rfind(')') else {
        bail!("no command name");
    };
    // After ")": field 3 (state) is the first.
    let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
    let (Some(utime), Some(stime)) = (fields.get(14 - 3), fields.get(15 - 3)) else {
        bail!("too few fields");
    };
    let ticks = utime.parse::<u64>()? + stime.parse::<u64>()?;
    Ok(ticks as f64 / TICKS_PER_SECOND)
}

fn status_value_kib(status: &str, key: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        let rest = line.strip_prefix(key)?.strip_prefix(':')?;
        rest.trim().trim_end_matches("kB").trim().parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_times_are_read_after_the_command_name() {
        let stat = "4242 (tokio (rt) x) S 1 4242 4242 0 -1 4194560 9000 0 0 0 250 125 0 0 20 0 8 0 100 0 0";
        assert_eq!(parse_cpu_seconds(stat).unwrap(), 3.75);
        assert!(parse_cpu_seconds("1 (x) S 1").is_err());
    }

    #[test]
    fn status_values_are_kib() {
        let status = "Name:\tcauseway\nVmHWM:\t  123456 kB\nVmRSS:\t   99 kB\n";
        assert_eq!(status_value_kib(status, "VmHWM"), Some(123_456));
        assert_eq!(status_value_kib(status, "VmRSS"), Some(99));
        assert_eq!(status_value_kib(status, "VmSwap"), None);
    }

    #[test]
    fn this_process_has_cpu_time_and_memory() {
        assert!(Process::This.cpu_seconds().unwrap() >= 0.0);
        assert!(Process::This.peak_rss_kib().unwrap() > 0);
        assert!(Process::This.rss_kib().unwrap() > 0);
    }
}
