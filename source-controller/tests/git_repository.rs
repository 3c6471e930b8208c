//! GitRepository end to end against real servers on loopback: testenv, git's own `git http-backend` (behind
//! basic auth) and Debian's sshd.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test support code

mod support;

use std::time::Duration;

use common::api::meta::LocalObjectReference;
use common::api::source_v1::{
    GitRepository, GitRepositoryInclude, GitRepositoryRef, GitRepositoryVerification,
    GitVerificationMode,
};
use kube::ResourceExt;
use support::*;
use testenv::git_http::{GitHttpOptions, GitHttpServer};

fn upload_pack_posts(server: &GitHttpServer) -> usize {
    server
        .access_log()
        .iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/git-upload-pack"))
        .count()
}

#[tokio::test]
async fn basic_auth_branch_artifact_noop_new_revision_and_gc() {
    let repos = GitRepos::new();
    let sha1 = repos.commit(
        "app.git",
        "main",
        &[
            ("deploy/app.yaml", "kind: ConfigMap\n"),
            ("run.sh", "#!/bin/sh\n"),
        ],
        "first commit",
    );
    let server = GitHttpServer::start(
        repos.root.path(),
        GitHttpOptions::default().basic_auth("git", "s3cret"),
    )
    .await
    .unwrap();
    let fx = Fixture::start().await;
    fx.secret("creds", &[("username", "git"), ("password", "s3cret")])
        .await;
    let mut s = spec(&server.url("app.git"));
    s.reference = Some(GitRepositoryRef {
        branch: Some("main".into()),
        ..Default::default()
    });
    s.secret_ref = Some(LocalObjectReference {
        name: "creds".into(),
    });
    fx.create("app", s).await;

    let obj = fx.wait_ready("app").await;
    let revision = format!("main@sha1:{sha1}");
    let artifact = obj.artifact().unwrap().clone();
    assert_eq!(artifact.revision, revision);
    assert_eq!(
        artifact.path,
        format!("gitrepository/default/app/{sha1}.tar.gz")
    );
    assert_eq!(
        artifact.url,
        format!(
            "http://{}/gitrepository/default/app/{sha1}.tar.gz",
            fx.storage_addr
        )
    );
    assert!(artifact.digest.starts_with("sha256:"));
    let message = format!("stored artifact for revision '{revision}'");
    assert_eq!(
        ready(&obj),
        ("True".into(), "Succeeded".into(), message.clone())
    );
    assert_eq!(
        condition(&obj, "ArtifactInStorage"),
        Some(("True".into(), "Succeeded".into(), message))
    );
    assert!(condition(&obj, "FetchFailed").is_none());
    let status = obj.status.clone().unwrap();
    assert_eq!(status.observed_ignore, None);
    assert!(obj.finalizers().iter().any(|f| f == "finalizers.fluxcd.io"));

    // Served with its digest as ETag and Content-Length; the content is the tree.
    let (code, etag, body) = download(&artifact.url).await;
    assert_eq!(code, 200);
    assert_eq!(etag, Some(format!("\"{}\"", artifact.digest)));
    assert_eq!(body.len() as i64, artifact.size.unwrap());
    let entries = tar_entries(&body);
    assert_eq!(
        entries
            .iter()
            .map(|(p, m, _)| (p.as_str(), *m))
            .collect::<Vec<_>>(),
        vec![
            ("deploy/", 0o750),
            ("deploy/app.yaml", 0o600),
            ("run.sh", 0o600)
        ]
    );

    // NewArtifact event with Flux's metadata.
    poll("NewArtifact event", Duration::from_secs(10), || async {
        fx.events_for("app")
            .iter()
            .any(|e| e.reason == "NewArtifact")
    })
    .await;
    let event = fx
        .events_for("app")
        .into_iter()
        .find(|e| e.reason == "NewArtifact")
        .unwrap();
    assert_eq!(event.message, "stored artifact for commit 'first commit'");
    assert_eq!(
        event.metadata.get("source.toolkit.fluxcd.io/revision"),
        Some(&revision)
    );
    assert_eq!(
        event.metadata.get("source.toolkit.fluxcd.io/digest"),
        Some(&artifact.digest)
    );
    assert!(!format!("{:?}", fx.recorded.events.lock().unwrap()).contains("s3cret"));

    // No-op re-reconcile: the remote is asked for its refs, nothing is fetched.
    server.clear_access_log();
    let obj = fx.request_reconcile("app", "noop-1").await;
    assert_eq!(obj.artifact().unwrap(), &artifact, "artifact unchanged");
    assert!(
        server
            .access_log()
            .iter()
            .any(|r| r.method == "GET" && r.query == "service=git-upload-pack" && r.status == 200),
        "refs advertised: {:?}",
        server.access_log()
    );
    assert_eq!(
        upload_pack_posts(&server),
        0,
        "no clone: {:?}",
        server.access_log()
    );

    // A new commit yields a new artifact; older ones are garbage collected (2 records kept).
    let sha2 = repos.commit(
        "app.git",
        "main",
        &[("deploy/app.yaml", "kind: Secret\n")],
        "second",
    );
    let obj = fx.request_reconcile("app", "new-1").await;
    assert_eq!(
        obj.artifact().unwrap().revision,
        format!("main@sha1:{sha2}")
    );
    assert!(upload_pack_posts(&server) > 0);
    let sha3 = repos.commit(
        "app.git",
        "main",
        &[("deploy/app.yaml", "kind: Pod\n")],
        "third",
    );
    let obj = fx.request_reconcile("app", "new-2").await;
    assert_eq!(
        obj.artifact().unwrap().revision,
        format!("main@sha1:{sha3}")
    );
    let dir = fx.storage_dir.path().join("gitrepository/default/app");
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    files.sort();
    let mut expected = vec![format!("{sha2}.tar.gz"), format!("{sha3}.tar.gz")];
    expected.sort();
    assert_eq!(
        files, expected,
        "GC keeps the current and one previous artifact"
    );

    // Deleting the object removes its storage directory (finalizer).
    fx.api.delete("app", &Default::default()).await.unwrap();
    poll("object gone", Duration::from_secs(20), || async {
        fx.api.get_opt("app").await.unwrap().is_none()
    })
    .await;
    assert!(!dir.exists(), "storage directory removed");
    fx.shutdown().await;
    server.shutdown().await;
}

