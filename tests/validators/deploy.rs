//! deploy/, checked offline with the real tools: every Kubernetes object (the plain manifests,
//! their kustomize builds and the Helm chart's renders) against the strict upstream schemas of
//! Kubernetes 1.29 (the first with native sidecars on by default) and the newest bundled; the
//! chart rendered by Helm's own engine into exactly the plain manifests; keyless as a hardened
//! native sidecar wired to the app; every keyless flag, variable and keyless.toml the files use
//! accepted by the real binary; the Dockerfile through hadolint; the systemd unit through
//! `systemd-analyze verify` and its offline security score.

use crate::support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;
use support::{tools, LabWorld};

/// The oldest Kubernetes whose schema we promise (native sidecars are on by default from 1.29)
/// and the newest kubernetes-validate bundles.
const KUBE_VERSIONS: [&str; 2] = ["1.29.0", "1.37.0"];

/// Which plain manifests each of the chart's ci/ values files renders.
const HELM_CASES: [(&str, &[&str]); 5] = [
    (
        "gke-to-aws-ecs-values.yaml",
        &[
            "gke-to-aws/serviceaccount.yaml",
            "gke-to-aws/deployment-ecs.yaml",
        ],
    ),
    (
        "gke-to-aws-ecs-job-values.yaml",
        &["gke-to-aws/job-ecs.yaml"],
    ),
    (
        "gke-to-aws-token-file-values.yaml",
        &[
            "gke-to-aws/configmap-token-file.yaml",
            "gke-to-aws/deployment-token-file.yaml",
        ],
    ),
    (
        "eks-to-gcp-values.yaml",
        &[
            "eks-to-gcp/serviceaccount.yaml",
            "eks-to-gcp/deployment.yaml",
        ],
    ),
    ("eks-to-gcp-job-values.yaml", &["eks-to-gcp/job.yaml"]),
];

/// Labels the chart adds to every object's metadata that plain manifests have no use for.
const HELM_ONLY_LABELS: [&str; 2] = ["helm.sh/chart", "app.kubernetes.io/managed-by"];

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn kubernetes_dir() -> PathBuf {
    repo().join("deploy/kubernetes")
}

fn chart_dir() -> PathBuf {
    repo().join("deploy/helm/keyless")
}

