//! Process-level helpers: fd limit, own CPU time, and sampling of the server process via /proc.

use std::time::Instant;

/// Raise RLIMIT_NOFILE's soft limit to the hard limit; returns (soft, hard) after.
pub fn raise_nofile() -> (u64, u64) {
    // SAFETY: `rlimit` is plain old data (all-zero is a valid value); getrlimit/setrlimit only read
    // or write the struct we pass by reference for the duration of the call.
    unsafe {
        let mut r: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) == 0 {
            if r.rlim_cur < r.rlim_max {
                let want = libc::rlimit { rlim_cur: r.rlim_max, rlim_max: r.rlim_max };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 {
                    r.rlim_cur = r.rlim_max;
                }
            }
            return (r.rlim_cur as u64, r.rlim_max as u64);
        }
    }
    (0, 0)
}

/// CPU seconds (user + system) this process has used.
pub fn self_cpu_s() -> f64 {
    // SAFETY: `rusage` is plain old data (all-zero is valid); getrusage writes only into it.
    unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut u);
        let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
        tv(u.ru_utime) + tv(u.ru_stime)
    }
}

fn clk_tck() -> f64 {
    // SAFETY: sysconf takes no pointers and has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// utime + stime of a process (all its threads), in seconds.
pub fn proc_cpu_s(pid: u32) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // fields after ")" start at field 3 (state); utime is field 14, stime 15
    let ut: f64 = f.get(11)?.parse().ok()?;
    let st: f64 = f.get(12)?.parse().ok()?;
    Some((ut + st) / clk_tck())
}

/// VmRSS of a process in KiB.
pub fn proc_rss_kb(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines().find(|l| l.starts_with("VmRSS:"))?.split_whitespace().nth(1)?.parse().ok()
}

/// Context switches of a process, summed over its live threads: (voluntary, involuntary).
/// Voluntary ones are waits (a thread blocked or parked); involuntary ones are preemptions.
/// A thread that exits between two samples takes its counts with it, so this is a lower bound.
pub fn proc_ctx_switches(pid: u32) -> Option<(u64, u64)> {
    let mut sum = (0, 0);
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let Ok(status) = std::fs::read_to_string(task.ok()?.path().join("status")) else { continue };
        let field = |k: &str| -> u64 {
            status.lines().find(|l| l.starts_with(k)).and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse().ok()).unwrap_or(0)
        };
        sum.0 += field("voluntary_ctxt_switches:");
        sum.1 += field("nonvoluntary_ctxt_switches:");
    }
    Some(sum)
}

/// CPU seconds the whole machine has spent busy (all CPUs: user, nice, system, irq, softirq and
/// steal from the first line of /proc/stat; guest time is already inside user).
pub fn machine_busy_s() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/stat").ok()?;
    let line = s.lines().next()?.strip_prefix("cpu ")?;
    let f: Vec<f64> = line.split_whitespace().map(|x| x.parse().unwrap_or(0.0)).collect();
    let get = |i: usize| f.get(i).copied().unwrap_or(0.0);
    // user nice system idle iowait irq softirq steal
    Some((get(0) + get(1) + get(2) + get(5) + get(6) + get(7)) / clk_tck())
}

/// One sample of (wall clock, own CPU, server CPU, server RSS). With several server PIDs, CPU and
/// RSS are sums over them (None if any of them cannot be read); `per_pid` keeps each one's CPU.
#[derive(Clone)]
pub struct Sample {
    pub at: Instant,
    pub self_cpu: f64,
    pub server_cpu: Option<f64>,
    pub server_rss_kb: Option<u64>,
    /// (voluntary, involuntary) context switches of the server processes.
    pub server_ctx_switches: Option<(u64, u64)>,
    pub per_pid: Vec<(u32, Option<f64>)>,
    pub aux: Vec<(u32, Option<f64>)>,
    pub machine_busy: Option<f64>,
}

pub fn sample(server_pids: &[u32], aux_pids: &[u32]) -> Sample {
    let at = Instant::now();
    let self_cpu = self_cpu_s();
    let per_pid: Vec<(u32, Option<f64>)> = server_pids.iter().map(|&p| (p, proc_cpu_s(p))).collect();
    let aux = aux_pids.iter().map(|&p| (p, proc_cpu_s(p))).collect();
    let sum_cpu = if per_pid.is_empty() { None } else { per_pid.iter().map(|(_, c)| *c).sum::<Option<f64>>() };
    let rss = if server_pids.is_empty() { None } else { server_pids.iter().map(|&p| proc_rss_kb(p)).sum::<Option<u64>>() };
    let ctx = if server_pids.is_empty() {
        None
    } else {
        server_pids.iter().map(|&p| proc_ctx_switches(p)).try_fold((0, 0), |acc, c| c.map(|(v, i)| (acc.0 + v, acc.1 + i)))
    };
    Sample { at, self_cpu, server_cpu: sum_cpu, server_rss_kb: rss, server_ctx_switches: ctx, per_pid, aux, machine_busy: machine_busy_s() }
}