#[tokio::test]
async fn wrong_and_invalid_credentials() {
    let repos = GitRepos::new();
    let sha = repos.commit("app.git", "main", &[("a.yaml", "a: 1\n")], "init");
    let server = GitHttpServer::start(
        repos.root.path(),
        GitHttpOptions::default().basic_auth("git", "right"),
    )
    .await
    .unwrap();
    let fx = Fixture::start().await;
    fx.secret("right", &[("username", "git"), ("password", "right")])
        .await;
    fx.secret("wrong", &[("username", "git"), ("password", "wrong")])
        .await;
    fx.secret("no-user", &[("password", "right")]).await;
    let with_secret = |name: &str| {
        let mut s = spec(&server.url("app.git"));
        s.reference = Some(GitRepositoryRef {
            branch: Some("main".into()),
            ..Default::default()
        });
        s.secret_ref = Some(LocalObjectReference { name: name.into() });
        s
    };
    fx.create("right", with_secret("right")).await;
    fx.create("wrong", with_secret("wrong")).await;
    fx.create("no-user", with_secret("no-user")).await;
    fx.create("anonymous", spec(&server.url("app.git"))).await;
    fx.create("missing-secret", with_secret("does-not-exist"))
        .await;

    let obj = fx.wait_ready("right").await;
    assert_eq!(obj.artifact().unwrap().revision, format!("main@sha1:{sha}"));

    // A fetch failure keeps the last good artifact served; recovery is announced with a `Succeeded` event.
    let good = obj.artifact().unwrap().clone();
    let set_password = |password: &'static str| {
        let secrets = fx.secrets.clone();
        async move {
            let patch = serde_json::json!({"stringData": {"password": password}});
            secrets
                .patch(
                    "right",
                    &Default::default(),
                    &kube::api::Patch::Merge(&patch),
                )
                .await
                .unwrap();
        }
    };
    set_password("wrong").await;
    let failing = fx.request_reconcile("right", "fail-1").await;
    assert_eq!(condition(&failing, "FetchFailed").unwrap().0, "True");
    assert_eq!(ready(&failing).0, "False");
    assert_eq!(failing.artifact().unwrap(), &good, "last artifact kept");
    assert_eq!(download(&good.url).await.0, 200, "and still served");
    set_password("right").await;
    let recovered = fx.request_reconcile("right", "recover-1").await;
    assert_eq!(ready(&recovered).0, "True");
    assert!(condition(&recovered, "FetchFailed").is_none());
    poll("recovery event", Duration::from_secs(10), || async {
        fx.events_for("right")
            .iter()
            .any(|e| e.reason == "Succeeded")
    })
    .await;

    for name in ["wrong", "anonymous"] {
        let obj = fx
            .wait(name, |o| condition(o, "FetchFailed").is_some())
            .await;
        let (status, reason, message) = condition(&obj, "FetchFailed").unwrap();
        assert_eq!(
            (status.as_str(), reason.as_str()),
            ("True", "GitOperationFailed")
        );
        assert!(
            message.starts_with("failed to checkout and determine revision: "),
            "{message}"
        );
        assert!(
            !message.contains("right") && !message.contains("wrong"),
            "{message}"
        );
        assert_eq!(ready(&obj).0, "False");
        assert_eq!(
            condition(&obj, "Reconciling").unwrap().1,
            "ProgressingWithRetry"
        );
        assert!(obj.artifact().is_none());
    }

    // Invalid secret data stalls with a clear message.
    let obj = fx
        .wait("no-user", |o| condition(o, "Stalled").is_some())
        .await;
    assert_eq!(
        condition(&obj, "Stalled").unwrap(),
        (
            "True".into(),
            "AuthenticationFailed".into(),
            "failed to configure authentication options: invalid 'http' auth option: 'password' requires 'username' to be set".into()
        )
    );
    assert!(condition(&obj, "Reconciling").is_none());

    let obj = fx
        .wait("missing-secret", |o| condition(o, "FetchFailed").is_some())
        .await;
    let (_, reason, message) = condition(&obj, "FetchFailed").unwrap();
    assert_eq!(reason, "AuthenticationFailed");
    assert!(
        message.starts_with("failed to get secret 'default/does-not-exist'"),
        "{message}"
    );
    fx.shutdown().await;
    server.shutdown().await;
}

#[tokio::test]
async fn invalid_url_stalls_without_retries() {
    let fx = Fixture::start().await;
    fx.create("bad", spec("http://")).await;
    let obj = fx.wait("bad", |o| condition(o, "Stalled").is_some()).await;
    let (status, reason, message) = condition(&obj, "Stalled").unwrap();
    assert_eq!((status.as_str(), reason.as_str()), ("True", "URLInvalid"));
    assert!(
        message.starts_with("failed to parse url 'http://'"),
        "{message}"
    );
    assert_eq!(ready(&obj).1, "URLInvalid");
    assert_eq!(condition(&obj, "FetchFailed").unwrap().1, "URLInvalid");
    fx.shutdown().await;
}