/// Runs tests/python/deploy_check.py in the pinned venv and parses its JSON answer.
fn deploy_check(args: &[&str], stdin: Option<&str>) -> Value {
    let mut child = Command::new(support::venv::bin("python"))
        .arg(support::venv::script("deploy_check.py"))
        .args(args)
        .current_dir(repo())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run deploy_check.py");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.unwrap_or("").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "deploy_check.py {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("deploy_check.py prints JSON")
}

/// One Kubernetes object and where it came from.
#[derive(Clone, Debug)]
struct Object {
    source: String,
    value: Value,
}

impl Object {
    fn kind(&self) -> &str {
        self.value["kind"].as_str().unwrap_or_default()
    }

    fn name(&self) -> &str {
        self.value["metadata"]["name"].as_str().unwrap_or_default()
    }

    fn key(&self) -> String {
        format!("{}/{}", self.kind(), self.name())
    }

    /// The pod spec of a Deployment or Job.
    fn pod_spec(&self) -> Option<&Value> {
        matches!(self.kind(), "Deployment" | "Job").then(|| &self.value["spec"]["template"]["spec"])
    }
}

fn objects(answer: Value) -> Vec<Object> {
    answer
        .as_array()
        .expect("a list")
        .iter()
        .map(|item| Object {
            source: item["source"].as_str().unwrap().to_string(),
            value: item["object"].clone(),
        })
        .collect()
}

/// Every YAML file under deploy/kubernetes/ except the kustomizations, relative to it.
fn plain_files() -> Vec<String> {
    let mut files = Vec::new();
    for dir in std::fs::read_dir(kubernetes_dir()).unwrap() {
        let dir = dir.unwrap().path();
        if !dir.is_dir() {
            continue;
        }
        for file in std::fs::read_dir(&dir).unwrap() {
            let file = file.unwrap().path();
            let name = file.file_name().unwrap().to_str().unwrap().to_string();
            if name.ends_with(".yaml") && name != "kustomization.yaml" {
                let dir_name = dir.file_name().unwrap().to_str().unwrap();
                files.push(format!("{dir_name}/{name}"));
            }
        }
    }
    files.sort();
    assert!(
        files.len() >= 8,
        "deploy/kubernetes lost manifests: {files:?}"
    );
    files
}

fn load(files: &[String]) -> Vec<Object> {
    let paths: Vec<String> = files
        .iter()
        .map(|f| kubernetes_dir().join(f).display().to_string())
        .collect();
    let mut args = vec!["load"];
    args.extend(paths.iter().map(String::as_str));
    let mut loaded = objects(deploy_check(&args, None));
    for o in &mut loaded {
        o.source = o
            .source
            .trim_start_matches(&format!("{}/", kubernetes_dir().display()))
            .to_string();
    }
    loaded
}

fn plain_objects() -> Vec<Object> {
    load(&plain_files())
}

/// The chart rendered with one of its ci/ values files.
fn helm_render(values: &str) -> Vec<Object> {
    let chart = chart_dir().display().to_string();
    let values = chart_dir().join("ci").join(values).display().to_string();
    objects(deploy_check(
        &["render", &chart, &values, "example", "default"],
        None,
    ))
}

fn all_helm_renders() -> Vec<Object> {
    HELM_CASES
        .iter()
        .flat_map(|(values, _)| helm_render(values))
        .collect()
}

/// `kubectl kustomize DIR`, loaded; None when kubectl is not installed (outside CI).
fn kustomize_build(dir: &str) -> Option<Vec<Object>> {
    if !tools::installed("kubectl") {
        assert!(
            !tools::in_ci(),
            "CI must build the kustomizations: install kubectl (Debian: kubernetes-client)"
        );
        eprintln!(
            "note: kubectl not installed; kustomizations checked by their resource lists only"
        );
        return None;
    }
    let out = Command::new("kubectl")
        .args([
            "kustomize",
            &kubernetes_dir().join(dir).display().to_string(),
        ])
        .output()
        .expect("run kubectl kustomize");
    assert!(
        out.status.success(),
        "kubectl kustomize {dir} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let mut built = objects(deploy_check(&["load", "-"], Some(&text)));
    for o in &mut built {
        o.source = format!("kustomize {dir}");
    }
    Some(built)
}

fn validate(objects: &[Object], versions: &[&str]) -> Vec<Value> {
    let input: Vec<Value> = objects
        .iter()
        .map(|o| serde_json::json!({"source": o.source, "object": o.value}))
        .collect();
    let mut args = vec!["validate"];
    args.extend_from_slice(versions);
    let answer = deploy_check(&args, Some(&Value::Array(input).to_string()));
    answer.as_array().unwrap().clone()
}

fn failures(results: &[Value]) -> Vec<String> {
    results
        .iter()
        .filter(|r| !r["error"].is_null())
        .map(|r| {
            format!(
                "{} {}/{} on {}: {}",
                r["source"], r["kind"], r["name"], r["version"], r["error"]
            )
        })
        .collect()
}

/// Every object we ship, plain, built by kustomize and rendered by Helm, is valid for the
/// Kubernetes versions we support, with no field the API server would not know.
#[test]
fn every_object_passes_the_strict_kubernetes_schemas() {
    let mut all = plain_objects();
    all.extend(all_helm_renders());
    for dir in ["gke-to-aws", "eks-to-gcp"] {
        all.extend(kustomize_build(dir).unwrap_or_default());
    }
    let results = validate(&all, &KUBE_VERSIONS);
    assert_eq!(results.len(), all.len() * KUBE_VERSIONS.len());
    let failed = failures(&results);
    assert!(
        failed.is_empty(),
        "schema violations:\n{}",
        failed.join("\n")
    );
}

/// The schema check has teeth: Kubernetes 1.27 had no `restartPolicy` on init containers, and
/// its schema refuses every workload we ship for exactly that field.
#[test]
fn the_schemas_of_kubernetes_1_27_refuse_the_native_sidecar() {
    let workloads: Vec<Object> = plain_objects()
        .into_iter()
        .filter(|o| o.pod_spec().is_some())
        .collect();
    let results = validate(&workloads, &["1.27.0"]);
    for r in &results {
        let error = r["error"].as_str().unwrap_or_default();
        assert!(
            error.contains("initContainers") && error.contains("restartPolicy"),
            "{}/{} should fail on initContainers[].restartPolicy for 1.27, got {error:?}",
            r["kind"],
            r["name"]
        );
    }
    assert_eq!(results.len(), workloads.len());
}

/// Each direction's kustomization lists exactly the manifests beside it, and (with kubectl) builds
/// into exactly those objects.
#[test]
fn kustomizations_list_and_build_every_manifest() {
    let files = plain_files();
    for dir in ["gke-to-aws", "eks-to-gcp"] {
        let kustomization = load(&[format!("{dir}/kustomization.yaml")]);
        assert_eq!(kustomization.len(), 1);
        let listed: BTreeSet<String> = kustomization[0].value["resources"]
            .as_array()
            .expect("resources")
            .iter()
            .map(|r| format!("{dir}/{}", r.as_str().unwrap()))
            .collect();
        let present: BTreeSet<String> = files
            .iter()
            .filter(|f| f.starts_with(&format!("{dir}/")))
            .cloned()
            .collect();
        assert_eq!(listed, present, "{dir}/kustomization.yaml resources");

        if let Some(built) = kustomize_build(dir) {
            let expected = by_key(load(&present.into_iter().collect::<Vec<_>>()));
            assert_eq!(by_key(built), expected, "kubectl kustomize {dir}");
        }
    }
}

fn by_key(objects: Vec<Object>) -> BTreeMap<String, Value> {
    let mut map = BTreeMap::new();
    for o in objects {
        let key = o.key();
        assert!(
            map.insert(key.clone(), o.value).is_none(),
            "{key} appears twice"
        );
    }
    map
}

fn strip_helm_labels(mut value: Value) -> Value {
    if let Some(labels) = value["metadata"]["labels"].as_object_mut() {
        for label in HELM_ONLY_LABELS {
            labels.remove(label);
        }
    }
    value
}

/// The chart, rendered by Helm's engine with each ci/ values file, gives exactly the plain
/// manifests it names (less Helm's two bookkeeping labels); together they cover every plain
/// object once. `helm lint --strict` has nothing above "info" to say about any of them.
#[test]
fn the_helm_chart_renders_exactly_the_plain_manifests() {
    let plain = plain_objects();
    let mut covered = BTreeSet::new();
    for (values, files) in HELM_CASES {
        let rendered = helm_render(values);
        for o in &rendered {
            let labels = &o.value["metadata"]["labels"];
            assert_eq!(
                labels["app.kubernetes.io/managed-by"],
                "Helm",
                "{}",
                o.key()
            );
            assert_eq!(labels["helm.sh/chart"], "keyless-0.1.0", "{}", o.key());
        }
        let rendered = by_key(
            rendered
                .into_iter()
                .map(|o| Object {
                    value: strip_helm_labels(o.value),
                    ..o
                })
                .collect(),
        );
        let expected = by_key(
            plain
                .iter()
                .filter(|o| files.contains(&o.source.as_str()))
                .cloned()
                .collect(),
        );
        assert_eq!(
            rendered.keys().collect::<Vec<_>>(),
            expected.keys().collect::<Vec<_>>(),
            "{values} renders other objects than {files:?}"
        );
        for (key, value) in &expected {
            assert_eq!(
                &rendered[key], value,
                "{values}: {key} differs from the plain manifest\nrendered: {}\nplain:    {}",
                rendered[key], value
            );
        }
        covered.extend(expected.into_keys());

        let lint = deploy_check(
            &[
                "lint",
                &chart_dir().display().to_string(),
                &chart_dir().join("ci").join(values).display().to_string(),
                "v1.29.0",
            ],
            None,
        );
        assert_eq!(lint["errors"], serde_json::json!([]), "helm lint {values}");
        let serious: Vec<&Value> = lint["messages"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["severity"].as_i64().unwrap_or(3) >= 2)
            .collect();
        assert!(serious.is_empty(), "helm lint {values}: {serious:?}");
    }
    let all: BTreeSet<String> = plain.iter().map(Object::key).collect();
    assert_eq!(covered, all, "plain manifests no ci/ values file renders");
}

/// The chart refuses values it cannot turn into a working pod, naming the value.
#[test]
fn the_helm_chart_refuses_incomplete_values() {
    let dir = tempfile::tempdir().unwrap();
    let values = dir.path().join("values.yaml");
    std::fs::write(&values, "app:\n  image: busybox\n").unwrap();
    let out = Command::new(support::venv::bin("python"))
        .arg(support::venv::script("deploy_check.py"))
        .args([
            "render",
            &chart_dir().display().to_string(),
            &values.display().to_string(),
            "x",
            "default",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("aws.roleArn is required for direction gcpToAws"),
        "{stderr}"
    );
}

/// A container's environment by name, in order.
fn env_of(container: &Value) -> Vec<(String, Value)> {
    container["env"]
        .as_array()
        .map(|env| {
            env.iter()
                .map(|e| (e["name"].as_str().unwrap().to_string(), e.clone()))
                .collect()
        })
        .unwrap_or_default()
}

fn env_value(container: &Value, name: &str) -> Option<String> {
    env_of(container)
        .into_iter()
        .find(|(n, _)| n == name)
        .and_then(|(_, e)| e["value"].as_str().map(str::to_string))
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|a| a.iter().map(|s| s.as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}

/// `--name=value` or `--name value` in args.
fn flag_value(args: &[String], name: &str) -> Option<String> {
    let prefix = format!("{name}=");
    args.iter().enumerate().find_map(|(i, a)| {
        if let Some(v) = a.strip_prefix(&prefix) {
            Some(v.to_string())
        } else if a == name {
            args.get(i + 1).cloned()
        } else {
            None
        }
    })
}

/// `$(VAR)` references in a string.
fn references(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("$(") {
        let after = &rest[start + 2..];
        let Some(end) = after.find(')') else { break };
        out.push(after[..end].to_string());
        rest = &after[end + 1..];
    }
    out
}

fn port_of(addr: &str) -> u16 {
    addr.rsplit(':').next().unwrap().parse().expect("a port")
}

/// The keyless.toml a pod's sidecar reads from its ConfigMap, if it runs `keyless serve`.
fn mounted_config<'a>(pod: &Value, all: &'a [Object]) -> Option<&'a str> {
    let config_map = pod["volumes"]
        .as_array()?
        .iter()
        .find_map(|v| v["configMap"]["name"].as_str())?;
    all.iter()
        .find(|o| o.kind() == "ConfigMap" && o.name() == config_map)
        .and_then(|o| o.value["data"]["keyless.toml"].as_str())
}

/// Every workload runs keyless as a native sidecar (an init container with restartPolicy: Always),
/// probed on /healthz where it serves it, with requests and limits, hardened, with its endpoint,
/// files and session name wired to the app as docs/deployment.md says.
#[test]
fn pods_run_keyless_as_a_hardened_native_sidecar() {
    let mut all = plain_objects();
    all.extend(all_helm_renders());
    let mut workloads = 0;
    for o in &all {
        let Some(pod) = o.pod_spec() else { continue };
        workloads += 1;
        let at = format!("{} {}", o.source, o.key());
        check_pod_security(pod, &at);
        if o.kind() == "Job" {
            let policy = pod["restartPolicy"].as_str().unwrap_or_default();
            assert!(matches!(policy, "Never" | "OnFailure"), "{at}: {policy}");
        }
        assert_eq!(pod["automountServiceAccountToken"], false, "{at}");

        let init = pod["initContainers"].as_array().expect("initContainers");
        let keyless = init
            .iter()
            .find(|c| c["name"] == "keyless")
            .unwrap_or_else(|| panic!("{at}: no keyless init container"));
        assert_eq!(
            keyless["restartPolicy"], "Always",
            "{at}: not a native sidecar"
        );
        assert!(
            keyless["image"].as_str().unwrap().starts_with("keyless:"),
            "{at}"
        );
        let apps = pod["containers"].as_array().unwrap();
        assert_eq!(apps.len(), 1, "{at}: one app container");
        let app = &apps[0];

        // Probes on /healthz, served where keyless serves it.
        let args = strings(&keyless["args"]);
        let metrics = flag_value(&args, "--metrics-listen").or_else(|| {
            let toml = mounted_config(pod, &all)?;
            let config = keyless::config::parse(toml, Path::new("/etc/keyless/keyless.toml"))
                .unwrap_or_else(|e| panic!("{at}: keyless.toml: {e}"));
            config.metrics_listen.map(|a| a.to_string())
        });
        let metrics = metrics.unwrap_or_else(|| panic!("{at}: keyless serves no /healthz"));
        assert!(
            metrics.starts_with("0.0.0.0:"),
            "{at}: the kubelet probes the pod's address, keyless listens on {metrics}"
        );
        let health_port = keyless["ports"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "keyless-health")
            .unwrap_or_else(|| panic!("{at}: no keyless-health port"));
        assert_eq!(health_port["containerPort"], port_of(&metrics), "{at}");
        for probe in ["startupProbe", "readinessProbe", "livenessProbe"] {
            let get = &keyless[probe]["httpGet"];
            assert_eq!(get["path"], "/healthz", "{at}: {probe}");
            assert_eq!(get["port"], "keyless-health", "{at}: {probe}");
        }

        for container in init.iter().chain(apps) {
            let name = container["name"].as_str().unwrap();
            for kind in ["requests", "limits"] {
                for resource in ["cpu", "memory"] {
                    assert!(
                        container["resources"][kind][resource].is_string(),
                        "{at}: container {name} has no {kind}.{resource}"
                    );
                }
            }
            check_env_references(container, &at);
        }

        check_wiring(o, keyless, app, &args, &all, &at);
    }
    assert_eq!(workloads, 10, "5 plain workloads and their 5 renders");
}

/// Non-root, read-only root file system, no privilege escalation, no capabilities, the runtime's
/// seccomp profile: for every container, from its own or the pod's security context.
fn check_pod_security(pod: &Value, at: &str) {
    let pod_sc = &pod["securityContext"];
    assert_eq!(pod_sc["seccompProfile"]["type"], "RuntimeDefault", "{at}");
    for key in ["hostNetwork", "hostPID", "hostIPC"] {
        assert!(pod[key].is_null() || pod[key] == false, "{at}: {key}");
    }
    let containers = pod["initContainers"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(pod["containers"].as_array().unwrap());
    for c in containers {
        let sc = &c["securityContext"];
        let name = c["name"].as_str().unwrap();
        let effective = |key: &str| {
            if sc[key].is_null() {
                pod_sc[key].clone()
            } else {
                sc[key].clone()
            }
        };
        assert_eq!(effective("runAsNonRoot"), true, "{at}: {name} runAsNonRoot");
        let user = effective("runAsUser").as_u64();
        assert!(
            user.is_some_and(|u| u != 0),
            "{at}: {name} runAsUser {user:?}"
        );
        assert_eq!(sc["allowPrivilegeEscalation"], false, "{at}: {name}");
        assert_eq!(sc["readOnlyRootFilesystem"], true, "{at}: {name}");
        assert_eq!(
            sc["capabilities"]["drop"],
            serde_json::json!(["ALL"]),
            "{at}: {name}"
        );
        assert!(
            sc["capabilities"]["add"].is_null(),
            "{at}: {name} adds capabilities"
        );
        assert!(
            sc["privileged"].is_null() || sc["privileged"] == false,
            "{at}: {name}"
        );
    }
}

/// Kubernetes expands `$(VAR)` only for variables defined earlier in the same container; anything
/// else stays literal (a session name of "$(POD_NAME)" would be refused by STS).
fn check_env_references(container: &Value, at: &str) {
    let name = container["name"].as_str().unwrap();
    let env = env_of(container);
    let defined: Vec<&str> = env.iter().map(|(n, _)| n.as_str()).collect();
    for (i, (var, entry)) in env.iter().enumerate() {
        for r in references(entry["value"].as_str().unwrap_or_default()) {
            assert!(
                defined[..i].contains(&r.as_str()),
                "{at}: {name} env {var} uses $({r}) before it is defined"
            );
        }
        if let Some(field) = entry["valueFrom"]["fieldRef"]["fieldPath"].as_str() {
            let expected = match var.as_str() {
                "POD_NAME" => "metadata.name",
                "POD_NAMESPACE" => "metadata.namespace",
                other => panic!("{at}: unexpected downward API variable {other}"),
            };
            assert_eq!(field, expected, "{at}: {name} {var}");
        }
    }
    for arg in strings(&container["args"])
        .iter()
        .chain(&strings(&container["command"]))
    {
        for r in references(arg) {
            assert!(
                defined.contains(&r.as_str()),
                "{at}: {name} arg uses $({r})"
            );
        }
    }
}

fn mount_path<'a>(container: &'a Value, volume: &str) -> Option<&'a Value> {
    container["volumeMounts"]
        .as_array()?
        .iter()
        .find(|m| m["name"] == volume)
}

/// The app reaches what keyless serves: the same address, token file and role, through the
/// shared in-memory volume; the session name comes from the pod's namespace and name.
fn check_wiring(
    workload: &Object,
    keyless: &Value,
    app: &Value,
    args: &[String],
    all: &[Object],
    at: &str,
) {
    let pod = workload.pod_spec().unwrap();
    let words: Vec<&str> = args
        .iter()
        .take_while(|a| !a.starts_with('-'))
        .map(String::as_str)
        .collect();
    let shared_volume = || {
        let volume = pod["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == "keyless")
            .unwrap_or_else(|| panic!("{at}: no keyless volume"));
        assert_eq!(
            volume["emptyDir"]["medium"], "Memory",
            "{at}: keyless volume"
        );
        let sidecar = mount_path(keyless, "keyless").expect("keyless mounts its volume");
        let mounted = mount_path(app, "keyless").expect("the app mounts keyless's volume");
        assert_eq!(
            mounted["readOnly"], true,
            "{at}: the app only reads keyless's files"
        );
        assert_eq!(sidecar["mountPath"], mounted["mountPath"], "{at}");
        sidecar["mountPath"].as_str().unwrap().to_string()
    };
    match words.as_slice() {
        ["aws", "serve"] => {
            let dir = shared_volume();
            let listen = flag_value(args, "--listen").expect("--listen");
            assert!(listen.starts_with("127.0.0.1:"), "{at}: {listen}");
            assert_eq!(
                env_value(app, "AWS_CONTAINER_CREDENTIALS_FULL_URI").as_deref(),
                Some(format!("http://{listen}/creds").as_str()),
                "{at}"
            );
            let token = flag_value(args, "--auth-token-file").expect("--auth-token-file");
            assert!(token.starts_with(&format!("{dir}/")), "{at}: {token}");
            assert_eq!(
                env_value(app, "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"),
                Some(token),
                "{at}"
            );
            let session = flag_value(args, "--session-name")
                .or_else(|| env_value(keyless, "KEYLESS_SESSION_NAME"))
                .expect("a session name");
            assert_eq!(session, "$(POD_NAMESPACE).$(POD_NAME)", "{at}");
            assert!(env_value(keyless, "KEYLESS_ROLE_ARN").is_some(), "{at}");
        }
        ["serve"] => {
            let dir = shared_volume();
            let toml = mounted_config(pod, all).expect("keyless serve reads a ConfigMap");
            let config = keyless::config::parse(toml, Path::new("/etc/keyless/keyless.toml"))
                .unwrap_or_else(|e| panic!("{at}: keyless.toml: {e}"));
            let token_files: Vec<String> = config
                .profiles
                .values()
                .flat_map(|p| p.channels())
                .filter_map(|c| match c {
                    keyless::config::Channel::TokenFile { path } => {
                        Some(path.display().to_string())
                    }
                    _ => None,
                })
                .collect();
            assert_eq!(token_files.len(), 1, "{at}: {token_files:?}");
            assert!(token_files[0].starts_with(&format!("{dir}/")), "{at}");
            assert_eq!(
                env_value(app, "AWS_WEB_IDENTITY_TOKEN_FILE").as_ref(),
                Some(&token_files[0]),
                "{at}"
            );
            let role = toml
                .lines()
                .find_map(|l| l.strip_prefix("role_arn = "))
                .map(|v| v.trim_matches('"').to_string());
            assert_eq!(env_value(app, "AWS_ROLE_ARN"), role, "{at}");
            assert_eq!(
                env_value(app, "AWS_ROLE_SESSION_NAME").as_deref(),
                Some("$(POD_NAME)"),
                "{at}"
            );
        }
        ["gcp", "serve"] => {
            let listen = flag_value(args, "--listen").expect("--listen");
            assert!(listen.starts_with("127.0.0.1:"), "{at}: {listen}");
            for var in ["GCE_METADATA_HOST", "GCE_METADATA_IP", "GCE_METADATA_ROOT"] {
                assert_eq!(env_value(app, var), Some(listen.clone()), "{at}: {var}");
            }
            assert!(env_value(keyless, "KEYLESS_AUDIENCE").is_some(), "{at}");
            assert_eq!(
                env_value(keyless, "AWS_ROLE_SESSION_NAME").as_deref(),
                Some("$(POD_NAME)"),
                "{at}"
            );
            let app_name = app["name"].as_str().unwrap();
            let template = &workload.value["spec"]["template"]["metadata"]["annotations"];
            assert_eq!(
                template["eks.amazonaws.com/skip-containers"], app_name,
                "{at}: the app container must not get the AWS role"
            );
        }
        other => panic!("{at}: keyless runs {other:?}"),
    }
}

/// Nothing we ship asks for RBAC, cluster-wide or not: the objects are service accounts,
/// config maps and workloads only.
#[test]
fn no_rbac_anywhere() {
    let mut all = plain_objects();
    all.extend(all_helm_renders());
    let kinds: BTreeSet<String> = all.iter().map(|o| o.kind().to_string()).collect();
    let allowed: BTreeSet<String> = ["ConfigMap", "Deployment", "Job", "ServiceAccount"]
        .map(String::from)
        .into();
    assert_eq!(kinds, allowed);
    for entry in walk(&repo().join("deploy")) {
        let text = std::fs::read_to_string(&entry).unwrap_or_default();
        for kind in ["ClusterRole", "RoleBinding", "kind: Role"] {
            assert!(!text.contains(kind), "{} mentions {kind}", entry.display());
        }
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// `keyless WORDS... --help`.
fn help(words: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_keyless"))
        .args(words)
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success(), "keyless {words:?} --help failed");
    String::from_utf8(out.stdout).unwrap()
}

/// The flags and KEYLESS_* variables a keyless invocation uses that its --help does not know.
fn unknown_settings(args: &[String], env: &[String]) -> Vec<String> {
    let words: Vec<&str> = args
        .iter()
        .take_while(|a| !a.starts_with('-'))
        .map(String::as_str)
        .collect();
    // clap wraps long lines, even inside "[env: NAME=]": compare with whitespace collapsed.
    let text = help(&words)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        + " ";
    let mut unknown = Vec::new();
    for arg in args.iter().filter(|a| a.starts_with("--")) {
        let flag = arg.split('=').next().unwrap();
        if !text.contains(&format!("{flag} ")) {
            unknown.push(format!("keyless {} {flag}", words.join(" ")));
        }
    }
    for var in env.iter().filter(|v| v.starts_with("KEYLESS_")) {
        if !text.contains(&format!("[env: {var}=")) {
            unknown.push(format!("keyless {} {var}", words.join(" ")));
        }
    }
    unknown
}

/// Manifests that pass a schema but pass keyless a wrong flag are useless: every flag and
/// KEYLESS_* variable given to keyless anywhere in deploy/ is one that the real binary's --help
/// lists for that command, and every keyless.toml parses with keyless's own loader.
#[test]
fn every_keyless_flag_variable_and_config_exists() {
    // The check itself catches a misspelt flag and variable.
    let bad = unknown_settings(
        &["aws".into(), "serve".into(), "--listn=127.0.0.1:1".into()],
        &["KEYLESS_ROLE".into()],
    );
    assert_eq!(bad.len(), 2, "{bad:?}");

    let mut all = plain_objects();
    all.extend(all_helm_renders());
    let mut checked = 0;
    for o in &all {
        let Some(pod) = o.pod_spec() else { continue };
        for c in pod["initContainers"].as_array().unwrap() {
            if c["name"] != "keyless" {
                continue;
            }
            let env: Vec<String> = env_of(c).into_iter().map(|(n, _)| n).collect();
            let unknown = unknown_settings(&strings(&c["args"]), &env);
            assert!(unknown.is_empty(), "{} {}: {unknown:?}", o.source, o.key());
            checked += 1;
        }
    }
    assert_eq!(checked, 10);

    // The systemd unit's ExecStart and the image's default command.
    let unit = std::fs::read_to_string(repo().join("deploy/systemd/keyless.service")).unwrap();
    let exec = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("ExecStart");
    let mut words = exec.split_whitespace();
    assert_eq!(words.next(), Some("/usr/local/bin/keyless"));
    let args: Vec<String> = words.map(String::from).collect();
    assert!(unknown_settings(&args, &[]).is_empty(), "{exec}");

    let dockerfile = std::fs::read_to_string(repo().join("deploy/Dockerfile")).unwrap();
    let cmd = dockerfile
        .lines()
        .find_map(|l| l.strip_prefix("CMD "))
        .expect("CMD");
    let args: Vec<String> = serde_json::from_str(cmd).expect("CMD in exec form");
    assert!(unknown_settings(&args, &[]).is_empty(), "{cmd}");

    // Every keyless.toml: the ConfigMaps' and the VM's.
    let mut configs: Vec<(String, String)> = all
        .iter()
        .filter(|o| o.kind() == "ConfigMap")
        .map(|o| {
            let text = o.value["data"]["keyless.toml"]
                .as_str()
                .expect("keyless.toml");
            (o.key(), text.to_string())
        })
        .collect();
    configs.push((
        "deploy/systemd/keyless.toml".into(),
        std::fs::read_to_string(repo().join("deploy/systemd/keyless.toml")).unwrap(),
    ));
    assert_eq!(configs.len(), 3);
    for (name, text) in configs {
        if let Err(e) = keyless::config::parse(&text, Path::new("/etc/keyless/keyless.toml")) {
            panic!("{name}: {e}");
        }
    }
}

/// The Dockerfile passes hadolint, builds in one stage and runs in another: distroless (glibc,
/// CA roots, no shell), a numeric non-root user, keyless as the entrypoint.
#[test]
fn the_dockerfile_is_lint_clean_multi_stage_and_non_root() {
    let dockerfile = repo().join("deploy/Dockerfile");
    let out = Command::new(support::venv::bin("hadolint"))
        .arg(&dockerfile)
        .output()
        .expect("run hadolint");
    assert!(
        out.status.success(),
        "hadolint:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let text = std::fs::read_to_string(&dockerfile).unwrap();
    let froms: Vec<&str> = text.lines().filter(|l| l.starts_with("FROM ")).collect();
    assert_eq!(froms.len(), 2, "{froms:?}");
    assert!(froms[0].contains(" AS build"), "{}", froms[0]);
    // distroless cc-debian12 ships glibc, libgcc and /etc/ssl/certs/ca-certificates.crt.
    assert_eq!(froms[1], "FROM gcr.io/distroless/cc-debian12:nonroot");
    let after_runtime = text.split(froms[1]).nth(1).unwrap();
    assert!(after_runtime.contains("COPY --from=build /out/keyless /usr/local/bin/keyless"));
    let user = after_runtime
        .lines()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("USER in the runtime stage");
    let uid: u32 = user
        .split(':')
        .next()
        .unwrap()
        .parse()
        .expect("a numeric user");
    assert_ne!(uid, 0);
    assert!(after_runtime.contains("ENTRYPOINT [\"/usr/local/bin/keyless\"]"));
    let build = text.split(froms[1]).next().unwrap();
    // The shipped binary is the dist profile's (fat LTO, one codegen unit), not the quick release.
    assert!(build.contains("cargo build --profile dist --locked --bin keyless"));

    let ignore = std::fs::read_to_string(repo().join("deploy/Dockerfile.dockerignore")).unwrap();
    assert!(
        ignore.lines().any(|l| l == "*"),
        "the build context is allow-listed"
    );
}

/// The image declares a health check it can run without a shell: exec form, keyless itself, a
/// command `keyless --help` lists, with arguments its --help knows, probing /healthz on the port
/// deploy/'s keyless.toml serves it on; the probe itself exits 1 on a closed port.
#[test]
fn the_image_health_check_is_keyless_probing_its_own_healthz() {
    let text = std::fs::read_to_string(repo().join("deploy/Dockerfile")).unwrap();
    let instruction = text
        .replace("\\\n", " ")
        .lines()
        .find(|l| l.starts_with("HEALTHCHECK "))
        .expect("a HEALTHCHECK")
        .to_string();
    let (options, cmd) = instruction
        .split_once(" CMD ")
        .expect("HEALTHCHECK [OPTIONS] CMD");
    assert!(options.contains("--timeout="), "{instruction}");
    let args: Vec<String> = serde_json::from_str(cmd.trim())
        .unwrap_or_else(|e| panic!("CMD in exec form (no shell in the image): {e}: {cmd}"));
    assert_eq!(args[0], "/usr/local/bin/keyless", "{instruction}");
    let command = &args[1];
    let commands = help(&[]);
    let listed = commands
        .split("\nCommands:\n")
        .nth(1)
        .unwrap()
        .lines()
        .take_while(|l| l.starts_with("  "))
        .any(|l| l.split_whitespace().next() == Some(command.as_str()));
    assert!(
        listed,
        "`keyless {command}` is not in keyless --help:\n{commands}"
    );
    assert!(
        unknown_settings(&args[1..], &[]).is_empty(),
        "{instruction}"
    );
    assert_eq!(command, "probe", "{instruction}");
    let url = args.last().unwrap();
    let port: u16 = url
        .strip_prefix("http://127.0.0.1:")
        .and_then(|rest| rest.strip_suffix("/healthz"))
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("not http://127.0.0.1:PORT/healthz: {url}"));
    let config = std::fs::read_to_string(repo().join("deploy/systemd/keyless.toml")).unwrap();
    let metrics = config
        .lines()
        .find_map(|l| l.strip_prefix("metrics_listen = "))
        .expect("metrics_listen")
        .trim_matches('"');
    assert_eq!(
        port,
        port_of(metrics),
        "the port keyless.toml serves /healthz on"
    );

    // Nothing listens on port 1 here: the probe says unhealthy rather than hanging.
    let out = Command::new(env!("CARGO_BIN_EXE_keyless"))
        .args(["probe", "--timeout", "2", "http://127.0.0.1:1/healthz"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
}

/// The socket unit passes exactly the loopback addresses the sample keyless.toml listens on
/// (keyless matches a passed socket to a listener by address), and nothing beyond loopback.
#[test]
fn the_systemd_socket_unit_passes_the_sample_files_listeners() {
    let socket = std::fs::read_to_string(repo().join("deploy/systemd/keyless.socket")).unwrap();
    let config = keyless::config::parse(
        &std::fs::read_to_string(repo().join("deploy/systemd/keyless.toml")).unwrap(),
        Path::new("/etc/keyless/keyless.toml"),
    )
    .unwrap();
    let mut wanted: Vec<String> = config
        .profiles
        .values()
        .flat_map(|p| p.channels().iter().filter_map(|c| c.listen()))
        .chain(config.metrics_listen)
        .map(|a| a.to_string())
        .collect();
    let mut passed: Vec<String> = socket
        .lines()
        .filter_map(|l| l.strip_prefix("ListenStream="))
        .map(str::to_string)
        .collect();
    wanted.sort();
    passed.sort();
    assert_eq!(passed, wanted, "keyless.socket and keyless.toml disagree");
    for addr in &passed {
        let addr: std::net::SocketAddr = addr.parse().unwrap();
        assert!(addr.ip().is_loopback(), "{addr}");
    }
    assert!(!socket.lines().any(|l| l.starts_with("Accept=")));
}

/// The unit file verifies, runs `keyless serve --config /etc/keyless/keyless.toml` sandboxed as
/// the issue asks, reloads with SIGHUP, and scores "OK" on systemd's own exposure analysis.
#[test]
fn the_systemd_unit_verifies_and_is_hardened() {
    let path = repo().join("deploy/systemd/keyless.service");
    let unit = std::fs::read_to_string(&path).unwrap();
    let settings: Vec<&str> = unit
        .lines()
        .filter(|l| !l.starts_with('#') && l.contains('='))
        .collect();
    for wanted in [
        "ExecStart=/usr/local/bin/keyless serve --config /etc/keyless/keyless.toml",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "DynamicUser=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "NoNewPrivileges=yes",
        "PrivateTmp=yes",
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
        "CapabilityBoundingSet=",
        "SystemCallFilter=@system-service",
        "RuntimeDirectory=keyless",
        "StateDirectory=keyless",
    ] {
        assert!(
            settings.iter().any(|s| s.starts_with(wanted)),
            "{} lacks {wanted}",
            path.display()
        );
    }
    assert!(
        settings.contains(&"CapabilityBoundingSet="),
        "an empty bounding set"
    );

    if !tools::installed("systemd-analyze") {
        assert!(
            !tools::in_ci(),
            "CI must verify the unit: install systemd-analyze (Debian: apt-get install systemd)"
        );
        eprintln!("note: systemd-analyze not installed; the unit was not verified");
        return;
    }
    // verify insists that ExecStart's binary exists: point it at the one cargo built.
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("keyless.service");
    std::fs::write(
        &copy,
        unit.replace("/usr/local/bin/keyless", env!("CARGO_BIN_EXE_keyless")),
    )
    .unwrap();
    // The socket unit (socket activation) sits beside it: verify finds the service it starts.
    let socket_copy = dir.path().join("keyless.socket");
    std::fs::copy(repo().join("deploy/systemd/keyless.socket"), &socket_copy).unwrap();
    let out = Command::new("systemd-analyze")
        .args([
            "verify",
            &copy.display().to_string(),
            &socket_copy.display().to_string(),
        ])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        out.status.success() && said.trim().is_empty(),
        "systemd-analyze verify:\n{said}"
    );

    let out = Command::new("systemd-analyze")
        .args([
            "security",
            "--offline=yes",
            "--threshold=20",
            &copy.display().to_string(),
        ])
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "exposure above 2.0:\n{report}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(report.contains("OK"), "{report}");
}

/// The session name the ECS sidecar builds from the downward API, NAMESPACE.POD, works however
/// long the names: STS gets at most 64 characters, the namespace's start and the pod's unique end.
#[tokio::test(flavor = "multi_thread")]
async fn pod_session_names_fit_sts_however_long() {
    let w = LabWorld::start().await;
    let role = w.role("gcp-deploy");
    let credentials = |session: String| {
        let args = [
            "aws",
            "credentials",
            "--role-arn",
            &role,
            "--format",
            "json",
            "--no-cache",
        ]
        .map(String::from);
        let w = &w;
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            w.keyless_env(&args, &[("KEYLESS_SESSION_NAME", &session)])
                .await
        }
    };
    let namespace = "payments-production-eu-west-1";
    let pod = "checkout-api-worker-7d9c8b6f5d-x2k9f";
    let out = credentials(format!("{namespace}.{pod}")).await;
    assert_eq!(out.code(), 0, "{out}");
    let arn = out.json()["AssumedRoleUser"]["Arn"]
        .as_str()
        .unwrap()
        .to_string();
    let session = arn.rsplit('/').next().unwrap();
    assert_eq!(session.len(), 64, "{arn}");
    assert!(
        session.starts_with("payments-production-eu-west-1.c.."),
        "{arn}"
    );
    assert!(session.ends_with("-7d9c8b6f5d-x2k9f"), "{arn}");

    let out = credentials("default.pod with space".into()).await;
    assert_eq!(
        out.code(),
        2,
        "characters STS refuses are still an error: {out}"
    );
}

/// The first fenced block of LANG after HEADING in docs/deployment.md.
fn deployment_doc_block(heading: &str, lang: &str) -> String {
    let page = std::fs::read_to_string(repo().join("docs/deployment.md")).unwrap();
    let section = page
        .split(heading)
        .nth(1)
        .unwrap_or_else(|| panic!("docs/deployment.md has no {heading}"));
    let fence = format!("```{lang}\n");
    let start = section.find(&fence).expect("a code block") + fence.len();
    let end = start + section[start..].find("```").unwrap();
    section[start..end].to_string()
}

/// The documented Cloud Run service and ECS task definition give keyless real flags and
/// variables and point the app at the address keyless listens on.
#[test]
fn the_documented_cloud_run_and_ecs_examples_use_real_settings() {
    let service = deployment_doc_block("## Cloud Run (GCP → AWS)", "yaml");
    let loaded = deploy_check(&["load", "-"], Some(&service));
    let spec = &loaded[0]["object"]["spec"]["template"]["spec"];
    let containers = spec["containers"].as_array().unwrap();
    let keyless = containers.iter().find(|c| c["name"] == "keyless").unwrap();
    let app = containers.iter().find(|c| c["name"] == "app").unwrap();
    let args = strings(&keyless["args"]);
    assert!(unknown_settings(&args, &[]).is_empty(), "{args:?}");
    let listen = flag_value(&args, "--listen").unwrap();
    assert_eq!(
        env_value(app, "AWS_CONTAINER_CREDENTIALS_FULL_URI"),
        Some(format!("http://{listen}/creds"))
    );
    assert_eq!(
        env_value(app, "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"),
        flag_value(&args, "--auth-token-file")
    );
    let metrics = flag_value(&args, "--metrics-listen").unwrap();
    assert_eq!(
        keyless["startupProbe"]["httpGet"]["port"],
        port_of(&metrics)
    );

    let task: Value = serde_json::from_str(&format!(
        "{{{}}}",
        deployment_doc_block("## ECS task (AWS → GCP)", "json")
    ))
    .expect("the task definition fragment is JSON");
    let containers = task["containerDefinitions"].as_array().unwrap();
    let keyless = containers.iter().find(|c| c["name"] == "keyless").unwrap();
    let app = containers.iter().find(|c| c["name"] == "app").unwrap();
    let args = strings(&keyless["command"]);
    let env: Vec<String> = keyless["environment"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_string())
        .collect();
    assert!(unknown_settings(&args, &env).is_empty(), "{args:?} {env:?}");
    let listen = flag_value(&args, "--listen").unwrap();
    for var in ["GCE_METADATA_HOST", "GCE_METADATA_IP"] {
        let value = app["environment"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == var)
            .map(|e| e["value"].as_str().unwrap().to_string());
        assert_eq!(value, Some(listen.clone()), "{var}");
    }
    // The app waits for keyless to be healthy: an exec-form probe of keyless's own /healthz.
    assert_eq!(
        app["dependsOn"],
        serde_json::json!([{"containerName": "keyless", "condition": "HEALTHY"}])
    );
    let check = strings(&keyless["healthCheck"]["command"]);
    assert_eq!(
        check[..3],
        ["CMD", "/usr/local/bin/keyless", "probe"],
        "{check:?}"
    );
    assert!(unknown_settings(&check[2..], &[]).is_empty(), "{check:?}");
    let metrics = flag_value(&args, "--metrics-listen").unwrap();
    assert_eq!(check[3], format!("http://{metrics}/healthz"));
}

/// README.md and every page under docs/, relative to the repository.
fn documentation_pages() -> Vec<PathBuf> {
    fn walk(dir: &Path, found: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, found);
            } else if path.extension().is_some_and(|e| e == "md") {
                found.push(path.strip_prefix(repo()).unwrap().to_path_buf());
            }
        }
    }
    let mut pages = vec![PathBuf::from("README.md")];
    walk(&repo().join("docs"), &mut pages);
    pages.sort();
    pages
}

