//! Clustered database: formation and leader failover.

use std::process::Command;

use ovn_testbed::{ClusteredDb, Duration, Schema};

#[test]
fn three_members_elect_a_new_leader_after_the_leader_dies() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = ClusteredDb::start(dir.path(), Schema::Northbound, 3).unwrap();
    assert_eq!(cluster.len(), 3);
    assert_eq!(cluster.remotes().split(',').count(), 3);

    let leader = cluster.leader().expect("a leader");
    // ovn-nbctl is leader-only by default and, as a one-shot client, gives
    // up ("database connection failed ()") when it lands on a follower.
    // Followers forward writes to the leader, so any member will do.
    let nbctl = |remote: &str, args: &[&str]| {
        let out = Command::new("ovn-nbctl")
            .arg(format!("--db={remote}"))
            .args(["--timeout=20", "--no-leader-only"])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "ovn-nbctl {args:?} via {remote}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    nbctl(&cluster.remotes(), &["ls-add", "before"]);

    cluster.kill(leader);
    let new_leader = cluster.wait_leader(Duration::from_secs(20)).unwrap();
    assert_ne!(new_leader, leader);

    let survivor = (0..3).find(|&i| i != leader).unwrap();
    nbctl(&cluster.member_remote(survivor), &["ls-add", "after"]);

    cluster.restart(leader).unwrap();
    // The restarted member catches up with what was written meanwhile.
    ovn_testbed::wait_until(
        Duration::from_secs(20),
        "restarted member to catch up",
        || {
            let out = Command::new("ovn-nbctl")
                .arg(format!("--db={}", cluster.member_remote(leader)))
                .args(["--timeout=5", "--no-leader-only", "ls-list"])
                .output()
                .ok()?;
            String::from_utf8_lossy(&out.stdout)
                .contains("after")
                .then_some(())
        },
    )
    .unwrap();
}
