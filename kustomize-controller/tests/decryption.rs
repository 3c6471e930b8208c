//! SOPS decryption with age keys against testenv: an encrypted Secret and an encrypted secretGenerator env file
//! are applied decrypted; a wrong key fails the build (`BuildFailed`), applies nothing and leaks no value.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test support code

#[path = "support/sops.rs"]
mod sops;
mod support;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PostParams};
use serde_json::json;
use support::*;

const REV1: &str = "main@sha1:1111111111111111111111111111111111111111";
const REV2: &str = "main@sha1:2222222222222222222222222222222222222222";

const SECRET: &str = "apiVersion: v1
kind: Secret
metadata:
  name: db
  namespace: default
stringData:
  password: hunter2-plain
  port: '5432'
";

const KUSTOMIZATION: &str = "resources: [secret.yaml]
generatorOptions:
  disableNameSuffixHash: true
secretGenerator:
- name: generated
  namespace: default
  envs: [app.env]
";

async fn key_secret(fx: &Fx, name: &str, key: &str) {
    let secrets: Api<Secret> = Api::namespaced(fx.client.clone(), "default");
    secrets
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": name},
                "stringData": {"identity.agekey": format!("# test key\n{key}\n"), "ignored.asc": "x"}}))
            .unwrap(),
        )
        .await
        .unwrap();
}

fn decoded(secret: &Secret, key: &str) -> String {
    String::from_utf8(secret.data.as_ref().unwrap()[key].0.clone()).unwrap()
}

#[tokio::test]
async fn sops_secrets_and_generator_files_are_applied_decrypted() {
    let fx = start().await;
    fx.create_repo("repo").await;
    let (key, recipient) = sops::identity();
    let (_, other) = sops::identity();
    let (wrong, _) = sops::identity();
    key_secret(&fx, "sops-keys", &key).await;
    key_secret(&fx, "wrong-keys", &wrong).await;

    let secret = sops::encrypt_yaml(
        SECRET,
        &[other.as_str(), recipient.as_str()],
        &sops::Options::regex("^(data|stringData)$"),
    );
    assert!(!secret.contains("hunter2-plain"));
    let env = sops::encrypt_dotenv("API_TOKEN=tok-plain-value\n", &[recipient.as_str()]);
    fx.publish(
        "repo",
        REV1,
        &[
            ("kustomization.yaml", KUSTOMIZATION),
            ("secret.yaml", &secret),
            ("app.env", &env),
        ],
    )
    .await;
    fx.create_ks(
        "app",
        json!({"decryption": {"provider": "sops", "secretRef": {"name": "sops-keys"}}}),
    )
    .await;
    fx.wait_applied("app", REV1).await;
    let secrets: Api<Secret> = Api::namespaced(fx.client.clone(), "default");
    let db = secrets.get("db").await.unwrap();
    assert_eq!(decoded(&db, "password"), "hunter2-plain");
    assert_eq!(decoded(&db, "port"), "5432");
    let generated = secrets.get("generated").await.unwrap();
    assert_eq!(decoded(&generated, "API_TOKEN"), "tok-plain-value");

    // The wrong key (on another source): the build fails, nothing is applied, and no value shows anywhere.
    fx.create_repo("other").await;
    let changed = SECRET.replace("hunter2-plain", "rotated-plain");
    let secret2 = sops::encrypt_yaml(
        &changed,
        &[recipient.as_str()],
        &sops::Options::regex("^(data|stringData)$"),
    );
    fx.publish(
        "other",
        REV2,
        &[
            ("kustomization.yaml", KUSTOMIZATION),
            ("secret.yaml", &secret2),
            ("app.env", &env),
        ],
    )
    .await;
    fx.create_ks(
        "wrong",
        json!({"sourceRef": {"kind": "GitRepository", "name": "other"},
               "decryption": {"provider": "sops", "secretRef": {"name": "wrong-keys"}}}),
    )
    .await;
    let ks = fx.wait_failed("wrong", "BuildFailed").await;
    let ready = ks.condition("Ready").unwrap();
    assert!(
        ready.message.starts_with("error decrypting sources: failed to decrypt './app.env': cannot get sops data key: none of the provided age identities matches"),
        "{}",
        ready.message
    );
    assert!(ks.status.as_ref().unwrap().inventory_entries().is_empty());
    assert_eq!(
        decoded(&secrets.get("db").await.unwrap(), "password"),
        "hunter2-plain"
    );

    // A missing key Secret is named.
    fx.create_ks(
        "nokeys",
        json!({"decryption": {"provider": "sops", "secretRef": {"name": "absent"}}}),
    )
    .await;
    let ks = fx.wait_failed("nokeys", "BuildFailed").await;
    assert_eq!(
        ks.condition("Ready").unwrap().message,
        "secrets \"absent\" not found"
    );

    // No decryption configured: the encrypted Secret is refused before apply.
    fx.create_ks("plain", json!({})).await;
    let ks = fx.wait_failed("plain", "ReconciliationFailed").await;
    assert!(
        ks.condition("Ready")
            .unwrap()
            .message
            .contains("is SOPS encrypted, configuring decryption is required"),
        "{:?}",
        ks.condition("Ready")
    );

    for name in ["app", "wrong", "nokeys", "plain"] {
        let ks = fx.ks.get(name).await.unwrap();
        for c in ks.status.as_ref().unwrap().conditions() {
            for plain in [
                "hunter2-plain",
                "rotated-plain",
                "tok-plain-value",
                &key,
                &wrong,
            ] {
                assert!(!c.message.contains(plain), "value in condition: {c:?}");
            }
        }
        for e in fx.events_for(name) {
            for plain in [
                "hunter2-plain",
                "rotated-plain",
                "tok-plain-value",
                &key,
                &wrong,
            ] {
                assert!(!e.message.contains(plain), "value in event: {e:?}");
            }
        }
    }
    fx.stop().await;
}
