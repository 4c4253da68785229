//! Policies under change: a new pod's first packets, relabelled pods and
//! namespaces, an edited policy and a restarted controller, each watched
//! by a looping probe on a pair that must stay denied throughout.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use switchyard_controller::k8s::Kind;
use switchyard_e2e::netpol_matrix::{
    check, clear_policies, policy_port_groups, Looper, PodRef, Port, ALL_PORTS,
};
use switchyard_e2e::pyprobe::{python, EAGER};
use switchyard_e2e::util::wait_for;
use switchyard_e2e::Sandbox;

use super::cases::policy;

const T: Duration = Duration::from_secs(45);
/// How long a denied looping attempt waits for an answer.
const LOOP_WAIT: Duration = Duration::from_millis(200);

fn get(pods: &[PodRef], id: &str) -> PodRef {
    pods.iter().find(|p| p.id() == id).cloned().expect(id)
}

fn labels(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
    kv.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Starts a looper from `from` to `to`'s first address on TCP 80.
fn watch(from: &PodRef, to: &PodRef) -> Looper {
    Looper::start(&from.netns, Port::tcp(80), &to.ips[..1], LOOP_WAIT).expect("looper")
}

/// Stops a looper on a pair that had to stay denied; asserts it was never
/// answered and did probe.
fn assert_never_answered(l: Looper, what: &str) -> usize {
    let r = l.finish();
    assert!(r.rounds >= 3, "{what}: only {} probe rounds ran", r.rounds);
    assert!(
        r.answers.is_empty(),
        "{what}: a denied pair was answered {} times in {} rounds: {:?}",
        r.answers.len(),
        r.rounds,
        r.answers.iter().map(|(_, a)| a).collect::<Vec<_>>()
    );
    eprintln!("{what}: {} rounds, never answered", r.rounds);
    r.rounds
}

/// A pod selected by a deny-all policy is isolated from the instant its
/// interface exists: its own command connects out in a tight loop from its
/// first instant, and a pod probes the addresses it may get (the next ones
/// on its node: addresses are handed out next-fit) before it exists.
/// Neither ever gets through; once the policy is deleted both do, which
/// shows that the loops could see an escape.
pub fn first_packet(sb: &Sandbox, pods: &[PodRef], dir: &Path) {
    clear_policies(sb).expect("cleared");
    let before = policy_port_groups(sb).expect("groups").len();
    sb.apply_yaml(&policy(
        "x",
        "eager-deny",
        "{podSelector: {matchLabels: {pod: eager}}, policyTypes: [Ingress, Egress]}",
    ))
    .expect("policy");
    wait_for(T, "the policy's port group in NB", || {
        (policy_port_groups(sb).ok()?.len() > before).then_some(())
    })
    .expect("port group");
    // Candidates: the 16 addresses after the highest on node 0, per family.
    let mut candidates: Vec<IpAddr> = Vec::new();
    for v6 in [false, true] {
        let Some(max) = pods
            .iter()
            .filter(|p| p.node == 0)
            .filter_map(|p| p.ip_of(v6))
            .max()
        else {
            continue;
        };
        for k in 1..=16u128 {
            candidates.push(match max {
                IpAddr::V4(a) => IpAddr::V4((u32::from(a) + k as u32).into()),
                IpAddr::V6(a) => IpAddr::V6((u128::from(a) + k).into()),
            });
        }
    }
    let yb = get(pods, "y/b");
    let ya = get(pods, "y/a");
    let sweep = Looper::start(
        &ya.netns,
        Port::udp(80),
        &candidates,
        Duration::from_millis(50),
    )
    .expect("sweep");
    sweep.wait_rounds(3, T).expect("sweep running");
    let log = dir.join("eager.log");
    let node0 = sb.node_names()[0].clone();
    let pod = serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "eager", "namespace": "x", "labels": {"pod": "eager"}},
        "spec": {"nodeName": node0, "containers": [{"name": "eager", "image": "sandbox",
            "command": [python(), "-c", EAGER, log.display().to_string(), "x-eager",
                        yb.ips[0].to_string(), "80"]}]},
    });
    sb.apply_yaml(&pod.to_string()).expect("eager pod");
    sb.wait_pods_ready(Duration::from_secs(120)).expect("ready");
    let eager = PodRef::of(sb, "x", "eager").expect("eager");
    assert!(
        eager.ips.iter().all(|i| candidates.contains(i)),
        "the new pod got {:?}, outside the probed {candidates:?}",
        eager.ips
    );
    let read = || std::fs::read_to_string(&log).unwrap_or_default();
    let count = |s: &str, what: &str| s.lines().filter(|l| l.starts_with(what)).count();
    wait_for(T, "the pod's loop to try 50 times", || {
        (count(&read(), "out fail") >= 50).then_some(())
    })
    .expect("eager loop");
    sweep.wait_rounds(20, T).expect("sweep after the pod");
    let seen = read();
    let swept = sweep.report();
    assert_eq!(count(&seen, "out ok"), 0, "the new pod got out:\n{seen}");
    assert_eq!(count(&seen, "in "), 0, "the new pod was reached:\n{seen}");
    assert!(
        swept.answers.is_empty(),
        "the sweep was answered: {:?}",
        swept.answers
    );
    eprintln!(
        "first packet: {} outbound attempts from the pod's first instant, {} sweep rounds over {} addresses: no escape",
        count(&seen, "out fail"),
        swept.rounds,
        candidates.len()
    );
    // The control: with the policy gone, both loops get through.
    sb.delete("NetworkPolicy", "x", "eager-deny")
        .expect("delete");
    wait_for(T, "the pod to get out and be reached", || {
        let s = read();
        (count(&s, "out ok") > 0 && count(&s, "in udp") > 0).then_some(())
    })
    .expect("control: the loops see traffic once allowed");
    let ans = sweep.finish().answers;
    assert!(
        ans.iter().any(|(_, a)| a.ends_with("x-eager")),
        "control: the sweep never reached the pod: {ans:?}"
    );
    sb.delete("Pod", "x", "eager").expect("delete pod");
}

