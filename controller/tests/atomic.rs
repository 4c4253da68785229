//! Owners that one change touches commit in one transaction: read from the
//! northbound update stream, where each committed transaction arrives as
//! one update.

mod common;

use std::time::Duration;

use common::{annotation, eventually, Env};
use kube_memory::{namespace, node, pod};
use switchyard_api::names;

const T: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_pods_port_and_its_namespace_address_arrive_in_one_transaction() {
    let mut env = Env::new(&["10.244.0.0/16/24"]).await;
    // One owner per transaction unless owners must commit together: what
    // puts a port and its address in one transaction is the commit group,
    // not a large batch.
    env.config.max_batch_owners = 1;
    let c = &env.cluster;
    c.apply(namespace("team-a", &[("tier", "web")]));
    c.apply_node(node("n1"));
    c.apply_pod(pod("team-a", "first", "n1"));
    let running = env.start();
    eventually(T, "converged", || env.check()).await;

    let mut updates = env.replica.subscribe();
    for i in 0..5 {
        c.apply_pod(pod("team-a", &format!("p{i}"), "n1"));
    }
    eventually(T, "converged again", || env.check()).await;
    let set = names::namespace_address_set("team-a", false);
    let mut seen = 0;
    while let Ok(u) = updates.try_recv() {
        for ch in &u.changes {
            let Some(new) = &ch.new else { continue };
            if ch.table != "Logical_Switch_Port" || ch.old.is_some() {
                continue;
            }
            let Some(port) = new.str("name").filter(|n| n.starts_with("team-a_p")) else {
                continue;
            };
            let pod_name = port.trim_start_matches("team-a_");
            let ip = annotation(&c.pod("team-a", pod_name).unwrap()).unwrap().ips[0].addr();
            // The same update carries the address set gaining this address.
            let in_set = u.changes.iter().any(|s| {
                s.table == "Address_Set"
                    && s.new.as_ref().and_then(|r| r.str("name")) == Some(set.as_str())
                    && s.new
                        .as_ref()
                        .and_then(|r| r.get("addresses"))
                        .is_some_and(|v| v.strings().contains(&ip.to_string().as_str()))
            });
            assert!(
                in_set,
                "{port} was created without {ip} in {set} in the same transaction"
            );
            seen += 1;
        }
    }
    assert_eq!(seen, 5, "every new port was seen in the update stream");
    running.stop().await;
}
