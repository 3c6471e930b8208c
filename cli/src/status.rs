//! The status table shared by `riptide get` and `riptide up`: one row per Flux object (kind, name, Ready,
//! revision, message), and the kubeconfig resolution the subcommands share.

use std::path::{Path, PathBuf};

use kube::api::{ApiResource, DynamicObject, ListParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client};
use serde_json::Value;

/// A Flux kind the table shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FluxKind {
    /// API group.
    pub group: &'static str,
    /// API version.
    pub version: &'static str,
    /// Kind.
    pub kind: &'static str,
    /// Resource (plural).
    pub plural: &'static str,
}

impl FluxKind {
    /// The kube `ApiResource` of this kind.
    pub fn api_resource(&self) -> ApiResource {
        ApiResource {
            group: self.group.to_string(),
            version: self.version.to_string(),
            api_version: format!("{}/{}", self.group, self.version),
            kind: self.kind.to_string(),
            plural: self.plural.to_string(),
        }
    }
}

/// `GitRepository` (`source.toolkit.fluxcd.io/v1`).
pub const GIT_REPOSITORY: FluxKind = FluxKind {
    group: "source.toolkit.fluxcd.io",
    version: "v1",
    kind: "GitRepository",
    plural: "gitrepositories",
};

/// `Kustomization` (`kustomize.toolkit.fluxcd.io/v1`).
pub const KUSTOMIZATION: FluxKind = FluxKind {
    group: "kustomize.toolkit.fluxcd.io",
    version: "v1",
    kind: "Kustomization",
    plural: "kustomizations",
};

/// `notification.toolkit.fluxcd.io/v1beta3` Provider.
pub const PROVIDER: FluxKind = FluxKind {
    group: "notification.toolkit.fluxcd.io",
    version: "v1beta3",
    kind: "Provider",
    plural: "providers",
};

/// `notification.toolkit.fluxcd.io/v1beta3` Alert.
pub const ALERT: FluxKind = FluxKind {
    group: "notification.toolkit.fluxcd.io",
    version: "v1beta3",
    kind: "Alert",
    plural: "alerts",
};

/// `notification.toolkit.fluxcd.io/v1` Receiver.
pub const RECEIVER: FluxKind = FluxKind {
    group: "notification.toolkit.fluxcd.io",
    version: "v1",
    kind: "Receiver",
    plural: "receivers",
};

/// Every kind the table lists, sources first.
pub const KINDS: &[FluxKind] = &[
    GIT_REPOSITORY,
    KUSTOMIZATION,
    PROVIDER,
    ALERT,
    RECEIVER,
    FluxKind {
        group: "image.toolkit.fluxcd.io",
        version: "v1",
        kind: "ImageRepository",
        plural: "imagerepositories",
    },
    FluxKind {
        group: "image.toolkit.fluxcd.io",
        version: "v1",
        kind: "ImagePolicy",
        plural: "imagepolicies",
    },
    FluxKind {
        group: "image.toolkit.fluxcd.io",
        version: "v1",
        kind: "ImageUpdateAutomation",
        plural: "imageupdateautomations",
    },
];

/// One line of the table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    /// Kind.
    pub kind: String,
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// `True`, `False`, `Unknown`, or `Suspended`.
    pub ready: String,
    /// The revision the object is at (artifact revision for sources, last applied for Kustomizations).
    pub revision: String,
    /// The Ready condition's message.
    pub message: String,
}

/// The condition `type_` of an object as JSON.
pub fn condition<'a>(obj: &'a Value, type_: &str) -> Option<&'a Value> {
    obj.pointer("/status/conditions")?
        .as_array()?
        .iter()
        .find(|c| c.get("type").and_then(Value::as_str) == Some(type_))
}

fn str_at<'a>(obj: &'a Value, pointer: &str) -> Option<&'a str> {
    obj.pointer(pointer).and_then(Value::as_str)
}

/// The table row of one object (`data` is the object as JSON).
pub fn row_of(kind: &str, obj: &Value) -> Row {
    let ready_cond = condition(obj, "Ready");
    let suspended = obj.pointer("/spec/suspend").and_then(Value::as_bool) == Some(true);
    let ready = if suspended {
        "Suspended".to_string()
    } else {
        ready_cond
            .and_then(|c| c.get("status"))
            .and_then(Value::as_str)
            .unwrap_or("Unknown")
            .to_string()
    };
    let revision = str_at(obj, "/status/lastAppliedRevision")
        .or_else(|| str_at(obj, "/status/artifact/revision"))
        .or_else(|| str_at(obj, "/status/lastAttemptedRevision"))
        .or_else(|| str_at(obj, "/status/latestRef/tag"))
        .unwrap_or("")
        .to_string();
    let message = ready_cond
        .and_then(|c| c.get("message"))
        .and_then(Value::as_str)
        .unwrap_or(if ready_cond.is_none() {
            "waiting to be reconciled"
        } else {
            ""
        })
        .to_string();
    Row {
        kind: kind.to_string(),
        namespace: str_at(obj, "/metadata/namespace").unwrap_or("").to_string(),
        name: str_at(obj, "/metadata/name").unwrap_or("").to_string(),
        ready,
        revision,
        message,
    }
}