#[tokio::test]
async fn each_reference_kind_and_semver_selection() {
    let repos = GitRepos::new();
    let c1 = repos.commit("app.git", "main", &[("v", "1.0.0")], "one");
    repos.tag("app.git", "v1.0.0");
    let c2 = repos.commit("app.git", "main", &[("v", "1.1.0")], "two");
    repos.tag("app.git", "v1.1.0");
    let c3 = repos.commit("app.git", "main", &[("v", "2.0.0")], "three");
    repos.tag("app.git", "v2.0.0");
    let dev = repos.commit("app.git", "dev", &[("v", "dev")], "dev work");
    let master = repos.commit("app.git", "master", &[("v", "master")], "on master");
    let server = GitHttpServer::start(repos.root.path(), GitHttpOptions::default())
        .await
        .unwrap();
    let fx = Fixture::start().await;
    let url = server.url("app.git");
    let with_ref = |r: GitRepositoryRef| {
        let mut s = spec(&url);
        s.reference = Some(r);
        s
    };
    let cases: Vec<(&str, GitRepositoryRef, String, &str)> = vec![
        (
            "default",
            GitRepositoryRef::default(),
            format!("master@sha1:{master}"),
            "master",
        ),
        (
            "branch",
            GitRepositoryRef {
                branch: Some("dev".into()),
                ..Default::default()
            },
            format!("dev@sha1:{dev}"),
            "dev",
        ),
        (
            "tag",
            GitRepositoryRef {
                tag: Some("v1.0.0".into()),
                ..Default::default()
            },
            format!("v1.0.0@sha1:{c1}"),
            "1.0.0",
        ),
        (
            "semver",
            GitRepositoryRef {
                semver: Some(">=1.0.0 <2.0.0".into()),
                ..Default::default()
            },
            format!("v1.1.0@sha1:{c2}"),
            "1.1.0",
        ),
        (
            "semver-star",
            GitRepositoryRef {
                semver: Some("*".into()),
                ..Default::default()
            },
            format!("v2.0.0@sha1:{c3}"),
            "2.0.0",
        ),
        (
            "name",
            GitRepositoryRef {
                name: Some("refs/heads/dev".into()),
                ..Default::default()
            },
            format!("refs/heads/dev@sha1:{dev}"),
            "dev",
        ),
        (
            "commit-on-branch",
            GitRepositoryRef {
                branch: Some("main".into()),
                commit: Some(c1.clone()),
                ..Default::default()
            },
            format!("main@sha1:{c1}"),
            "1.0.0",
        ),
        (
            "commit",
            GitRepositoryRef {
                commit: Some(c2.clone()),
                ..Default::default()
            },
            format!("sha1:{c2}"),
            "1.1.0",
        ),
        (
            "precedence",
            GitRepositoryRef {
                branch: Some("dev".into()),
                tag: Some("v1.0.0".into()),
                semver: Some("^2".into()),
                ..Default::default()
            },
            format!("v1.0.0@sha1:{c1}"),
            "1.0.0",
        ),
    ];
    for (name, r, _, _) in &cases {
        fx.create(name, with_ref(r.clone())).await;
    }
    for (name, _, revision, content) in &cases {
        let obj = fx.wait_ready(name).await;
        let artifact = obj.artifact().unwrap();
        assert_eq!(&artifact.revision, revision, "{name}");
        let (_, _, body) = download(&artifact.url).await;
        let entries = tar_entries(&body);
        assert_eq!(
            entries,
            vec![("v".to_string(), 0o600, content.to_string())],
            "{name}"
        );
    }

    fx.create(
        "no-match",
        with_ref(GitRepositoryRef {
            semver: Some(">=5".into()),
            ..Default::default()
        }),
    )
    .await;
    fx.create(
        "no-branch",
        with_ref(GitRepositoryRef {
            branch: Some("nope".into()),
            ..Default::default()
        }),
    )
    .await;
    let obj = fx
        .wait("no-match", |o| condition(o, "FetchFailed").is_some())
        .await;
    assert_eq!(
        condition(&obj, "FetchFailed").unwrap().2,
        "failed to checkout and determine revision: no match found for semver: >=5"
    );
    let obj = fx
        .wait("no-branch", |o| condition(o, "FetchFailed").is_some())
        .await;
    assert_eq!(
        condition(&obj, "FetchFailed").unwrap().2,
        "failed to checkout and determine revision: couldn't find remote ref 'refs/heads/nope'"
    );
    fx.shutdown().await;
    server.shutdown().await;
}

#[tokio::test]
async fn ignore_rules_and_sparse_checkout() {
    let repos = GitRepos::new();
    repos.commit(
        "app.git",
        "main",
        &[
            ("deploy/app.yaml", "app"),
            ("deploy/notes.txt", "notes"),
            ("deploy/.sourceignore", "*.txt\n"),
            ("src/main.go", "package main"),
            ("logo.png", "png"),
            (".github/workflows/ci.yml", "ci"),
            ("README.md", "readme"),
        ],
        "init",
    );
    let server = GitHttpServer::start(repos.root.path(), GitHttpOptions::default())
        .await
        .unwrap();
    let fx = Fixture::start().await;
    let url = server.url("app.git");
    let base = || {
        let mut s = spec(&url);
        s.reference = Some(GitRepositoryRef {
            branch: Some("main".into()),
            ..Default::default()
        });
        s
    };
    fx.create("defaults", base()).await;
    let mut s = base();
    s.ignore = Some("# exclude all\n/*\n# include deploy dir\n!/deploy\n".into());
    fx.create("spec-ignore", s).await;
    let mut s = base();
    s.sparse_checkout = Some(vec!["src".into()]);
    fx.create("sparse", s).await;
    let mut s = base();
    s.sparse_checkout = Some(vec!["missing".into()]);
    fx.create("sparse-missing", s).await;

    let paths = |name: &'static str| {
        let fx = &fx;
        async move {
            let obj = fx.wait_ready(name).await;
            let (_, _, body) = download(&obj.artifact().unwrap().url).await;
            (obj, tar_paths(&body))
        }
    };
    let (_, p) = paths("defaults").await;
    // .sourceignore in deploy/ is a user pattern: it replaces the default exclusions.
    assert_eq!(
        p,
        vec![
            ".github/",
            ".github/workflows/",
            ".github/workflows/ci.yml",
            "README.md",
            "deploy/",
            "deploy/.sourceignore",
            "deploy/app.yaml",
            "logo.png",
            "src/",
            "src/main.go"
        ]
    );
    let (obj, p) = paths("spec-ignore").await;
    // As in Flux (go-git's matcher), the last matching pattern decides: `!/deploy` re-includes everything
    // under deploy/, including what deploy/.sourceignore excludes.
    assert_eq!(
        p,
        vec![
            "deploy/",
            "deploy/.sourceignore",
            "deploy/app.yaml",
            "deploy/notes.txt"
        ]
    );
    assert_eq!(
        obj.status.unwrap().observed_ignore.as_deref(),
        Some("# exclude all\n/*\n# include deploy dir\n!/deploy\n")
    );
    let (obj, p) = paths("sparse").await;
    assert_eq!(p, vec!["src/", "src/main.go"]);
    assert_eq!(
        obj.status.unwrap().observed_sparse_checkout,
        Some(vec!["src".to_string()])
    );
    let obj = fx
        .wait("sparse-missing", |o| condition(o, "FetchFailed").is_some())
        .await;
    assert!(
        condition(&obj, "FetchFailed")
            .unwrap()
            .2
            .contains("'missing'")
    );

    // Changing the ignore rules rebuilds the artifact from the same revision.
    let before = fx.get("defaults").await.artifact().unwrap().clone();
    let patch = serde_json::json!({"spec": {"ignore": "*.md\n"}});
    fx.api
        .patch(
            "defaults",
            &Default::default(),
            &kube::api::Patch::Merge(&patch),
        )
        .await
        .unwrap();
    let obj = fx
        .wait("defaults", |o| {
            o.status.as_ref().and_then(|s| s.observed_ignore.as_deref()) == Some("*.md\n")
        })
        .await;
    let after = obj.artifact().unwrap();
    assert_eq!(after.revision, before.revision);
    assert_ne!(after.digest, before.digest);
    let (_, _, body) = download(&after.url).await;
    assert!(!tar_paths(&body).contains(&"README.md".to_string()));
    fx.shutdown().await;
    server.shutdown().await;
}

