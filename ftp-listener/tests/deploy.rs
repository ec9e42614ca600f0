//! `deploy/` (issue 10, item 6): every file parses; the Kubernetes probes name endpoints a
//! running member answers; every `ftpl_*` metric named anywhere in `deploy/` is in a running
//! member's `/metrics`; the alert rules pass `promtool check rules` and their unit tests
//! (`promtool test rules`) where promtool is installed (`scripts/setup/70-promtool.sh`);
//! every `deploy/...` path the README names exists.

mod common;

use std::collections::BTreeSet;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{Proc, Site, wait_for};
use serde::Deserialize as _;

const LIMIT: Duration = Duration::from_secs(20);

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Every file under `deploy/`, sorted.
fn deploy_files() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(&repo().join("deploy"), &mut files);
    files.sort();
    assert!(files.len() >= 6, "{files:?}");
    files
}

fn extension(path: &Path) -> &str {
    path.extension().and_then(|e| e.to_str()).unwrap_or("")
}

/// Every YAML document of a file.
fn yaml_documents(path: &Path) -> Vec<serde_yaml::Value> {
    let text = std::fs::read_to_string(path).unwrap();
    serde_yaml::Deserializer::from_str(&text)
        .map(|doc| {
            serde_yaml::Value::deserialize(doc)
                .unwrap_or_else(|e| panic!("{}: not YAML: {e}", path.display()))
        })
        .collect()
}

/// `GET path` on a member; the status code and body.
fn get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let code = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response.split_once("\r\n\r\n")?.1.to_string();
    Some((code, body))
}

/// A member on SQLite and a local folder, and its HTTP address.
fn member(site: &Site) -> (Proc, SocketAddr) {
    let config = site.config("deploy", "deploy-check", "");
    let proc = site.spawn(&config);
    assert!(
        proc.wait_line("became leader", LIMIT).is_some(),
        "{}",
        proc.output()
    );
    let addr = proc
        .output()
        .lines()
        .find(|l| l.contains("ftp-listener started"))
        .and_then(|l| l.split("http=").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP address in:\n{}", proc.output()));
    (proc, addr)
}

/// The metric names of a Prometheus text: families (`# TYPE`) and samples.
fn exported_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in text.lines() {
        let name = match line.strip_prefix("# TYPE ") {
            Some(rest) => rest.split_whitespace().next(),
            None if line.starts_with('#') => None,
            None => line.split([' ', '{']).next(),
        };
        if let Some(name) = name.filter(|n| !n.is_empty()) {
            names.insert(name.to_string());
        }
    }
    names
}

/// Every `ftpl_*` word of a text.
fn ftpl_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = text.as_bytes();
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut i = 0;
    while let Some(at) = text[i..].find("ftpl_").map(|k| k + i) {
        let mut end = at;
        while end < bytes.len() && word(bytes[end]) {
            end += 1;
        }
        if at == 0 || !word(bytes[at - 1]) {
            names.insert(text[at..end].to_string());
        }
        i = end;
    }
    names
}

#[test]
fn every_file_parses() {
    let mut kinds = BTreeSet::new();
    for path in deploy_files() {
        match extension(&path) {
            "yaml" | "yml" => {
                let docs = yaml_documents(&path);
                assert!(!docs.is_empty(), "{}", path.display());
                for doc in &docs {
                    assert!(doc.is_mapping(), "{}: {doc:?}", path.display());
                    if let Some(kind) = doc.get("kind").and_then(|k| k.as_str()) {
                        assert!(doc.get("apiVersion").is_some(), "{}", path.display());
                        kinds.insert(kind.to_string());
                    }
                }
            }
            "json" => {
                let text = std::fs::read_to_string(&path).unwrap();
                let value: serde_json::Value = serde_json::from_str(&text)
                    .unwrap_or_else(|e| panic!("{}: not JSON: {e}", path.display()));
                let panels = value["panels"].as_array().expect("a dashboard's panels");
                assert!(panels.len() >= 6, "{}", path.display());
                for panel in panels {
                    let targets = panel["targets"].as_array().expect("panel targets");
                    assert!(!targets.is_empty(), "{panel}");
                    for target in targets {
                        assert!(
                            target["expr"].as_str().is_some_and(|e| e.contains("ftpl_")),
                            "{target}"
                        );
                    }
                }
            }
            "service" => check_unit(&path),
            other => panic!("{}: no check for `.{other}` files", path.display()),
        }
    }
    for kind in [
        "Deployment",
        "ConfigMap",
        "Kustomization",
        "PodDisruptionBudget",
    ] {
        assert!(kinds.contains(kind), "no {kind} in deploy/: {kinds:?}");
    }
}

