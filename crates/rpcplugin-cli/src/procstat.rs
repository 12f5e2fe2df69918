//! CPU time and resident memory of a process, read from Linux's `/proc`. Parsing is
//! separate from reading so that it is tested on known text.

use std::time::Duration;

/// One reading of a process's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Sample {
    /// User plus system CPU time of all its threads, in clock ticks.
    pub(crate) cpu_ticks: u64,
    /// Resident set size in kB (`VmRSS`).
    pub(crate) rss_kb: u64,
}

/// Which process to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    /// This process.
    Me,
    /// Another process by pid.
    Pid(u32),
}

impl Target {
    fn dir(self) -> String {
        match self {
            Target::Me => "/proc/self".to_owned(),
            Target::Pid(pid) => format!("/proc/{pid}"),
        }
    }
}

/// Reads `/proc/<pid>/stat` and `/proc/<pid>/status`; `None` if the process is gone
/// or the files are not what Linux writes.
pub(crate) fn sample(target: Target) -> Option<Sample> {
    let dir = target.dir();
    let stat = std::fs::read_to_string(format!("{dir}/stat")).ok()?;
    let status = std::fs::read_to_string(format!("{dir}/status")).ok()?;
    Some(Sample {
        cpu_ticks: cpu_ticks(&stat)?,
        rss_kb: rss_kb(&status)?,
    })
}

/// `utime + stime` from the text of `/proc/<pid>/stat`.
pub(crate) fn cpu_ticks(stat: &str) -> Option<u64> {
    // The command name is in parentheses and may hold spaces and ')': the fields
    // after the last ')' start with the state (field 3); utime and stime are
    // fields 14 and 15.
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// `VmRSS` in kB from the text of `/proc/<pid>/status`.
pub(crate) fn rss_kb(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let mut words = line["VmRSS:".len()..].split_whitespace();
    let value = words.next()?.parse().ok()?;
    (words.next() == Some("kB")).then_some(value)
}

/// CPU ticks the whole machine spent busy (all cores), or lost to the hypervisor
/// (steal), from the text of `/proc/stat`.
pub(crate) fn machine_busy_ticks(stat: &str) -> Option<u64> {
    // cpu  user nice system idle iowait irq softirq steal guest guest_nice; guest
    // time is already inside user and nice.
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    let [user, nice, system, _idle, _iowait, irq, softirq, steal, ..] = fields[..] else {
        return None;
    };
    Some(user + nice + system + irq + softirq + steal)
}

/// Reads [`machine_busy_ticks`] from `/proc/stat`.
pub(crate) fn machine_sample() -> Option<u64> {
    machine_busy_ticks(&std::fs::read_to_string("/proc/stat").ok()?)
}

/// Clock ticks per second (`getconf CLK_TCK`), the unit of [`Sample::cpu_ticks`].
pub(crate) fn ticks_per_second() -> u64 {
    match nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK) {
        Ok(Some(ticks)) if ticks > 0 => ticks.unsigned_abs(),
        // Linux has reported 100 on every architecture for decades.
        _ => 100,
    }
}

/// CPU use between two samples over `wall` time, in percent of one core.
pub(crate) fn cpu_percent(
    start: Sample,
    end: Sample,
    ticks_per_second: u64,
    wall: Duration,
) -> f64 {
    ticks_percent(start.cpu_ticks, end.cpu_ticks, ticks_per_second, wall)
}

/// Ticks between two counter readings over `wall` time, in percent of one core.
pub(crate) fn ticks_percent(start: u64, end: u64, ticks_per_second: u64, wall: Duration) -> f64 {
    let wall = wall.as_secs_f64();
    if wall <= 0.0 || ticks_per_second == 0 {
        return 0.0;
    }
    end.saturating_sub(start) as f64 / ticks_per_second as f64 / wall * 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    // Captured from a kv_plugin; its name was changed to hold spaces and a ')'.
    const STAT: &str = "4242 (kv plugin) x) S 4200 4242 4200 0 -1 4194304 1200 0 0 0 \
        250 75 0 0 20 0 3 0 123456 12345678 1500 18446744073709551615 1 1 0 0 0 0 0 \
        4096 0 0 0 0 17 1 0 0 0 0 0\n";

    const STATUS: &str = "Name:\tkv_plugin\nUmask:\t0022\nState:\tS (sleeping)\n\
        VmPeak:\t  123456 kB\nVmHWM:\t    7000 kB\nVmRSS:\t    6012 kB\nRssAnon:\t    2000 kB\n";

    #[test]
    fn reads_utime_plus_stime() {
        assert_eq!(cpu_ticks(STAT), Some(325));
        assert_eq!(cpu_ticks("4242 (x) S 1 2"), None);
        assert_eq!(cpu_ticks("garbage"), None);
    }

    #[test]
    fn reads_vm_rss() {
        assert_eq!(rss_kb(STATUS), Some(6012));
        assert_eq!(rss_kb("Name:\tkthreadd\n"), None);
    }

    #[test]
    fn reads_machine_busy_time() {
        let stat = "cpu  100 5 50 9000 20 3 2 40 0 0\ncpu0 50 2 25 4500 10 1 1 20 0 0\nintr 1 2\n";
        assert_eq!(machine_busy_ticks(stat), Some(200));
        assert_eq!(machine_busy_ticks("cpu  1 2 3\n"), None);
        assert_eq!(machine_busy_ticks("intr 1\n"), None);
        assert!(machine_sample().is_some());
    }

    #[test]
    fn reads_this_process() {
        let me = sample(Target::Me).expect("/proc/self is readable on Linux");
        assert!(me.rss_kb > 0);
        assert!(ticks_per_second() > 0);
        assert_eq!(sample(Target::Pid(u32::MAX)), None);
    }

    #[test]
    fn cpu_percent_is_ticks_over_wall_time() {
        let start = Sample {
            cpu_ticks: 100,
            rss_kb: 1,
        };
        let end = Sample {
            cpu_ticks: 250,
            rss_kb: 1,
        };
        // 150 ticks at 100 Hz = 1.5 s of CPU in 2 s.
        let pct = cpu_percent(start, end, 100, Duration::from_secs(2));
        assert!((pct - 75.0).abs() < 1e-9, "{pct}");
        assert_eq!(cpu_percent(start, end, 100, Duration::ZERO), 0.0);
    }
}
