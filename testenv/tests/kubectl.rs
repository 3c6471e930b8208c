//! kubectl as the judge: the system `kubectl` against a `testenv serve` process.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

struct Serve {
    child: Child,
    kubeconfig: PathBuf,
    dir: tempfile::TempDir,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve() -> Serve {
    serve_with(&[])
}

/// `testenv serve` with extra flags (`--tls`, `--auth`).
fn serve_with(flags: &[&str]) -> Serve {
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    let mut child = Command::new(env!("CARGO_BIN_EXE_testenv"))
        .args(["serve", "--listen", "127.0.0.1:0", "--kubeconfig"])
        .arg(&kubeconfig)
        .args(flags)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let scheme = if flags.contains(&"--tls") {
        "https"
    } else {
        "http"
    };
    assert!(
        line.starts_with(&format!("{scheme}://127.0.0.1:")),
        "{line}"
    );
    assert!(
        kubeconfig.exists(),
        "kubeconfig written before the URL is printed"
    );
    Serve {
        child,
        kubeconfig,
        dir,
    }
}

impl Serve {
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("kubectl");
        c.arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(self.dir.path().join("cache"))
            .args(args);
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("kubectl must be installed")
    }

    /// Run and require success; returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.extend(["-o", "json"]);
        serde_json::from_str(&self.ok(&a)).unwrap()
    }

    fn file(&self, name: &str, content: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, content).unwrap();
        p
    }
}

fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

const CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
spec:
  group: example.com
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget, shortNames: [wd]}
  versions:
  - name: v1
    served: true
    storage: true
    subresources: {status: {}}
    additionalPrinterColumns:
    - {name: URL, type: string, jsonPath: .spec.url}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            required: [url]
            properties:
              url: {type: string}
              replicas: {type: integer, default: 1}
"#;

const APP: &str = r#"
apiVersion: v1
kind: Namespace
metadata:
  name: demo
---
apiVersion: example.com/v1
kind: Widget
metadata:
  name: w1
  namespace: demo
spec:
  url: https://example.com
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: demo
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: nginx:1
        ports: [{containerPort: 80}]
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  namespace: demo
data:
  a: "1"
"#;

#[test]
fn kubectl_drives_testenv() {
    kubectl_suite(&serve());
}

/// The same suite with the admin kubeconfig over HTTPS, authentication and RBAC on.
#[test]
fn kubectl_drives_testenv_over_tls_with_auth() {
    let s = serve_with(&["--tls", "--auth"]);
    let kubeconfig = std::fs::read_to_string(&s.kubeconfig).unwrap();
    assert!(
        kubeconfig.contains("certificate-authority-data:"),
        "{kubeconfig}"
    );
    assert!(kubeconfig.contains("token:"), "{kubeconfig}");
    kubectl_suite(&s);
}