/// The lines of a Markdown text outside fenced code blocks, numbered from 1.
fn prose_lines(text: &str) -> Vec<(usize, &str)> {
    let mut in_fence = false;
    let mut prose = Vec::new();
    for (index, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            in_fence = !in_fence;
        } else if !in_fence {
            prose.push((index + 1, line));
        }
    }
    prose
}

/// The anchor GitHub gives a heading: lower case, spaces become `-`, and everything but letters,
/// digits, `-` and `_` is dropped (so "GCP → AWS" is `gcp--aws`).
fn heading_anchor(heading: &str) -> String {
    heading
        .trim()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .flat_map(char::to_lowercase)
        .collect()
}

/// Every heading anchor of a page; a repeated heading gets `-1`, `-2`, ... as on GitHub.
fn heading_anchors(text: &str) -> BTreeSet<String> {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut anchors = BTreeSet::new();
    for (_, line) in prose_lines(text) {
        let hashes = line.chars().take_while(|&c| c == '#').count();
        if !(1..=6).contains(&hashes) || !line[hashes..].starts_with(' ') {
            continue;
        }
        let anchor = heading_anchor(&line[hashes..]);
        let count = seen.entry(anchor.clone()).or_default();
        anchors.insert(match *count {
            0 => anchor.clone(),
            n => format!("{anchor}-{n}"),
        });
        *count += 1;
    }
    anchors
}

