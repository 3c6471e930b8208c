//! SOPS decryption with age and PGP keys against testenv: an encrypted Secret and an encrypted secretGenerator env
//! file are applied decrypted; a wrong key fails the build (`BuildFailed`), applies nothing and leaks no value.
//! PGP keys are made, and data keys encrypted, by the real `gpg`.

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
                "stringData": {"identity.agekey": format!("# test key\n{key}\n"), "sops.vault-token": "ignored"}}))
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

async fn secret_with(fx: &Fx, name: &str, entries: serde_json::Value) {
    let secrets: Api<Secret> = Api::namespaced(fx.client.clone(), "default");
    secrets
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": name}, "stringData": entries}))
                .unwrap(),
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn pgp_encrypted_secrets_are_applied_decrypted_with_an_asc_entry() {
    let fx = start().await;
    fx.create_repo("repo").await;
    // As in Flux's guide: `gpg --export-secret-keys --armor <fp> | kubectl create secret generic sops-gpg
    // --from-file=sops.asc=/dev/stdin`.
    let key = sops::GpgKey::generate("future-default");
    let (_, age_recipient) = sops::identity();
    secret_with(&fx, "sops-gpg", json!({"sops.asc": key.secret_key()})).await;

    // The Secret is encrypted for an age recipient too, whose identity the controller does not have.
    let secret = sops::encrypt_yaml(
        SECRET,
        &[age_recipient.as_str(), key.recipient().as_str()],
        &sops::Options::regex("^(data|stringData)$"),
    );
    assert!(secret.contains("-----BEGIN PGP MESSAGE-----") && !secret.contains("hunter2-plain"));
    let env = sops::encrypt_dotenv("API_TOKEN=tok-plain-value\n", &[key.recipient().as_str()]);
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
        json!({"decryption": {"provider": "sops", "secretRef": {"name": "sops-gpg"}}}),
    )
    .await;
    fx.wait_applied("app", REV1).await;
    let secrets: Api<Secret> = Api::namespaced(fx.client.clone(), "default");
    let db = secrets.get("db").await.unwrap();
    assert_eq!(decoded(&db, "password"), "hunter2-plain");
    assert_eq!(decoded(&db, "port"), "5432");
    let generated = secrets.get("generated").await.unwrap();
    assert_eq!(decoded(&generated, "API_TOKEN"), "tok-plain-value");

    // Another key: the build fails naming the key tried and the recipient, with no value or key material.
    let other = sops::GpgKey::generate("rsa2048");
    let other_secret = other.secret_key();
    secret_with(&fx, "other-gpg", json!({"sops.asc": other_secret})).await;
    fx.create_repo("other").await;
    fx.publish(
        "other",
        REV2,
        &[
            ("kustomization.yaml", "resources: [secret.yaml]\n"),
            ("secret.yaml", &secret),
        ],
    )
    .await;
    fx.create_ks(
        "wrong",
        json!({"sourceRef": {"kind": "GitRepository", "name": "other"},
               "decryption": {"provider": "sops", "secretRef": {"name": "other-gpg"}}}),
    )
    .await;
    let ks = fx.wait_failed("wrong", "BuildFailed").await;
    let message = &ks.condition("Ready").unwrap().message;
    assert!(
        message.contains(&format!(
            "none of the provided PGP secret keys ({} from 'sops.asc') opens the file's PGP recipients ({})",
            other.fingerprint, key.fingerprint
        )),
        "{message}"
    );
    assert!(ks.status.as_ref().unwrap().inventory_entries().is_empty());

    // An `.asc` entry without key data fails the import, naming the entry and the Secret (as Flux's gpg import).
    secret_with(&fx, "broken-gpg", json!({"sops.asc": "not a key"})).await;
    fx.create_ks(
        "broken",
        json!({"decryption": {"provider": "sops", "secretRef": {"name": "broken-gpg"}}}),
    )
    .await;
    let ks = fx.wait_failed("broken", "BuildFailed").await;
    assert_eq!(
        ks.condition("Ready").unwrap().message,
        "failed to import 'sops.asc' data from sops decryption Secret 'default/broken-gpg': no valid OpenPGP data found"
    );

    let key_lines: Vec<String> = [key.secret_key(), other_secret]
        .iter()
        .flat_map(|k| k.lines().map(str::to_string).collect::<Vec<_>>())
        .filter(|l| l.len() > 40 && !l.starts_with("-----"))
        .collect();
    for name in ["app", "wrong", "broken"] {
        let ks = fx.ks.get(name).await.unwrap();
        let messages = ks
            .status
            .as_ref()
            .unwrap()
            .conditions()
            .iter()
            .map(|c| c.message.clone())
            .chain(fx.events_for(name).into_iter().map(|e| e.message))
            .collect::<Vec<_>>();
        for m in messages {
            for plain in ["hunter2-plain", "tok-plain-value"] {
                assert!(!m.contains(plain), "value in {name}: {m}");
            }
            for line in &key_lines {
                assert!(!m.contains(line.as_str()), "key material in {name}: {m}");
            }
        }
    }
    fx.stop().await;
}