fn kubectl_suite(s: &Serve) {
    // api-resources
    let out = s.ok(&["api-resources"]);
    for needle in [
        "deployments",
        "customresourcedefinitions",
        "leases",
        "horizontalpodautoscalers",
    ] {
        assert!(out.contains(needle), "{needle} missing from:\n{out}");
    }
    assert!(s.ok(&["get", "ns"]).contains("kube-system"));

    // the typed generator commands send protobuf
    s.ok(&["create", "namespace", "extra"]);
    s.ok(&[
        "create",
        "configmap",
        "gen",
        "-n",
        "extra",
        "--from-literal=k=v",
    ]);
    s.ok(&[
        "create",
        "secret",
        "generic",
        "gen",
        "-n",
        "extra",
        "--from-literal=k=v",
    ]);
    s.ok(&["create", "serviceaccount", "robot", "-n", "extra"]);
    assert_eq!(
        s.json(&["get", "cm", "gen", "-n", "extra"])["data"]["k"],
        "v"
    );
    assert_eq!(
        s.json(&["get", "secret", "gen", "-n", "extra"])["data"]["k"],
        "dg=="
    );
    s.ok(&["delete", "namespace", "extra", "--timeout=30s"]);

    // CRD, Established, then the multi-document file
    let crd = s.file("crd.yaml", CRD);
    s.ok(&["apply", "--server-side", "-f", path_str(&crd)]);
    s.ok(&[
        "wait",
        "--for=condition=Established",
        "crd/widgets.example.com",
        "--timeout=20s",
    ]);
    assert!(s.ok(&["api-resources"]).contains("widgets"));
    let app = s.file("app.yaml", APP);
    let out = s.ok(&["apply", "--server-side", "-f", path_str(&app)]);
    assert_eq!(out.matches("serverside-applied").count(), 4, "{out}");

    // get -o json
    let w = s.json(&["get", "-n", "demo", "widget", "w1"]);
    assert_eq!(w["spec"]["replicas"], 1, "schema default applied");
    let list = s.json(&["get", "-n", "demo", "deploy,cm"]);
    assert_eq!(list["items"].as_array().unwrap().len(), 2);
    let table = s.ok(&["get", "-n", "demo", "wd"]);
    assert!(
        table.contains("URL") && table.contains("https://example.com"),
        "{table}"
    );

    // get -w sees a later change
    let mut watch = s
        .cmd(&[
            "get",
            "-n",
            "demo",
            "cm",
            "settings",
            "-w",
            "-o",
            "json",
            "--output-watch-events",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel::<String>();
    let stdout = watch.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // the watch prints the current object first
    let first = rx.recv_timeout(Duration::from_secs(20)).unwrap();
    assert!(first.contains("ADDED") || first.starts_with('{'), "{first}");

    // patch: merge, JSON, strategic
    s.ok(&[
        "patch",
        "-n",
        "demo",
        "cm",
        "settings",
        "--type",
        "merge",
        "-p",
        r#"{"data":{"b":"2"}}"#,
    ]);
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = String::new();
    while !seen.contains(r#""b":"2""#) && !seen.contains(r#""b": "2""#) {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "watch did not show the change:\n{seen}");
        if let Ok(line) = rx.recv_timeout(left) {
            seen.push_str(&line);
            seen.push('\n');
        }
    }
    assert!(seen.contains("MODIFIED"), "{seen}");
    let _ = watch.kill();
    let _ = watch.wait();

    s.ok(&[
        "patch",
        "-n",
        "demo",
        "deploy",
        "web",
        "--type",
        "json",
        "-p",
        r#"[{"op":"replace","path":"/spec/replicas","value":3}]"#,
    ]);
    s.ok(&[
        "patch",
        "-n",
        "demo",
        "deploy",
        "web",
        "-p",
        r#"{"spec":{"template":{"spec":{"containers":[{"name":"side","image":"busybox"}]}}}}"#,
    ]);
    let d = s.json(&["get", "-n", "demo", "deploy", "web"]);
    assert_eq!(d["spec"]["replicas"], 3);
    let names: Vec<&str> = d["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["web", "side"],
        "strategic merge keeps containers by name"
    );
    assert_eq!(d["metadata"]["generation"], 3);

    // scale goes through the /scale subresource
    s.ok(&["scale", "-n", "demo", "deploy/web", "--replicas=4"]);
    assert_eq!(
        s.json(&["get", "-n", "demo", "deploy", "web"])["spec"]["replicas"],
        4
    );
    s.ok(&["scale", "-n", "demo", "deploy/web", "--replicas=3"]);

    // replace with a stale object is refused
    let stale = s.ok(&["get", "-n", "demo", "cm", "settings", "-o", "yaml"]);
    let stale = s.file("stale.yaml", &stale);
    s.ok(&[
        "patch",
        "-n",
        "demo",
        "cm",
        "settings",
        "--type",
        "merge",
        "-p",
        r#"{"data":{"c":"3"}}"#,
    ]);
    let out = s.run(&["replace", "-f", path_str(&stale)]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("Conflict") && err.contains("the object has been modified"),
        "{err}"
    );

    // diff --server-side: no change → 0; a change → 1 with the change shown
    let unchanged = s.run(&[
        "diff",
        "--server-side",
        "--force-conflicts",
        "-f",
        path_str(&app),
    ]);
    let changed_app = s.file("app2.yaml", &APP.replace("a: \"1\"", "a: \"changed\""));
    let out = s.run(&[
        "diff",
        "--server-side",
        "--force-conflicts",
        "-f",
        path_str(&changed_app),
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("+  a: changed"), "{text}");
    // the diff stored nothing
    let cm = s.json(&["get", "-n", "demo", "cm", "settings"]);
    assert_eq!(cm["data"]["a"], "1");
    // the unchanged diff may still show fields another manager changed (replicas, containers), but never the data
    assert!(!String::from_utf8_lossy(&unchanged.stdout).contains("a: changed"));

    // server-side apply conflicts are reported, --force-conflicts takes over
    let out = s.run(&["apply", "--server-side", "-f", path_str(&app)]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("conflict") && err.contains(".spec.replicas"),
        "{err}"
    );
    s.ok(&[
        "apply",
        "--server-side",
        "--force-conflicts",
        "-f",
        path_str(&app),
    ]);
    assert_eq!(
        s.json(&["get", "-n", "demo", "deploy", "web"])["spec"]["replicas"],
        1
    );

    // delete everything in the file (namespace first, like a real cluster this works)
    s.ok(&["delete", "-f", path_str(&app), "--timeout=30s"]);
    let out = s.run(&["get", "ns", "demo"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("NotFound"));
    s.ok(&["delete", "-f", path_str(&crd)]);
    assert!(!s.ok(&["api-resources"]).contains("widgets"));
}

#[test]
fn data_dir_persists_across_restarts() {
    let data = tempfile::tempdir().unwrap();
    let start = || {
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = dir.path().join("kubeconfig");
        let mut child = Command::new(env!("CARGO_BIN_EXE_testenv"))
            .args(["serve", "--listen", "127.0.0.1:0", "--kubeconfig"])
            .arg(&kubeconfig)
            .arg("--data-dir")
            .arg(data.path())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        Serve {
            child,
            kubeconfig,
            dir,
        }
    };
    let mut s = start();
    let crd = s.file("crd.yaml", CRD);
    s.ok(&["apply", "--server-side", "-f", path_str(&crd)]);
    let app = s.file("app.yaml", APP);
    s.ok(&["apply", "--server-side", "-f", path_str(&app)]);
    let before = s.json(&["get", "-n", "demo", "cm", "settings"]);
    // SIGTERM: the server writes a final snapshot
    let pid = s.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    assert!(s.child.wait().unwrap().success(), "clean exit on SIGTERM");
    drop(s);
    let s = start();
    let after = s.json(&["get", "-n", "demo", "cm", "settings"]);
    assert_eq!(after["metadata"]["uid"], before["metadata"]["uid"]);
    assert_eq!(after["data"], before["data"]);
    assert_eq!(
        s.json(&["get", "-n", "demo", "widget", "w1"])["spec"]["url"],
        "https://example.com"
    );
    // the resourceVersion counter continues
    s.ok(&[
        "patch",
        "-n",
        "demo",
        "cm",
        "settings",
        "--type",
        "merge",
        "-p",
        r#"{"data":{"z":"1"}}"#,
    ]);
    let rv_after: u64 =
        s.json(&["get", "-n", "demo", "cm", "settings"])["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
    let rv_before: u64 = before["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(rv_after > rv_before);
}

const RBAC: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: team-a}
---
apiVersion: v1
kind: Namespace
metadata: {name: team-b}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: deployer, namespace: team-a}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: cm-reader, namespace: team-a}
rules:
- {apiGroups: [""], resources: [configmaps], verbs: [get, list, watch]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: deployer-cm, namespace: team-a}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: cm-reader}
subjects:
- {kind: ServiceAccount, name: deployer, namespace: team-a}
"#;

/// kubectl's own auth paths: `create token`, `auth can-i --as`, `auth whoami`, `--token`, and the errors.
#[test]
fn kubectl_with_tokens_rbac_and_impersonation() {
    let s = serve_with(&["--tls", "--auth"]);
    let rbac = s.file("rbac.yaml", RBAC);
    s.ok(&["apply", "-f", path_str(&rbac)]);
    let sa = "system:serviceaccount:team-a:deployer";
    let can_i = |ns: &str| {
        let out = s.run(&["auth", "can-i", "list", "configmaps", "-n", ns, "--as", sa]);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(can_i("team-a"), "yes");
    assert_eq!(can_i("team-b"), "no");
    // impersonated requests
    s.ok(&["get", "cm", "-n", "team-a", "--as", sa]);
    let out = s.run(&["get", "cm", "-n", "team-b", "--as", sa]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "Error from server (Forbidden): configmaps is forbidden: User \"system:serviceaccount:team-a:deployer\" cannot list resource \"configmaps\" in API group \"\" in the namespace \"team-b\""
        ),
        "{err}"
    );

    // a TokenRequest token
    let token = s.ok(&[
        "create",
        "token",
        "deployer",
        "-n",
        "team-a",
        "--duration",
        "20m",
    ]);
    let token = token.trim();
    s.ok(&["--token", token, "get", "cm", "-n", "team-a"]);
    let who = s.json(&["--token", token, "auth", "whoami"]);
    assert_eq!(who["status"]["userInfo"]["username"], sa);
    let out = s.run(&["--token", token, "get", "cm", "-n", "team-b"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("(Forbidden)"));

    // a bad token
    let out = s.run(&["--token", "nope", "get", "ns"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Unauthorized"), "{err}");
}