#[tokio::test]
async fn include_copies_another_artifact_and_follows_its_changes() {
    let repos = GitRepos::new();
    repos.commit("app.git", "main", &[("app.yaml", "app")], "app");
    repos.commit(
        "lib.git",
        "main",
        &[("manifests/lib.yaml", "lib v1"), ("other/x", "x")],
        "lib",
    );
    let server = GitHttpServer::start(repos.root.path(), GitHttpOptions::default())
        .await
        .unwrap();
    let fx = Fixture::start().await;
    let branch = |url: String| {
        let mut s = spec(&url);
        s.reference = Some(GitRepositoryRef {
            branch: Some("main".into()),
            ..Default::default()
        });
        s
    };
    let mut app = branch(server.url("app.git"));
    app.include = Some(vec![GitRepositoryInclude {
        repository: LocalObjectReference { name: "lib".into() },
        from_path: Some("manifests".into()),
        to_path: Some("vendor/lib".into()),
    }]);
    fx.create("app", app).await;
    // Without the included repository the include is unavailable.
    let obj = fx
        .wait("app", |o| condition(o, "IncludeUnavailable").is_some())
        .await;
    assert_eq!(condition(&obj, "IncludeUnavailable").unwrap().1, "NotFound");

    fx.create("lib", branch(server.url("lib.git"))).await;
    let lib = fx.wait_ready("lib").await;
    let obj = fx
        .wait("app", |o| o.artifact().is_some() && ready(o).0 == "True")
        .await;
    let (_, _, body) = download(&obj.artifact().unwrap().url).await;
    let entries = tar_entries(&body);
    assert!(
        entries.contains(&("vendor/lib/lib.yaml".into(), 0o600, "lib v1".into())),
        "{entries:?}"
    );
    assert!(!entries.iter().any(|(p, _, _)| p.contains("other")));
    let status = obj.status.clone().unwrap();
    assert_eq!(
        status.included_artifacts.unwrap(),
        vec![lib.artifact().unwrap().clone()]
    );
    assert!(status.observed_include.is_some());

    // A change in the included repository yields a new artifact here.
    repos.commit(
        "lib.git",
        "main",
        &[("manifests/lib.yaml", "lib v2")],
        "lib v2",
    );
    fx.request_reconcile("lib", "lib-2").await;
    let obj = fx
        .wait("app", |o| {
            o.artifact()
                .is_some_and(|a| a.digest != obj.artifact().unwrap().digest)
        })
        .await;
    let (_, _, body) = download(&obj.artifact().unwrap().url).await;
    assert!(tar_entries(&body).contains(&("vendor/lib/lib.yaml".into(), 0o600, "lib v2".into())));
    fx.shutdown().await;
    server.shutdown().await;
}

#[tokio::test]
async fn same_tree_same_digest_across_runs() {
    let repos = GitRepos::new();
    let files = [("a/b.yaml", "b"), ("c.yaml", "c"), ("exec.sh", "#!/bin/sh")];
    repos.commit("one.git", "main", &files, "one");
    repos.commit("two.git", "main", &files, "a different commit, same tree");
    let server = GitHttpServer::start(repos.root.path(), GitHttpOptions::default())
        .await
        .unwrap();
    let mut digests = Vec::new();
    for _run in 0..2 {
        let fx = Fixture::start().await;
        for repo in ["one", "two"] {
            let mut s = spec(&server.url(&format!("{repo}.git")));
            s.reference = Some(GitRepositoryRef {
                branch: Some("main".into()),
                ..Default::default()
            });
            fx.create(repo, s).await;
        }
        for repo in ["one", "two"] {
            let obj = fx.wait_ready(repo).await;
            digests.push(obj.artifact().unwrap().digest.clone());
        }
        fx.shutdown().await;
    }
    assert!(digests.iter().all(|d| d == &digests[0]), "{digests:?}");
    server.shutdown().await;
}

