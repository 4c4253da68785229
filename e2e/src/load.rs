//! CPU accounting for benchmarks on a shared machine: how busy the machine
//! was over a window, and who used it (the sandbox's daemons by program,
//! this process with the children it reaped, and everything else).
//!
//! Read from `/proc` (times in USER_HZ, 100 per second on Linux). A figure
//! taken while something outside the sandbox keeps the CPUs busy is not the
//! sandbox's own figure; this is how a report says so.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::Instant;

const HZ: f64 = 100.0;

/// One reading of the machine's and some processes' CPU times.
#[derive(Clone, Debug)]
pub struct CpuSample {
    at: Instant,
    /// Busy and total jiffies over all CPUs (`/proc/stat`).
    busy: u64,
    total: u64,
    /// pid -> (program, utime + stime).
    procs: HashMap<u32, (String, u64)>,
    /// This process: own time plus the reaped children's.
    own: u64,
}

/// CPU used over a window, in cores (1.0 = one CPU busy all the time).
#[derive(Clone, Debug)]
pub struct CpuUse {
    pub seconds: f64,
    pub cpus: usize,
    /// Busy cores over the window, whoever used them.
    pub machine: f64,
    /// The watched processes by program name.
    pub by_program: BTreeMap<String, f64>,
    /// This process with the children it reaped.
    pub own: f64,
    /// Busy minus the above: other work on the machine.
    pub other: f64,
}

fn proc_times(pid: u32) -> Option<(String, u64, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text[open + 1..close].to_string();
    let rest: Vec<&str> = text[close + 2..].split_whitespace().collect();
    // After "pid (comm) ": state is field 3, utime 14, stime 15, cutime 16,
    // cstime 17 (1-based over the whole line).
    let f = |i: usize| -> u64 { rest.get(i - 3).and_then(|v| v.parse().ok()).unwrap_or(0) };
    Some((comm, f(14) + f(15), f(16) + f(17)))
}

fn machine_times() -> (u64, u64, usize) {
    let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let mut cpus = 0;
    let mut out = (0, 0);
    for line in text.lines() {
        if line.starts_with("cpu") && !line.starts_with("cpu ") {
            cpus += 1;
        }
        if let Some(rest) = line.strip_prefix("cpu ") {
            let v: Vec<u64> = rest
                .split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect();
            let total: u64 = v.iter().take(8).sum();
            let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
            out = (total - idle, total);
        }
    }
    (out.0, out.1, cpus.max(1))
}

/// Pids from the `*.pid` files under `dir` (the sandbox's daemons write
/// theirs into its state directory), two levels deep.
pub fn pids_under(dir: &Path) -> Vec<u32> {
    fn walk(dir: &Path, depth: usize, out: &mut Vec<u32>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let path = e.path();
            if path.is_dir() && depth > 0 {
                walk(&path, depth - 1, out);
            } else if path.extension().is_some_and(|x| x == "pid") {
                if let Some(pid) = std::fs::read_to_string(&path)
                    .ok()
                    .and_then(|t| t.trim().parse().ok())
                {
                    out.push(pid);
                }
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, 2, &mut out);
    out.sort();
    out.dedup();
    out
}

impl CpuSample {
    /// Reads the machine and `pids` now.
    pub fn take(pids: &[u32]) -> Self {
        let (busy, total, _) = machine_times();
        let procs = pids
            .iter()
            .filter_map(|p| proc_times(*p).map(|(c, t, _)| (*p, (c, t))))
            .collect();
        let own = proc_times(std::process::id())
            .map(|(_, t, c)| t + c)
            .unwrap_or(0);
        CpuSample {
            at: Instant::now(),
            busy,
            total,
            procs,
            own,
        }
    }

    /// What was used between `self` (earlier) and `later`.
    pub fn until(&self, later: &CpuSample) -> CpuUse {
        let (_, _, cpus) = machine_times();
        let seconds = later.at.duration_since(self.at).as_secs_f64().max(1e-9);
        let cores = |jiffies: u64| jiffies as f64 / HZ / seconds;
        let mut by_program: BTreeMap<String, f64> = BTreeMap::new();
        let mut watched = 0;
        for (pid, (comm, t)) in &later.procs {
            let before = self.procs.get(pid).map(|(_, t)| *t).unwrap_or(0);
            let used = t.saturating_sub(before);
            watched += used;
            *by_program.entry(comm.clone()).or_default() += cores(used);
        }
        let own = later.own.saturating_sub(self.own);
        // Busy share of all CPU time, in cores.
        let total = later.total.saturating_sub(self.total).max(1);
        let machine = later.busy.saturating_sub(self.busy) as f64 / total as f64 * cpus as f64;
        let other = (machine - cores(watched) - cores(own)).max(0.0);
        CpuUse {
            seconds,
            cpus,
            machine,
            by_program,
            own: cores(own),
            other,
        }
    }
}

impl std::fmt::Display for CpuUse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "CPU over {:.1} s: machine {:.2} of {} cores busy",
            self.seconds, self.machine, self.cpus
        )?;
        for (program, c) in &self.by_program {
            writeln!(f, "  {program:<28} {c:5.2} cores")?;
        }
        writeln!(
            f,
            "  {:<28} {:5.2} cores",
            "this process (+ reaped)", self.own
        )?;
        write!(
            f,
            "  {:<28} {:5.2} cores (outside the sandbox)",
            "other", self.other
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_times() {
        let a = CpuSample::take(&[std::process::id()]);
        let mut x = 0u64;
        for i in 0..3_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        assert!(x != 1);
        let b = CpuSample::take(&[std::process::id()]);
        let u = a.until(&b);
        assert!(u.cpus >= 1);
        assert!(u.machine >= 0.0 && u.other >= 0.0);
        assert_eq!(u.by_program.len(), 1);
    }
}