/// The targets of the inline links `[text](target)` of a page with their line numbers, outside
/// code blocks and code spans.
fn markdown_links(text: &str) -> Vec<(usize, String)> {
    let mut links = Vec::new();
    for (number, line) in prose_lines(text) {
        let prose: String = line
            .split('`')
            .enumerate()
            .filter(|(i, _)| i % 2 == 0)
            .map(|(_, part)| part)
            .collect::<Vec<_>>()
            .join(" ");
        let mut rest = prose.as_str();
        while let Some(start) = rest.find("](") {
            rest = &rest[start + 2..];
            let end = rest.find(')').unwrap_or(rest.len());
            links.push((number, rest[..end].to_string()));
            rest = &rest[end..];
        }
    }
    links
}

/// The checker sees what GitHub renders: links outside code, anchors of headings outside code.
#[test]
fn the_link_checker_reads_markdown_as_github_does() {
    let page = "# Flags from `keyless.toml`\n## GCP → AWS\n## GCP → AWS\n\
                see [a](docs/a.md#x) and `[not](a link)`\n```sh\n# not a heading [b](c.md)\n```\n";
    assert_eq!(
        heading_anchors(page),
        BTreeSet::from(["flags-from-keylesstoml", "gcp--aws", "gcp--aws-1"].map(String::from))
    );
    assert_eq!(markdown_links(page), [(4, "docs/a.md#x".to_string())]);
}