#[tokio::test]
async fn tampered_artifact_is_rebuilt_with_a_warning() {
    let repos = GitRepos::new();
    repos.commit("app.git", "main", &[("a.yaml", "a")], "init");
    let server = GitHttpServer::start(repos.root.path(), GitHttpOptions::default())
        .await
        .unwrap();
    let fx = Fixture::start().await;
    let mut s = spec(&server.url("app.git"));
    s.reference = Some(GitRepositoryRef {
        branch: Some("main".into()),
        ..Default::default()
    });
    fx.create("app", s).await;
    let artifact = fx.wait_ready("app").await.artifact().unwrap().clone();
    std::fs::write(fx.storage.local_path(&artifact.path), b"tampered").unwrap();
    let obj = fx.request_reconcile("app", "verify-1").await;
    assert_eq!(
        obj.artifact().unwrap().digest,
        artifact.digest,
        "rebuilt identically"
    );
    assert!(
        fx.storage.verify(obj.artifact().unwrap()).unwrap(),
        "stored bytes match the digest again"
    );
    let warning = fx
        .events_for("app")
        .into_iter()
        .find(|e| e.reason == "ArtifactVerificationFailed")
        .expect("warning event");
    assert!(warning.message.contains(&artifact.digest));
    fx.shutdown().await;
    server.shutdown().await;
}

#[tokio::test]
async fn hanging_server_is_cut_by_timeout_while_others_reconcile() {
    let repos = GitRepos::new();
    let sha = repos.commit("app.git", "main", &[("a.yaml", "a")], "init");
    let server = GitHttpServer::start(repos.root.path(), GitHttpOptions::default())
        .await
        .unwrap();
    let hanging = GitHttpServer::start_hanging().await.unwrap();
    let fx = Fixture::start().await;
    let mut s = spec(&hanging.url("app.git"));
    s.timeout = "2s".into();
    fx.create("hangs", s).await;
    let started = std::time::Instant::now();
    let mut s = spec(&server.url("app.git"));
    s.reference = Some(GitRepositoryRef {
        branch: Some("main".into()),
        ..Default::default()
    });
    fx.create("works", s).await;
    let obj = fx.wait_ready("works").await;
    assert_eq!(obj.artifact().unwrap().revision, format!("main@sha1:{sha}"));
    let obj = fx
        .wait("hangs", |o| condition(o, "FetchFailed").is_some())
        .await;
    assert!(started.elapsed() >= Duration::from_secs(2));
    assert_eq!(
        condition(&obj, "FetchFailed").unwrap(),
        (
            "True".into(),
            "GitOperationFailed".into(),
            "failed to checkout and determine revision: operation timed out after 2s".into()
        )
    );
    fx.shutdown().await;
    hanging.shutdown().await;
    server.shutdown().await;
}

#[tokio::test]
async fn ssh_identity_and_known_hosts() {
    if !std::path::Path::new("/usr/sbin/sshd").exists() {
        panic!("/usr/sbin/sshd is missing: apt-get install openssh-server (.ci/run installs it)");
    }
    let repos = GitRepos::new();
    let sha = repos.commit("app.git", "main", &[("a.yaml", "over ssh")], "init");
    let sshd = Sshd::start().await;
    let fx = Fixture::start().await;
    let url = sshd.url(&repos.bare_path("app.git"));
    fx.secret(
        "ssh",
        &[
            ("identity", &sshd.identity),
            ("known_hosts", &sshd.known_hosts),
        ],
    )
    .await;
    fx.secret(
        "ssh-wrong-host",
        &[
            ("identity", &sshd.identity),
            ("known_hosts", &sshd.wrong_known_hosts()),
        ],
    )
    .await;
    fx.secret("ssh-no-known-hosts", &[("identity", &sshd.identity)])
        .await;
    let with_secret = |name: &str| {
        let mut s = spec(&url);
        s.reference = Some(GitRepositoryRef {
            branch: Some("main".into()),
            ..Default::default()
        });
        s.secret_ref = Some(LocalObjectReference { name: name.into() });
        s
    };
    fx.create("ssh", with_secret("ssh")).await;
    fx.create("wrong-host", with_secret("ssh-wrong-host")).await;
    fx.create("no-known-hosts", with_secret("ssh-no-known-hosts"))
        .await;

    let obj = fx.wait_ready("ssh").await;
    assert_eq!(obj.artifact().unwrap().revision, format!("main@sha1:{sha}"));
    let (_, _, body) = download(&obj.artifact().unwrap().url).await;
    assert_eq!(
        tar_entries(&body),
        vec![("a.yaml".into(), 0o600, "over ssh".into())]
    );

    let obj = fx
        .wait("wrong-host", |o| condition(o, "FetchFailed").is_some())
        .await;
    let (_, reason, message) = condition(&obj, "FetchFailed").unwrap();
    assert_eq!(reason, "GitOperationFailed");
    assert_eq!(
        message,
        "failed to checkout and determine revision: invalid or unknown remote ssh hostkey"
    );
    assert!(obj.artifact().is_none());

    let obj = fx
        .wait("no-known-hosts", |o| condition(o, "Stalled").is_some())
        .await;
    assert_eq!(
        condition(&obj, "Stalled").unwrap().2,
        "failed to configure authentication options: invalid 'ssh' auth option: 'known_hosts' is required"
    );
    fx.shutdown().await;
}

#[tokio::test]
async fn recurse_submodules_includes_submodule_content() {
    let repos = GitRepos::new();
    repos.commit("lib.git", "main", &[("lib.yaml", "lib")], "lib");
    repos.commit("app.git", "main", &[("app.yaml", "app")], "app");
    repos.add_submodule("app.git", "lib.git", "vendor/lib");
    let server = GitHttpServer::start(repos.root.path(), GitHttpOptions::default())
        .await
        .unwrap();
    let fx = Fixture::start().await;
    for (name, recurse) in [("flat", false), ("recursive", true)] {
        let mut s = spec(&server.url("app.git"));
        s.reference = Some(GitRepositoryRef {
            branch: Some("main".into()),
            ..Default::default()
        });
        s.recurse_submodules = Some(recurse);
        fx.create(name, s).await;
    }
    let flat = fx.wait_ready("flat").await;
    let (_, _, body) = download(&flat.artifact().unwrap().url).await;
    assert!(!tar_paths(&body).contains(&"vendor/lib/lib.yaml".to_string()));
    let recursive = fx.wait_ready("recursive").await;
    assert_eq!(
        recursive
            .status
            .as_ref()
            .unwrap()
            .observed_recurse_submodules,
        Some(true)
    );
    let (_, _, body) = download(&recursive.artifact().unwrap().url).await;
    let paths = tar_paths(&body);
    assert!(
        paths.contains(&"vendor/lib/lib.yaml".to_string()),
        "{paths:?}"
    );
    assert!(!paths.iter().any(|p| p.ends_with(".git")), "{paths:?}");
    fx.shutdown().await;
    server.shutdown().await;
}

