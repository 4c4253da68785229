//! Flow installation benchmark: 10,000 flows into a real ovs-vswitchd
//! (userspace datapath), through this crate
//!   - in one bundle (delete-all + 10,000 adds, committed atomically), and
//!   - as 10,000 single flow-mods followed by one barrier,
//!
//! against the reference measured in the same run: `ovs-ofctl add-flows`
//! with the same flows written to a file (with and without `--bundle`).
//!
//! Each case starts from an empty table, is repeated (median reported), and
//! is checked: afterwards the switch holds exactly the 10,000 flows.
//! Prints time, flows/s, peak RSS and the time ratio to the reference;
//! never fails on a figure.
//!
//! Run: `cargo run --release -p openflow --example flow_bench`
//! (`FLOW_BENCH_REPS=N`, default 5; `FLOW_BENCH_FLOWS=N`, default 10000).

use std::net::Ipv4Addr;
use std::process::Command;
use std::time::{Duration, Instant};

use openflow::{Action, Client, ClientConfig, Field, FlowMod, FlowStatsRequest, Match, Version};
use ovn_testbed::{OvsSwitch, SwitchOptions};

fn flows(n: usize) -> Vec<FlowMod> {
    (0..n)
        .map(|i| {
            let ip = Ipv4Addr::from(0x0a00_0000 + i as u32);
            let m = Match::new()
                .tcp()
                .reg(0, (i % 64) as u32)
                .ipv4_dst(ip)
                .tcp_dst(1024 + (i % 1000) as u16);
            FlowMod::add(m)
                .table((i % 4) as u8)
                .priority(100 + (i % 7) as u16)
                .cookie(0x5000 + i as u64)
                .actions(vec![
                    Action::set_field(Field::Reg(1), i as u128),
                    Action::resubmit(10),
                    Action::output(1 + (i % 8) as u32),
                ])
        })
        .collect()
}

fn vm_hwm_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .unwrap_or(0.0)
        / 1024.0
}

fn reset_hwm() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

struct Figure {
    time: Duration,
    rss_mib: f64,
}

fn median(mut v: Vec<Figure>) -> Figure {
    v.sort_by_key(|f| f.time);
    v.swap_remove(v.len() / 2)
}

async fn count(c: &Client) -> usize {
    c.dump_flows(FlowStatsRequest::all())
        .await
        .map(|f| f.len())
        .unwrap_or(usize::MAX)
}

/// Runs `ovs-ofctl -O OpenFlow15 ARGS`; returns its wall time and its own
/// peak RSS (from `wait4`, so only this child is counted).
fn ofctl(args: &[&str]) -> Figure {
    let start = Instant::now();
    // Reaped by wait4 below (std's wait would lose the rusage).
    #[allow(clippy::zombie_processes)]
    let child = Command::new("ovs-ofctl")
        .arg("-O")
        .arg("OpenFlow15")
        .args(args)
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .expect("run ovs-ofctl");
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value for wait4 to fill in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child; status and usage point to locals.
    let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let time = start.elapsed();
    if rc != pid || status != 0 {
        eprintln!("ovs-ofctl {args:?} failed (wait4 {rc}, status {status})");
    }
    Figure {
        time,
        rss_mib: usage.ru_maxrss as f64 / 1024.0,
    }
}

#[tokio::main]
async fn main() {
    let reps: usize = std::env::var("FLOW_BENCH_REPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5)
        .max(1);
    let n: usize = std::env::var("FLOW_BENCH_FLOWS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000);
    let dir = tempfile::Builder::new()
        .prefix("flow-bench-")
        .tempdir_in("/tmp")
        .expect("tempdir");
    let sw = OvsSwitch::start(dir.path(), SwitchOptions::new("bench")).expect("start ovs-vswitchd");
    let cfg = ClientConfig::new(&sw.mgmt_remote())
        .expect("remote")
        .versions(&[Version::V1_5])
        .request_timeout(Duration::from_secs(600));
    let (client, _events) = Client::connect(cfg).await.expect("connect");

    let all = flows(n);
    // The same flows in ovs-ofctl's syntax: this crate's printer output.
    let file = dir.path().join("flows.txt");
    let text: String = all
        .iter()
        .map(|f| f.to_flow_stats().to_ofctl(false) + "\n")
        .collect();
    std::fs::write(&file, text).expect("write flows file");
    drop(all);
    let baseline = vm_hwm_mib();
    let file = file.display().to_string();
    let remote = sw.mgmt_remote();

    println!("flow_bench: {n} flows (tcp,reg0,nw_dst,tp_dst -> set_field,resubmit,output), OpenFlow 1.5, {reps} runs each, median");
    let mut results: Vec<(&str, Figure)> = Vec::new();

    // Our bundle: delete-all + n adds, one atomic commit.
    let mut runs = Vec::new();
    for _ in 0..reps {
        client.flow_mod(FlowMod::delete_all()).await.expect("clear");
        let batch = flows(n);
        reset_hwm();
        let start = Instant::now();
        client.replace_flows(batch).await.expect("bundle");
        let time = start.elapsed();
        runs.push(Figure {
            time,
            rss_mib: vm_hwm_mib(),
        });
        assert_eq!(count(&client).await, n, "bundle did not install every flow");
    }
    results.push(("switchyard bundle", median(runs)));

    // Our single flow-mods plus one barrier.
    let mut runs = Vec::new();
    for _ in 0..reps {
        client.flow_mod(FlowMod::delete_all()).await.expect("clear");
        let batch = flows(n);
        reset_hwm();
        let start = Instant::now();
        client.flow_mods(batch).await.expect("flow-mods");
        let time = start.elapsed();
        runs.push(Figure {
            time,
            rss_mib: vm_hwm_mib(),
        });
        assert_eq!(
            count(&client).await,
            n,
            "flow-mods did not install every flow"
        );
    }
    results.push(("switchyard flow-mods", median(runs)));

    // Reference: ovs-ofctl with the same file.
    for (name, bundle) in [
        ("ovs-ofctl --bundle add-flows", true),
        ("ovs-ofctl add-flows", false),
    ] {
        let mut runs = Vec::new();
        for _ in 0..reps {
            client.flow_mod(FlowMod::delete_all()).await.expect("clear");
            let mut args = vec!["add-flows", remote.as_str(), file.as_str()];
            if bundle {
                args.insert(0, "--bundle");
            }
            runs.push(ofctl(&args));
            let got = count(&client).await;
            if got != n {
                eprintln!("{name}: switch holds {got} flows, expected {n}");
            }
        }
        results.push((name, median(runs)));
    }

    let reference = |name: &str| {
        results
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, f)| f.time.as_secs_f64())
            .unwrap_or(f64::NAN)
    };
    let ref_bundle = reference("ovs-ofctl --bundle add-flows");
    let ref_plain = reference("ovs-ofctl add-flows");
    for (name, f) in &results {
        let secs = f.time.as_secs_f64();
        let against = if name.contains("bundle") {
            ref_bundle
        } else {
            ref_plain
        };
        println!(
            "  {name:<30} {secs:>7.3} s  {:>9.0} flows/s  peak RSS {:>6.1} MiB  time/reference {:.2}",
            n as f64 / secs,
            f.rss_mib,
            secs / against,
        );
    }
    println!("  (reference rows run the C tool on a file of the same flows, printed by this crate; their RSS is ovs-ofctl's own;");
    println!("   this process had a peak RSS of {baseline:.1} MiB before the first case)");
}