/// A pod moving from one isolating policy to another, and peers joining
/// by pod and namespace labels: the matrix follows, and a pair no label
/// ever allows is never answered meanwhile.
pub fn label_changes(sb: &Sandbox, pods: &[PodRef]) {
    clear_policies(sb).expect("cleared");
    sb.label(Kind::Pod, "y", "a", &labels(&[("role", "a")]), &[])
        .expect("label");
    sb.apply_yaml(
        &(policy(
            "y",
            "role-a",
            "{podSelector: {matchLabels: {role: a}}, ingress: [{from: [{namespaceSelector: {matchLabels: {ns: z}}}]}]}",
        ) + &policy(
            "y",
            "role-b",
            "{podSelector: {matchLabels: {role: b}}, ingress: [{from: [{namespaceSelector: {matchLabels: {ns: z}}}, {namespaceSelector: {}, podSelector: {matchLabels: {access: \"yes\"}}}, {namespaceSelector: {matchLabels: {team: blue}}}]}]}",
        )),
    )
    .expect("policies");
    let to_ya = |allowed: fn(&PodRef) -> bool| {
        move |p: &switchyard_e2e::netpol_matrix::Probe| p.to.id() != "y/a" || allowed(p.from)
    };
    check(pods, pods, &[Port::tcp(80)], &to_ya(|f| f.ns == "z"), T)
        .unwrap_or_else(|e| panic!("role=a: {e:#}"));
    let (xa, ya) = (get(pods, "x/a"), get(pods, "y/a"));
    let denied = watch(&xa, &ya);
    denied.wait_rounds(3, T).expect("looping");
    // The pod moves to the other policy.
    sb.label(Kind::Pod, "y", "a", &labels(&[("role", "b")]), &[])
        .expect("relabel pod");
    check(pods, pods, &[Port::tcp(80)], &to_ya(|f| f.ns == "z"), T)
        .unwrap_or_else(|e| panic!("role=b: {e:#}"));
    // A peer pod and a peer namespace join.
    sb.label(Kind::Pod, "x", "b", &labels(&[("access", "yes")]), &[])
        .expect("label x/b");
    sb.label(Kind::Namespace, "", "y", &labels(&[("team", "blue")]), &[])
        .expect("label ns y");
    check(
        pods,
        pods,
        &ALL_PORTS,
        &to_ya(|f| f.ns == "z" || f.ns == "y" || f.id() == "x/b"),
        T,
    )
    .unwrap_or_else(|e| panic!("peers joined: {e:#}"));
    // And leave again.
    sb.label(Kind::Namespace, "", "y", &BTreeMap::new(), &["team".into()])
        .expect("unlabel ns y");
    sb.label(Kind::Pod, "x", "b", &BTreeMap::new(), &["access".into()])
        .expect("unlabel x/b");
    check(pods, pods, &[Port::tcp(80)], &to_ya(|f| f.ns == "z"), T)
        .unwrap_or_else(|e| panic!("peers left: {e:#}"));
    assert_never_answered(denied, "x/a -> y/a through pod and namespace relabels");
    sb.label(Kind::Pod, "y", "a", &BTreeMap::new(), &["role".into()])
        .expect("unlabel y/a");
}