#[tokio::test]
async fn relative_submodule_urls_resolve_against_the_repository_url() {
    let repos = GitRepos::new();
    repos.commit("base.git", "main", &[("base.yaml", "base")], "base");
    repos.commit("lib.git", "main", &[("lib.yaml", "lib")], "lib");
    repos.add_submodule_relative("lib.git", "base.git", "base");
    repos.commit("app.git", "main", &[("app.yaml", "app")], "app");
    repos.add_submodule_relative("app.git", "lib.git", "vendor/lib");
    let server = GitHttpServer::start(
        repos.root.path(),
        GitHttpOptions::default().basic_auth("git", "s3cret"),
    )
    .await
    .unwrap();
    let fx = Fixture::start().await;
    fx.secret("creds", &[("username", "git"), ("password", "s3cret")])
        .await;
    let mut s = spec(&server.url("app.git"));
    s.reference = Some(GitRepositoryRef {
        branch: Some("main".into()),
        ..Default::default()
    });
    s.secret_ref = Some(LocalObjectReference {
        name: "creds".into(),
    });
    s.recurse_submodules = Some(true);
    fx.create("app", s).await;
    let obj = fx.wait_ready("app").await;
    let (_, _, body) = download(&obj.artifact().unwrap().url).await;
    let paths = tar_paths(&body);
    for expected in [
        "app.yaml",
        "vendor/lib/lib.yaml",
        "vendor/lib/base/base.yaml",
    ] {
        assert!(
            paths.contains(&expected.to_string()),
            "{expected}: {paths:?}"
        );
    }
    // Fetched from the server, with the credentials, not from the local paths the repositories were made from.
    let fetched: Vec<String> = server
        .access_log()
        .iter()
        .filter(|r| r.method == "POST" && r.status == 200)
        .map(|r| r.path.clone())
        .collect();
    for repo in ["app.git", "lib.git", "base.git"] {
        assert!(
            fetched.iter().any(|p| p.contains(repo)),
            "{repo} not fetched over HTTP: {fetched:?}"
        );
    }
    fx.shutdown().await;
    server.shutdown().await;
}

#[tokio::test]
async fn ssh_signature_verification_of_head_and_tag() {
    let keys = tempfile::tempdir().unwrap();
    let (author_key, author_pub) = ssh_keypair(keys.path(), "author");
    let (_, stranger_pub) = ssh_keypair(keys.path(), "stranger");
    let repos = GitRepos::new();
    let sha = repos.commit_signed("app.git", &[("a.yaml", "a")], "signed", &author_key);
    repos.tag_signed("app.git", "v1.0.0", &author_key);
    repos.commit("unsigned.git", "main", &[("a.yaml", "a")], "unsigned");
    let server = GitHttpServer::start(repos.root.path(), GitHttpOptions::default())
        .await
        .unwrap();
    let fx = Fixture::start().await;
    fx.secret("author", &[("author.sshpub", &author_pub)]).await;
    fx.secret("stranger", &[("stranger.sshpub", &stranger_pub)])
        .await;
    let verified = |repo: &str, r: GitRepositoryRef, mode: GitVerificationMode, secret: &str| {
        let mut s = spec(&server.url(repo));
        s.reference = Some(r);
        s.verification = Some(GitRepositoryVerification {
            mode,
            secret_ref: LocalObjectReference {
                name: secret.into(),
            },
        });
        s
    };
    let main = || GitRepositoryRef {
        branch: Some("main".into()),
        ..Default::default()
    };
    let tag = || GitRepositoryRef {
        tag: Some("v1.0.0".into()),
        ..Default::default()
    };
    fx.create(
        "head",
        verified("app.git", main(), GitVerificationMode::Head, "author"),
    )
    .await;
    fx.create(
        "tag-and-head",
        verified("app.git", tag(), GitVerificationMode::TagAndHead, "author"),
    )
    .await;
    fx.create(
        "stranger",
        verified("app.git", main(), GitVerificationMode::Head, "stranger"),
    )
    .await;
    fx.create(
        "unsigned",
        verified("unsigned.git", main(), GitVerificationMode::Head, "author"),
    )
    .await;
    fx.create(
        "tag-on-branch",
        verified("app.git", main(), GitVerificationMode::Tag, "author"),
    )
    .await;

    let obj = fx.wait_ready("head").await;
    let (status, reason, message) = condition(&obj, "SourceVerified").unwrap();
    assert_eq!((status.as_str(), reason.as_str()), ("True", "Succeeded"));
    assert!(
        message.starts_with(&format!(
            "verified signature of\n\t- commit '{sha}' with key 'SHA256:"
        )),
        "{message}"
    );
    assert_eq!(
        obj.status
            .as_ref()
            .unwrap()
            .source_verification_mode
            .as_deref(),
        Some("HEAD")
    );
    let obj = fx.wait_ready("tag-and-head").await;
    let message = condition(&obj, "SourceVerified").unwrap().2;
    assert!(message.contains("- tag 'v1.0.0' with key"), "{message}");
    assert!(
        message.contains(&format!("- commit '{sha}' with key")),
        "{message}"
    );

    for (name, reason) in [
        ("stranger", "InvalidCommitSignature"),
        ("unsigned", "InvalidCommitSignature"),
    ] {
        let obj = fx
            .wait(name, |o| condition(o, "SourceVerified").is_some())
            .await;
        let (status, r, message) = condition(&obj, "SourceVerified").unwrap();
        assert_eq!(
            (status.as_str(), r.as_str()),
            ("False", reason),
            "{message}"
        );
        assert_eq!(ready(&obj).0, "False");
        assert!(
            obj.artifact().is_none(),
            "no artifact for an unverified commit"
        );
    }
    let obj = fx
        .wait("tag-on-branch", |o| condition(o, "Stalled").is_some())
        .await;
    assert_eq!(
        condition(&obj, "SourceVerified").unwrap().2,
        "cannot verify tag object's signature if a tag reference is not specified"
    );
    fx.shutdown().await;
    server.shutdown().await;
}