/// A systemd unit: sections and `key=value` lines only, the binary started with `run`.
fn check_unit(path: &Path) {
    let text = std::fs::read_to_string(path).unwrap();
    let mut sections = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(section) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            sections.push(section.to_string());
            continue;
        }
        let (key, _) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("{}: not `key=value`: {line}", path.display()));
        assert!(
            !sections.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric()),
            "{}: {line}",
            path.display()
        );
    }
    assert_eq!(
        sections,
        ["Unit", "Service", "Install"],
        "{}",
        path.display()
    );
    let exec = text
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("ExecStart");
    assert!(
        exec.contains("ftp-listener") && exec.ends_with(" run"),
        "{exec}"
    );
}

#[test]
fn the_deployment_probes_endpoints_a_member_answers() {
    let deployment = yaml_documents(&repo().join("deploy/kubernetes/deployment.yaml"))
        .into_iter()
        .find(|d| d.get("kind").and_then(|k| k.as_str()) == Some("Deployment"))
        .expect("a Deployment");
    let spec = &deployment["spec"];
    assert_eq!(spec["replicas"].as_u64(), Some(3));
    let container = &spec["template"]["spec"]["containers"][0];
    let port_name = container["ports"][0]["name"]
        .as_str()
        .expect("a named port");
    let mut paths = BTreeSet::new();
    for probe in ["startupProbe", "livenessProbe", "readinessProbe"] {
        let get = &container[probe]["httpGet"];
        assert_eq!(get["port"].as_str(), Some(port_name), "{probe}");
        paths.insert(get["path"].as_str().expect("a probe path").to_string());
    }
    let secret = container["env"]
        .as_sequence()
        .expect("env")
        .iter()
        .find_map(|e| e["valueFrom"]["secretKeyRef"]["name"].as_str());
    assert_eq!(
        secret,
        Some("ftp-listener"),
        "the password comes from a Secret"
    );

    let site = Site::new();
    let (_member, addr) = member(&site);
    for path in &paths {
        // /readyz answers 200 once a heartbeat was acknowledged: it was (the member leads).
        let answer = wait_for(LIMIT, || get(addr, path).filter(|(code, _)| *code == 200));
        assert!(answer.is_some(), "{path}: {:?}", get(addr, path));
    }
    assert_eq!(get(addr, "/nope").map(|(c, _)| c), Some(404), "the control");
}

#[test]
fn every_metric_named_in_deploy_is_exported() {
    let site = Site::new();
    let (_member, addr) = member(&site);
    let (code, metrics) = get(addr, "/metrics").expect("/metrics answers");
    assert_eq!(code, 200);
    let exported = exported_names(&metrics);
    assert!(exported.contains("ftpl_role"), "{metrics}");
    let mut used = BTreeSet::new();
    for path in deploy_files() {
        let text = std::fs::read_to_string(&path).unwrap();
        for name in ftpl_names(&text) {
            assert!(
                exported.contains(&name),
                "{} names `{name}`, which /metrics does not export:\n{metrics}",
                path.display()
            );
            used.insert(name);
        }
    }
    assert!(used.len() >= 12, "too few metrics used: {used:?}");
    // The scanner itself: a made-up name is found, a longer word is not cut short.
    assert_eq!(
        ftpl_names("x ftpl_made_up_total{a} notftpl_x ftpl_role==1"),
        BTreeSet::from(["ftpl_made_up_total".to_string(), "ftpl_role".to_string()])
    );
}

/// The ConfigMap's `listener.toml`.
fn configmap_listener_toml() -> String {
    let configmap = yaml_documents(&repo().join("deploy/kubernetes/configmap.yaml"))
        .into_iter()
        .find(|d| d.get("kind").and_then(|k| k.as_str()) == Some("ConfigMap"))
        .expect("a ConfigMap");
    configmap["data"]["listener.toml"]
        .as_str()
        .expect("data.listener.toml")
        .to_string()
}