/// Every relative link of README.md and docs/ names a file or directory that exists, and every
/// `#anchor` a heading of the page it points to, so moving a page or renaming a heading cannot
/// leave a dead link behind.
#[test]
fn every_relative_link_in_the_documentation_resolves() {
    let pages = documentation_pages();
    assert!(
        pages.iter().any(|p| p == Path::new("docs/README.md")) && pages.len() > 10,
        "{pages:?}"
    );
    let mut dead = Vec::new();
    let mut checked = 0;
    for page in &pages {
        let text = std::fs::read_to_string(repo().join(page)).unwrap();
        for (line, target) in markdown_links(&text) {
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            checked += 1;
            let (path, anchor) = target.split_once('#').unwrap_or((&target, ""));
            let file = if path.is_empty() {
                repo().join(page)
            } else {
                repo().join(page).parent().unwrap().join(path)
            };
            let place = format!("{}:{line}: {target}", page.display());
            if !file.exists() {
                dead.push(format!("{place}: no such file"));
            } else if !anchor.is_empty() && file.extension().is_some_and(|e| e == "md") {
                let anchors = heading_anchors(&std::fs::read_to_string(&file).unwrap());
                if !anchors.contains(anchor) {
                    dead.push(format!("{place}: no such heading (has {anchors:?})"));
                }
            }
        }
    }
    assert!(checked > 100, "only {checked} links found");
    assert!(dead.is_empty(), "dead links:\n{}", dead.join("\n"));
}
