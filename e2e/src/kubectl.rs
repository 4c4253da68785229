//! What `switchyard-sandbox get` prints, shaped like kubectl's output so
//! that what a user learns here carries over to a real cluster: the
//! default columns of `kubectl get` per kind, `-o json` as a `List` of
//! whole objects, `-o yaml` the same in YAML.

use serde_json::{json, Value};
use switchyard_controller::k8s::Kind;

/// Output formats `get` accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    Table { wide: bool },
    Json,
    Yaml,
}

impl std::str::FromStr for Output {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Output> {
        Ok(match s {
            "wide" => Output::Table { wide: true },
            "json" => Output::Json,
            "yaml" => Output::Yaml,
            other => anyhow::bail!("-o {other}: the sandbox prints wide, json or yaml"),
        })
    }
}

/// `kubectl get -o json` of several objects: a `v1` `List`.
pub fn list(items: Vec<Value>) -> Value {
    json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": ""}, "items": items})
}

/// The table `kubectl get KIND` prints for objects of `kind`, with a
/// NAMESPACE column when several namespaces are shown (`-A`).
pub fn table(kind: Kind, objs: &[Value], all_namespaces: bool, wide: bool) -> String {
    let (mut head, rows): (Vec<&str>, Vec<Vec<String>>) = match kind {
        Kind::Service => (
            vec!["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)"],
            objs.iter().map(service_row).collect(),
        ),
        Kind::EndpointSlice => (
            vec!["NAME", "ADDRESSTYPE", "PORTS", "ENDPOINTS"],
            objs.iter().map(slice_row).collect(),
        ),
        Kind::NetworkPolicy => (
            vec!["NAME", "POD-SELECTOR"],
            objs.iter()
                .map(|o| vec![name(o), selector(&o["spec"]["podSelector"])])
                .collect(),
        ),
        Kind::Namespace => (
            vec!["NAME", "STATUS"],
            objs.iter()
                .map(|o| {
                    let phase = o["status"]["phase"].as_str().unwrap_or("Active");
                    vec![name(o), phase.to_string()]
                })
                .collect(),
        ),
        Kind::AdminNetworkPolicy => (
            vec!["NAME", "PRIORITY"],
            objs.iter()
                .map(|o| vec![name(o), o["spec"]["priority"].to_string()])
                .collect(),
        ),
        _ => (vec!["NAME"], objs.iter().map(|o| vec![name(o)]).collect()),
    };
    let mut rows = rows;
    if wide && kind == Kind::Service {
        head.push("SELECTOR");
        for (r, o) in rows.iter_mut().zip(objs) {
            r.push(match o["spec"]["selector"].as_object() {
                Some(m) if !m.is_empty() => m
                    .iter()
                    .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                    .collect::<Vec<_>>()
                    .join(","),
                _ => "<none>".into(),
            });
        }
    }
    if all_namespaces && kind.namespaced() {
        head.insert(0, "NAMESPACE");
        for (r, o) in rows.iter_mut().zip(objs) {
            let ns = o["metadata"]["namespace"].as_str().unwrap_or_default();
            r.insert(0, ns.to_string());
        }
    }
    let mut all = vec![head.iter().map(|s| s.to_string()).collect::<Vec<_>>()];
    all.extend(rows);
    columns(&all)
}

/// Rows aligned in columns three spaces apart, as kubectl aligns them.
pub fn columns(rows: &[Vec<String>]) -> String {
    let n = rows.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..n)
        .map(|c| {
            rows.iter()
                .map(|r| r.get(c).map_or(0, String::len))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(v, w)| format!("{v:<w$}"))
            .collect();
        out.push_str(line.join("   ").trim_end());
        out.push('\n');
    }
    out
}