/// A policy edited to select other pods (the old and new selectors both
/// hold z/a) and allow other peers and ports: x/a -> z/a stays denied
/// throughout.
pub fn edit(sb: &Sandbox, pods: &[PodRef]) {
    clear_policies(sb).expect("cleared");
    sb.apply_yaml(&policy(
        "z",
        "edit-me",
        "{podSelector: {matchLabels: {pod: a}}, ingress: [{from: [{namespaceSelector: {matchLabels: {ns: y}}}], ports: [{port: 80}]}]}",
    ))
    .expect("v1");
    check(
        pods,
        pods,
        &ALL_PORTS,
        &|p| p.to.id() != "z/a" || (p.from.ns == "y" && p.port == Port::tcp(80)),
        T,
    )
    .unwrap_or_else(|e| panic!("edit v1: {e:#}"));
    let denied = watch(&get(pods, "x/a"), &get(pods, "z/a"));
    denied.wait_rounds(3, T).expect("looping");
    sb.apply_yaml(&policy(
        "z",
        "edit-me",
        "{podSelector: {matchExpressions: [{key: pod, operator: In, values: [a, b]}]}, ingress: [{from: [{namespaceSelector: {matchLabels: {ns: y}}}, {namespaceSelector: {matchLabels: {ns: x}}, podSelector: {matchLabels: {pod: c}}}], ports: [{port: 80}, {port: 81}]}]}",
    ))
    .expect("v2");
    check(
        pods,
        pods,
        &ALL_PORTS,
        &|p| {
            !(p.to.id() == "z/a" || p.to.id() == "z/b")
                || ((p.from.ns == "y" || p.from.id() == "x/c") && !p.port.udp)
        },
        T,
    )
    .unwrap_or_else(|e| panic!("edit v2: {e:#}"));
    assert_never_answered(denied, "x/a -> z/a through the edit");
}

/// The controller restarted while probes loop: the denied pair is never
/// answered, the allowed one answers again, and a restart on a converged
/// cluster writes nothing to NB. Uses the policy `edit` left.
pub fn restart(sb: &Sandbox, pods: &[PodRef]) {
    let za = get(pods, "z/a");
    let denied = watch(&get(pods, "x/a"), &za);
    let allowed = watch(&get(pods, "y/a"), &za);
    denied.wait_rounds(3, T).expect("looping");
    let t = Instant::now();
    sb.restart_controller().expect("restart");
    let m = sb.controller_metrics().expect("metrics");
    wait_for(T, "the restarted controller in sync", || {
        m.health.synced().then_some(())
    })
    .expect("synced");
    allowed
        .wait_answer_after(t, T)
        .expect("the allowed pair answers after the restart");
    denied.wait_rounds(10, T).expect("looping after restart");
    assert_eq!(
        m.nb_operations.get(),
        0,
        "NB operations on a converged restart"
    );
    assert_never_answered(denied, "x/a -> z/a through a controller restart");
    let a = allowed.finish();
    eprintln!(
        "restart: allowed pair answered {} times in {} rounds; 0 NB operations",
        a.answers.len(),
        a.rounds
    );
}