#[test]
fn the_configmap_holds_a_configuration_the_binary_accepts() {
    let text = configmap_listener_toml();
    let value: toml::Table = toml::from_str(&text).expect("listener.toml is TOML");
    assert_eq!(value["log"]["format"].as_str(), Some("json"));
    assert!(
        value.get("member_id").is_none(),
        "the member ID comes from the pod's name"
    );
    let bind = value["http"]["bind"].as_str().expect("http.bind");
    assert!(bind.ends_with(":9464"), "the probes' port: {bind}");
    check_config_accepts(&text);
}

/// `check-config` accepts it, with the environment the Deployment sets, and redacts the
/// password (this build has the backends it names).
#[cfg(all(feature = "postgres", feature = "sftp"))]
fn check_config_accepts(text: &str) {
    let site = Site::new();
    std::fs::write(site.path("listener.toml"), text).unwrap();
    let secret = "from-the-k8s-secret-5d2a";
    let mut proc = Proc::spawn_env(
        site.dir.path(),
        &["--config", "listener.toml", "check-config"],
        &[
            ("FTPL_MEMBER_ID", "ftp-listener-7d9c-abcde"),
            ("FTPL_COORDINATION__POSTGRES__PASSWORD", secret),
        ],
    );
    let status = proc.wait_exit(LIMIT).expect("check-config exits");
    assert!(status.success(), "{}", proc.output());
    // The last table, once the reader has it (the exit may come first).
    assert!(
        proc.wait_line("[log]", LIMIT).is_some(),
        "{}",
        proc.output()
    );
    let out = proc.output();
    assert!(
        out.contains("member_id = \"ftp-listener-7d9c-abcde\""),
        "{out}"
    );
    assert!(!out.contains(secret), "{out}");
}

#[cfg(not(all(feature = "postgres", feature = "sftp")))]
fn check_config_accepts(_: &str) {
    println!(
        "SKIPPED check-config of the ConfigMap's listener.toml: it needs the `postgres` and \
         `sftp` features (scripts/test.sh builds them all)"
    );
}

/// `$PROMTOOL`, `promtool` on PATH, or the one `scripts/setup/70-promtool.sh` unpacked.
fn promtool() -> Option<PathBuf> {
    let root = std::env::var("TEST_ROOT").unwrap_or_else(|_| "/tmp/ha-listener-test".into());
    std::env::var_os("PROMTOOL")
        .map(PathBuf::from)
        .into_iter()
        .chain(std::env::var_os("PATH").into_iter().flat_map(|paths| {
            std::env::split_paths(&paths)
                .map(|p| p.join("promtool"))
                .collect::<Vec<_>>()
        }))
        .chain(std::iter::once(PathBuf::from(root).join("promtool")))
        .find(|p| p.is_file())
}

#[test]
fn the_alert_rules_pass_promtool() {
    let rules = repo().join("deploy/prometheus/alerts.yaml");
    let groups = yaml_documents(&rules);
    let alerts: Vec<&str> = groups[0]["groups"][0]["rules"]
        .as_sequence()
        .expect("rules")
        .iter()
        .filter_map(|r| r["alert"].as_str())
        .collect();
    for alert in [
        "FtpListenerNoLeader",
        "FtpListenerHeartbeatsFailing",
        "FtpListenerFilesInError",
        "FtpListenerNotListing",
    ] {
        assert!(alerts.contains(&alert), "{alert} missing: {alerts:?}");
    }
    let Some(promtool) = promtool() else {
        println!(
            "SKIPPED the promtool checks: promtool is not installed (Debian's `prometheus` \
             package; scripts/setup/70-promtool.sh unpacks it); the rules were only parsed"
        );
        return;
    };
    for args in [
        ["check", "rules", "alerts.yaml"],
        ["test", "rules", "alerts.test.yaml"],
    ] {
        let out = Command::new(&promtool)
            .args(args)
            .current_dir(repo().join("deploy/prometheus"))
            .output()
            .expect("promtool runs");
        assert!(
            out.status.success(),
            "promtool {}:\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn the_readme_points_at_files_that_exist() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let mut named = 0;
    for (i, _) in readme.match_indices("deploy/") {
        let rest = &readme[i..];
        let end = rest
            .find(|c: char| c.is_whitespace() || matches!(c, '`' | ')' | ',' | ';' | '"'))
            .unwrap_or(rest.len());
        let path = rest[..end].trim_end_matches(['.', ':']);
        assert!(
            repo().join(path).exists(),
            "README names {path}, which does not exist"
        );
        named += 1;
    }
    assert!(named >= 4, "the README should point at deploy/'s files");
}