fn cpu_delta(a: &[(u32, Option<f64>)], b: &[(u32, Option<f64>)], wall: f64) -> serde_json::Value {
    a.iter()
        .zip(b)
        .map(|((pid, x), (_, y))| match (x, y) {
            (Some(x), Some(y)) => serde_json::json!({ "pid": pid, "cpu_s": round3(y - x), "cpu_util": round3((y - x) / wall) }),
            _ => serde_json::json!({ "pid": pid, "cpu_s": null, "cpu_util": null }),
        })
        .collect()
}

/// JSON block describing a measurement window between two samples, for a given work count.
/// `server` sums every server PID; with more than one, `server.per_pid` splits the CPU; `aux`
/// (when `--aux-pid` was given) lists the other processes' CPU, not counted in `server`.
pub fn window_json(a: &Sample, b: &Sample, work: u64) -> serde_json::Value {
    let wall = (b.at - a.at).as_secs_f64();
    let lg_cpu = b.self_cpu - a.self_cpu;
    let server = match (a.server_cpu, b.server_cpu) {
        (Some(x), Some(y)) => {
            let cpu = y - x;
            let mut s = serde_json::json!({
                "cpu_s": round3(cpu),
                "cpu_util": round3(cpu / wall),
                "rss_kb_start": a.server_rss_kb,
                "rss_kb_end": b.server_rss_kb,
                "per_cpu_s": if cpu > 0.0 { (work as f64 / cpu).round() } else { 0.0 },
            });
            if let (Some((v0, i0)), Some((v1, i1))) = (a.server_ctx_switches, b.server_ctx_switches) {
                let per_s = |x: u64, y: u64| (y.saturating_sub(x) as f64 / wall).round();
                s["ctx_switches_per_s"] = serde_json::json!({ "voluntary": per_s(v0, v1), "involuntary": per_s(i0, i1) });
            }
            if a.per_pid.len() > 1 {
                s["per_pid"] = cpu_delta(&a.per_pid, &b.per_pid, wall);
            }
            s
        }
        _ => serde_json::Value::Null,
    };
    let mut w = serde_json::json!({
        "wall_s": round3(wall),
        "loadgen": { "cpu_s": round3(lg_cpu), "cpu_util": round3(lg_cpu / wall) },
        "server": server,
    });
    if !a.aux.is_empty() {
        w["aux"] = cpu_delta(&a.aux, &b.aux, wall);
    }
    // Every process on the machine, ours included: what is left after the server, aux and loadgen
    // CPU is other work that competed with the run.
    if let (Some(x), Some(y)) = (a.machine_busy, b.machine_busy) {
        w["machine"] = serde_json::json!({ "busy_cpu_s": round3(y - x), "busy_util": round3((y - x) / wall) });
    }
    w
}

pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn several_pids_are_summed() {
        let me = std::process::id();
        let a = sample(&[me, me], &[me]);
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        let b = sample(&[me, me], &[me]);
        let one = proc_cpu_s(me).unwrap();
        assert!(a.server_cpu.unwrap() <= 2.0 * one + 1e-9);
        assert!(b.server_rss_kb.unwrap() > 0);
        let w = window_json(&a, &b, 1000);
        assert_eq!(w["server"]["per_pid"].as_array().unwrap().len(), 2);
        assert_eq!(w["aux"].as_array().unwrap().len(), 1);
        assert_eq!(w["aux"][0]["pid"], me);
        assert!(w["server"]["ctx_switches_per_s"]["voluntary"].as_f64().is_some());
        let (v, _) = proc_ctx_switches(me).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(2)); // a wait is a voluntary switch
        assert!(proc_ctx_switches(me).unwrap().0 > v);
        assert!(w["machine"]["busy_cpu_s"].as_f64().unwrap() >= 0.0);
        // no server PID: no server block, as before
        let w = window_json(&sample(&[], &[]), &sample(&[], &[]), 1);
        assert!(w["server"].is_null() && w.get("aux").is_none() && w.get("machine").is_some());
        // an unreadable PID makes the sum unknown rather than wrong
        assert!(sample(&[me, u32::MAX], &[]).server_cpu.is_none());
    }
}