#[tokio::test]
async fn pgp_signature_verification_of_head_and_tag() {
    let gpg = Gpg::new();
    // A certify-only primary key whose signing subkey makes the signatures, an RSA key that signs itself, and a
    // key that signs nothing here.
    let signer = gpg.generate("Signer <signer@example.com>", "ed25519", "cert");
    gpg.add_subkey(&signer, "ed25519", "sign");
    let releaser = gpg.generate("Releaser <releaser@example.com>", "rsa2048", "sign");
    let stranger = gpg.generate("Stranger <stranger@example.com>", "ed25519", "sign");
    // A key made in 2020 whose signing subkey expired a day later; gpg signs the commit in 2020, while the subkey
    // was valid. Flux judges expiry at verification time, so it rejects the signature now.
    let past = Gpg::at("20200101T000000");
    let retired = past.generate("Retired <retired@example.com>", "ed25519", "cert");
    let retired_subkey = past.add_expiring_subkey(&retired, "ed25519", "sign", "1d");
    let keys = tempfile::tempdir().unwrap();
    let (ssh_key, ssh_pub) = ssh_keypair(keys.path(), "author");

    let repos = GitRepos::new();
    let sha = repos.commit_signed_by(
        "app.git",
        &[("a.yaml", "a")],
        "signed",
        Signer::Pgp(&gpg, &signer),
    );
    repos.tag_signed_by("app.git", "v1.0.0", Signer::Pgp(&gpg, &releaser));
    repos.commit("unsigned.git", "main", &[("a.yaml", "a")], "unsigned");
    let retired_sha = repos.commit_signed_by(
        "retired.git",
        &[("a.yaml", "a")],
        "signed in 2020",
        Signer::Pgp(&past, &retired),
    );
    let ssh_sha = repos.commit_signed("ssh.git", &[("a.yaml", "a")], "ssh-signed", &ssh_key);
    let server = GitHttpServer::start(repos.root.path(), GitHttpOptions::default())
        .await
        .unwrap();

    let fx = Fixture::start().await;
    fx.secret("signer", &[("signer.asc", &gpg.export(&[&signer]))])
        .await;
    fx.secret("releaser", &[("releaser.asc", &gpg.export(&[&releaser]))])
        .await;
    fx.secret("stranger", &[("stranger.asc", &gpg.export(&[&stranger]))])
        .await;
    fx.secret("retired", &[("retired.asc", &past.export(&[&retired]))])
        .await;
    // Several keys in one entry (one of them the signer's), another entry with one more, and an SSH key.
    fx.secret(
        "mixed",
        &[
            ("team.asc", &gpg.export(&[&stranger, &signer])),
            ("release.asc", &gpg.export(&[&releaser])),
            ("author.sshpub", &ssh_pub),
        ],
    )
    .await;
    fx.secret(
        "broken",
        &[(
            "broken.asc",
            "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nbm90IGEga2V5\n-----END PGP PUBLIC KEY BLOCK-----\n",
        )],
    )
    .await;

    let verified = |repo: &str, r: GitRepositoryRef, mode: GitVerificationMode, secret: &str| {
        let mut s = spec(&server.url(repo));
        s.reference = Some(r);
        s.verification = Some(GitRepositoryVerification {
            mode,
            secret_ref: LocalObjectReference {
                name: secret.into(),
            },
        });
        s
    };
    let main = || GitRepositoryRef {
        branch: Some("main".into()),
        ..Default::default()
    };
    let tag = || GitRepositoryRef {
        tag: Some("v1.0.0".into()),
        ..Default::default()
    };
    use GitVerificationMode::{Head, Tag, TagAndHead};
    for (name, repo, reference, mode, secret) in [
        ("head", "app.git", main(), Head, "signer"),
        ("tag", "app.git", tag(), Tag, "releaser"),
        ("tag-and-head", "app.git", tag(), TagAndHead, "mixed"),
        ("ssh-with-mixed", "ssh.git", main(), Head, "mixed"),
        ("stranger", "app.git", main(), Head, "stranger"),
        ("unsigned", "unsigned.git", main(), Head, "signer"),
        ("tag-wrong-key", "app.git", tag(), Tag, "signer"),
        ("broken-key", "app.git", main(), Head, "broken"),
        ("expired-subkey", "retired.git", main(), Head, "retired"),
    ] {
        fx.create(name, verified(repo, reference, mode, secret))
            .await;
    }

    let obj = fx.wait_ready("head").await;
    assert_invariants(&obj);
    let (status, reason, message) = condition(&obj, "SourceVerified").unwrap();
    assert_eq!((status.as_str(), reason.as_str()), ("True", "Succeeded"));
    assert_eq!(
        message,
        format!(
            "verified signature of\n\t- commit '{sha}' with key '{}'",
            key_id(&signer)
        )
    );
    assert!(obj.artifact().is_some());

    let obj = fx.wait_ready("tag").await;
    let (status, _, message) = condition(&obj, "SourceVerified").unwrap();
    assert_eq!(status, "True");
    assert_eq!(
        message,
        format!(
            "verified signature of\n\t- tag 'v1.0.0' with key '{}'",
            key_id(&releaser)
        )
    );
    assert_eq!(
        obj.status
            .as_ref()
            .unwrap()
            .source_verification_mode
            .as_deref(),
        Some("Tag")
    );

    let obj = fx.wait_ready("tag-and-head").await;
    assert_eq!(
        condition(&obj, "SourceVerified").unwrap().2,
        format!(
            "verified signature of\n\t- tag 'v1.0.0' with key '{}'\n\t- commit '{sha}' with key '{}'",
            key_id(&releaser),
            key_id(&signer)
        )
    );

    let obj = fx.wait_ready("ssh-with-mixed").await;
    let message = condition(&obj, "SourceVerified").unwrap().2;
    assert!(
        message.starts_with(&format!(
            "verified signature of\n\t- commit '{ssh_sha}' with key 'SHA256:"
        )),
        "{message}"
    );

    for (name, reason, says) in [
        (
            "stranger",
            "InvalidCommitSignature",
            format!("signature verification of commit '{sha}' failed: no matching key found"),
        ),
        (
            "unsigned",
            "InvalidCommitSignature",
            "unable to verify commit '".to_string(),
        ),
        (
            "tag-wrong-key",
            "InvalidTagSignature",
            "signature verification of tag 'v1.0.0' failed: no matching key found".to_string(),
        ),
        (
            "expired-subkey",
            "InvalidCommitSignature",
            format!(
                "signature verification of commit '{retired_sha}' failed: subkey '{}' of key '{}' expired",
                key_id(&retired_subkey),
                key_id(&retired)
            ),
        ),
        (
            "broken-key",
            "VerificationError",
            "unable to read PGP public keys from 'broken.asc' in secret 'default/broken'"
                .to_string(),
        ),
    ] {
        let obj = fx
            .wait(name, |o| condition(o, "SourceVerified").is_some())
            .await;
        assert_invariants(&obj);
        let (status, r, message) = condition(&obj, "SourceVerified").unwrap();
        assert_eq!(
            (status.as_str(), r.as_str()),
            ("False", reason),
            "{name}: {message}"
        );
        assert!(message.starts_with(&says), "{name}: {message}");
        assert_eq!(ready(&obj).0, "False", "{name}");
        assert!(
            obj.artifact().is_none(),
            "{name}: no artifact for an unverified source"
        );
    }
    fx.shutdown().await;
    server.shutdown().await;
}