fn name(o: &Value) -> String {
    o["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn none_if_empty(v: Vec<String>) -> String {
    if v.is_empty() {
        "<none>".into()
    } else {
        v.join(",")
    }
}

fn service_row(o: &Value) -> Vec<String> {
    let spec = &o["spec"];
    let type_ = spec["type"].as_str().unwrap_or("ClusterIP").to_string();
    let cluster_ip = match spec["clusterIPs"].as_array() {
        Some(ips) if !ips.is_empty() => ips
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(","),
        _ => spec["clusterIP"].as_str().unwrap_or("<none>").to_string(),
    };
    let mut external: Vec<String> = o["status"]["loadBalancer"]["ingress"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i["ip"].as_str().map(str::to_string))
        .collect();
    external.extend(
        spec["externalIPs"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|i| i.as_str().map(str::to_string)),
    );
    let external = if external.is_empty() && type_ == "LoadBalancer" {
        "<pending>".into()
    } else if type_ == "ExternalName" {
        spec["externalName"]
            .as_str()
            .unwrap_or("<none>")
            .to_string()
    } else {
        none_if_empty(external)
    };
    let ports = spec["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            let proto = p["protocol"].as_str().unwrap_or("TCP");
            match p["nodePort"].as_i64() {
                Some(np) => format!("{}:{np}/{proto}", p["port"]),
                None => format!("{}/{proto}", p["port"]),
            }
        })
        .collect();
    vec![name(o), type_, cluster_ip, external, none_if_empty(ports)]
}

fn slice_row(o: &Value) -> Vec<String> {
    let ports = o["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| p["port"].to_string())
        .collect();
    let addrs: Vec<String> = o["endpoints"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|e| e["addresses"].as_array().cloned().unwrap_or_default())
        .filter_map(|a| a.as_str().map(str::to_string))
        .collect();
    // kubectl shows three and counts the rest.
    let endpoints = if addrs.len() > 3 {
        format!("{} + {} more...", addrs[..3].join(","), addrs.len() - 3)
    } else {
        none_if_empty(addrs)
    };
    vec![
        name(o),
        o["addressType"].as_str().unwrap_or_default().to_string(),
        none_if_empty(ports),
        endpoints,
    ]
}

/// A label selector as kubectl prints it (`app=web,tier in (a,b)`).
fn selector(sel: &Value) -> String {
    let mut parts: Vec<String> = sel["matchLabels"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
        .collect();
    for e in sel["matchExpressions"].as_array().into_iter().flatten() {
        let key = e["key"].as_str().unwrap_or_default();
        let values: Vec<&str> = e["values"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        parts.push(match e["operator"].as_str().unwrap_or_default() {
            "In" => format!("{key} in ({})", values.join(",")),
            "NotIn" => format!("{key} notin ({})", values.join(",")),
            "Exists" => key.to_string(),
            "DoesNotExist" => format!("!{key}"),
            other => format!("{key} {other}"),
        });
    }
    if parts.is_empty() {
        "<none>".into()
    } else {
        parts.join(",")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn services_table_like_kubectl() {
        let svc = json!({"metadata": {"name": "web", "namespace": "x"},
            "spec": {"type": "NodePort", "clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"],
                     "ports": [{"port": 80, "protocol": "TCP", "nodePort": 30080},
                               {"port": 53, "protocol": "UDP", "nodePort": 30053}]}});
        let lb = json!({"metadata": {"name": "lb", "namespace": "y"},
            "spec": {"type": "LoadBalancer", "clusterIPs": ["10.96.0.11"], "ports": []}});
        let t = table(Kind::Service, &[svc, lb], true, false);
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("NAMESPACE   NAME   TYPE"), "{t}");
        assert!(lines[1].contains("80:30080/TCP,53:30053/UDP"), "{t}");
        assert!(lines[2].contains("<pending>"), "{t}");
    }

    #[test]
    fn selectors_and_slices() {
        let np = json!({"metadata": {"name": "p"}, "spec": {"podSelector": {
            "matchLabels": {"app": "a"},
            "matchExpressions": [{"key": "t", "operator": "NotIn", "values": ["x", "y"]},
                                 {"key": "k", "operator": "DoesNotExist"}]}}});
        let t = table(Kind::NetworkPolicy, &[np], false, false);
        assert!(t.contains("app=a,t notin (x,y),!k"), "{t}");
        let slice = json!({"metadata": {"name": "s-1"}, "addressType": "IPv4",
            "ports": [{"port": 8080}],
            "endpoints": [{"addresses": ["10.0.0.1"]}, {"addresses": ["10.0.0.2"]},
                          {"addresses": ["10.0.0.3"]}, {"addresses": ["10.0.0.4"]}]});
        let t = table(Kind::EndpointSlice, &[slice], false, false);
        assert!(t.contains("10.0.0.1,10.0.0.2,10.0.0.3 + 1 more..."), "{t}");
        assert_eq!(list(vec![]).get("kind"), Some(&json!("List")));
    }
}