/// Lists every Flux object in `namespace` (all namespaces when `None`). Kinds whose CRD is not installed are
/// skipped.
pub async fn rows(client: &Client, namespace: Option<&str>) -> anyhow::Result<Vec<Row>> {
    let mut out = Vec::new();
    for kind in KINDS {
        let ar = kind.api_resource();
        let api: Api<DynamicObject> = match namespace {
            Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
            None => Api::all_with(client.clone(), &ar),
        };
        let list = match api.list(&ListParams::default()).await {
            Ok(l) => l,
            Err(kube::Error::Api(e)) if e.code == 404 => continue,
            Err(e) => return Err(e.into()),
        };
        for obj in list.items {
            out.push(row_of(kind.kind, &serde_json::to_value(&obj)?));
        }
    }
    Ok(out)
}

fn truncate(s: &str, max: usize) -> String {
    let one_line = s.replace('\n', " ");
    if one_line.chars().count() <= max {
        one_line
    } else {
        let mut t: String = one_line.chars().take(max.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

/// The rows as an aligned text table with a header; messages cut at `message_width` characters.
pub fn render(rows: &[Row], message_width: usize) -> String {
    let header = ["NAMESPACE", "KIND", "NAME", "READY", "REVISION", "MESSAGE"];
    let cells: Vec<[String; 6]> = rows
        .iter()
        .map(|r| {
            [
                r.namespace.clone(),
                r.kind.clone(),
                r.name.clone(),
                r.ready.clone(),
                r.revision.clone(),
                truncate(&r.message, message_width),
            ]
        })
        .collect();
    let mut widths = header.map(|h| h.chars().count());
    for row in &cells {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cols: &[String]| {
        let mut s = String::new();
        for (i, c) in cols.iter().enumerate() {
            if i + 1 == cols.len() {
                s.push_str(c);
            } else {
                s.push_str(c);
                s.push_str(&" ".repeat(widths[i] - c.chars().count() + 2));
            }
        }
        s.trim_end().to_string()
    };
    let mut out = line(&header.map(str::to_string));
    out.push('\n');
    for row in &cells {
        out.push_str(&line(row));
        out.push('\n');
    }
    out
}

/// The default data directory: `$XDG_DATA_HOME/riptide`, else `~/.local/share/riptide`.
pub fn default_data_dir() -> PathBuf {
    if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(x).join("riptide");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    home.join(".local/share/riptide")
}

/// Which kubeconfig a command uses: `--kubeconfig`, else `KUBECONFIG`, else the one `riptide up` wrote to
/// `<data-dir>/kubeconfig` when it exists, else `~/.kube/config` (`None`: kube's default inference).
pub fn resolve_kubeconfig(flag: Option<&Path>, data_dir: &Path) -> Option<PathBuf> {
    if let Some(f) = flag {
        return Some(f.to_path_buf());
    }
    if let Some(env) = std::env::var_os("KUBECONFIG").filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(env));
    }
    let ours = data_dir.join("kubeconfig");
    ours.is_file().then_some(ours)
}

/// The cluster flags of the commands that talk to one (`get`, `reconcile`, `suspend`, `resume`).
#[derive(Debug, Clone, clap::Args)]
pub struct ClusterArgs {
    /// The cluster. Default: `KUBECONFIG`, else the API server `riptide up` started
    /// (`<data-dir>/kubeconfig`), else `~/.kube/config`.
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Where `riptide up` keeps its state (default `~/.local/share/riptide`).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

impl ClusterArgs {
    /// A client for the cluster these flags name.
    pub async fn client(&self) -> anyhow::Result<Client> {
        let data_dir = self.data_dir.clone().unwrap_or_else(default_data_dir);
        let kubeconfig = resolve_kubeconfig(self.kubeconfig.as_deref(), &data_dir);
        client(kubeconfig.as_deref()).await
    }
}

/// A client for `kubeconfig` (kube's default inference when `None`).
pub async fn client(kubeconfig: Option<&Path>) -> anyhow::Result<Client> {
    let config = match kubeconfig {
        Some(path) => {
            let kc = Kubeconfig::read_from(path)
                .map_err(|e| anyhow::anyhow!("reading kubeconfig {}: {e}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await?
        }
        None => kube::Config::infer().await?,
    };
    Ok(Client::try_from(config)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_reads_ready_revision_and_message() {
        let obj = serde_json::json!({
            "metadata": {"name": "app", "namespace": "flux-system"},
            "status": {
                "lastAppliedRevision": "main@sha1:abc",
                "conditions": [{"type": "Ready", "status": "True", "message": "Applied revision: main@sha1:abc"}],
            },
        });
        let row = row_of("Kustomization", &obj);
        assert_eq!(row.ready, "True");
        assert_eq!(row.revision, "main@sha1:abc");
        assert_eq!(row.message, "Applied revision: main@sha1:abc");
    }

    #[test]
    fn row_of_unreconciled_and_suspended_objects() {
        let fresh = serde_json::json!({"metadata": {"name": "a", "namespace": "n"}});
        let row = row_of("GitRepository", &fresh);
        assert_eq!(
            (row.ready.as_str(), row.message.as_str()),
            ("Unknown", "waiting to be reconciled")
        );
        let suspended = serde_json::json!({"metadata": {"name": "a", "namespace": "n"}, "spec": {"suspend": true}});
        assert_eq!(row_of("GitRepository", &suspended).ready, "Suspended");
    }

    #[test]
    fn table_is_aligned_and_cuts_long_messages() {
        let rows = vec![Row {
            kind: "GitRepository".into(),
            namespace: "flux-system".into(),
            name: "flux-system".into(),
            ready: "True".into(),
            revision: "main@sha1:1234".into(),
            message: "x".repeat(50),
        }];
        let text = render(&rows, 10);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].find("KIND"), lines[1].find("GitRepository"));
        assert!(lines[1].ends_with("xxxxxxxxx…"));
    }
}