/// Every status the object goes through, from a watch started before `act`, until `done` holds.
async fn statuses_until(
    fx: &Fixture,
    name: &str,
    act: impl std::future::Future<Output = ()>,
    done: impl Fn(&GitRepository) -> bool,
) -> Vec<GitRepository> {
    use futures::StreamExt;
    use kube::api::{WatchEvent, WatchParams};
    let rv = fx
        .api
        .list(&Default::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let mut stream = fx
        .api
        .watch(&WatchParams::default().timeout(60), &rv)
        .await
        .unwrap()
        .boxed();
    act.await;
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let event = tokio::time::timeout_at(deadline, stream.next())
            .await
            .unwrap_or_else(|_| {
                let last = seen.last().map(conditions_of);
                panic!("the end state was not seen within 30s; last conditions: {last:#?}")
            })
            .expect("the watch stays open")
            .unwrap();
        if let WatchEvent::Modified(obj) | WatchEvent::Added(obj) = event
            && obj.name_any() == name
        {
            let end = done(&obj);
            seen.push(obj);
            if end {
                return seen;
            }
        }
    }
}

#[tokio::test]
async fn a_new_revision_is_announced_before_the_artifact_is_built() {
    let repos = GitRepos::new();
    let sha1 = repos.commit("app.git", "main", &[("a.yaml", "a: 1\n")], "one");
    let server = GitHttpServer::start(repos.root.path(), GitHttpOptions::default())
        .await
        .unwrap();
    let fx = Fixture::start().await;
    let rev1 = format!("main@sha1:{sha1}");
    let stored = |rev: &str| {
        let message = format!("stored artifact for revision '{rev}'");
        move |o: &GitRepository| ready(o) == ("True".into(), "Succeeded".into(), message.clone())
    };
    let seen = statuses_until(
        &fx,
        "app",
        fx.create("app", {
            let mut s = spec(&server.url("app.git"));
            s.reference = Some(GitRepositoryRef {
                branch: Some("main".into()),
                ..Default::default()
            });
            s
        }),
        stored(&rev1),
    )
    .await;
    let building = format!("building artifact: new upstream revision '{rev1}'");
    let progress = seen
        .iter()
        .find(|o| condition(o, "Ready").is_some_and(|(_, _, m)| m == building))
        .unwrap_or_else(|| {
            panic!(
                "no progress status written: {:#?}",
                seen.iter().map(conditions_of).collect::<Vec<_>>()
            )
        });
    assert_eq!(
        condition(progress, "Ready"),
        Some(("Unknown".into(), "Progressing".into(), building.clone()))
    );
    assert_eq!(
        condition(progress, "Reconciling"),
        Some(("True".into(), "Progressing".into(), building))
    );
    assert!(progress.artifact().is_none(), "written before the artifact");
    assert!(
        condition(progress, "ArtifactOutdated").is_none(),
        "nothing stored to be outdated"
    );

    // A second commit: the stored artifact is marked outdated while the new one is built.
    let sha2 = repos.commit("app.git", "main", &[("a.yaml", "a: 2\n")], "two");
    let rev2 = format!("main@sha1:{sha2}");
    let seen = statuses_until(
        &fx,
        "app",
        async {
            fx.request_reconcile("app", "new-commit").await;
        },
        stored(&rev2),
    )
    .await;
    let message = format!("new upstream revision '{rev2}'");
    let progress = seen
        .iter()
        .find(|o| condition(o, "ArtifactOutdated").is_some())
        .expect("ArtifactOutdated written during the build");
    assert_eq!(
        condition(progress, "ArtifactOutdated"),
        Some(("True".into(), "NewRevision".into(), message.clone()))
    );
    assert_eq!(
        condition(progress, "Ready"),
        Some((
            "Unknown".into(),
            "Progressing".into(),
            format!("building artifact: {message}")
        ))
    );
    assert_eq!(progress.artifact().unwrap().revision, rev1);
    let done = seen.last().unwrap();
    assert!(condition(done, "ArtifactOutdated").is_none());
    assert!(condition(done, "Reconciling").is_none());
    fx.shutdown().await;
}
