//! A small SOPS v3 *encryptor* for tests (the `sops` binary is not installable here): values sealed with
//! AES-256-GCM under a random data key and a 32-byte nonce, the key path (`a:b:`) as additional data, the data key
//! wrapped for each age recipient as an armored age file and for each PGP recipient by the real `gpg` (as SOPS
//! does: the raw 32 bytes, `gpg --encrypt --armor -r <fingerprint>`), and the MAC (upper-case hex SHA-512 of
//! every value, in map-key order) sealed with `lastmodified` as additional data. Used by the decryptor's unit
//! tests and the integration tests.
//!
//! Recipients are strings: `age1...` for age, [`GpgKey::recipient`] (`pgp:<fingerprint>:<GNUPGHOME>`) for PGP.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)] // test support code

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::str::FromStr as _;

use aes_gcm::aead::consts::U32;
use aes_gcm::aead::rand_core::RngCore as _;
use aes_gcm::aead::{Aead as _, KeyInit as _, OsRng, Payload};
use aes_gcm::aes::Aes256;
use age::secrecy::ExposeSecret as _;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use kustomize::{Map, Value};
use sha2::Digest as _;

type Cipher = aes_gcm::AesGcm<Aes256, U32>;

pub const LAST_MODIFIED: &str = "2024-05-01T10:00:00Z";

/// Which leaves get encrypted: `encrypted_regex`, else SOPS' default `unencrypted_suffix: _unencrypted`.
#[derive(Default)]
pub struct Options {
    pub encrypted_regex: Option<String>,
}

impl Options {
    pub fn regex(r: &str) -> Options {
        Options {
            encrypted_regex: Some(r.to_string()),
        }
    }

    fn encrypted(&self, path: &[String]) -> bool {
        match &self.encrypted_regex {
            Some(r) => {
                let r = regex::Regex::new(r).unwrap();
                path.iter().any(|p| r.is_match(p))
            }
            None => !path.iter().any(|p| p.ends_with("_unencrypted")),
        }
    }

    fn write(&self, sops: &mut Map) {
        match &self.encrypted_regex {
            Some(r) => sops.insert("encrypted_regex".into(), Value::Str(r.clone())),
            None => sops.insert(
                "unencrypted_suffix".into(),
                Value::Str("_unencrypted".into()),
            ),
        };
    }
}

/// A fresh age identity: `(AGE-SECRET-KEY-1..., age1...)`.
pub fn identity() -> (String, String) {
    let id = age::x25519::Identity::generate();
    (
        id.to_string().expose_secret().to_string(),
        id.to_public().to_string(),
    )
}

/// A GnuPG key made by the real `gpg` in a home directory of its own (`GNUPGHOME` is set per command, never
/// for the process). Dropping it stops the home's gpg-agent and removes the directory with its sockets.
pub struct GpgKey {
    home: tempfile::TempDir,
    passphrase: String,
    /// The primary key's fingerprint (what `sops --pgp` takes and writes as `fp`).
    pub fingerprint: String,
}

impl GpgKey {
    /// A key without passphrase, with an encryption subkey: `future-default` (ed25519 primary key, cv25519
    /// subkey) or an algorithm such as `rsa2048` for both (the shape Flux's guide makes with
    /// `--full-generate-key`).
    pub fn generate(algo: &str) -> GpgKey {
        GpgKey::generate_with_passphrase(algo, "")
    }

    /// As [`GpgKey::generate`], the secret parts protected by `passphrase` (empty: none).
    pub fn generate_with_passphrase(algo: &str, passphrase: &str) -> GpgKey {
        let key = GpgKey::primary(algo, "default", passphrase);
        if algo != "future-default" {
            key.gpg(
                &[
                    "--pinentry-mode",
                    "loopback",
                    "--passphrase",
                    passphrase,
                    "--quick-add-key",
                    &key.fingerprint,
                    algo,
                    "encr",
                    "never",
                ],
                b"",
            );
        }
        key
    }

    /// A key of one primary key that encrypts itself (no subkey), e.g. `rsa2048`.
    pub fn generate_encrypting_primary(algo: &str) -> GpgKey {
        GpgKey::primary(algo, "cert,sign,encr", "")
    }

    fn primary(algo: &str, usage: &str, passphrase: &str) -> GpgKey {
        use std::os::unix::fs::PermissionsExt as _;
        let home = tempfile::tempdir().unwrap();
        // gpg warns about (and gpg-agent may refuse) a home others can read.
        std::fs::set_permissions(home.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        let mut key = GpgKey {
            home,
            passphrase: passphrase.to_string(),
            fingerprint: String::new(),
        };
        key.gpg(
            &[
                "--pinentry-mode",
                "loopback",
                "--passphrase",
                passphrase,
                "--quick-gen-key",
                "Riptide Test <test@riptide.invalid>",
                algo,
                usage,
                "never",
            ],
            b"",
        );
        let listing = String::from_utf8(key.gpg(&["--with-colons", "--list-keys"], b"")).unwrap();
        key.fingerprint = listing
            .lines()
            .find_map(|l| l.strip_prefix("fpr:"))
            .and_then(|l| l.split(':').find(|f| !f.is_empty()))
            .unwrap()
            .to_string();
        key
    }

    /// Runs `gpg --batch` in this key's home with `stdin`; panics with gpg's stderr when it fails.
    fn gpg(&self, args: &[&str], stdin: &[u8]) -> Vec<u8> {
        run_gpg(self.home.path(), args, stdin)
    }

    /// The armored secret key (primary key and subkeys), as `gpg --export-secret-keys --armor` writes it.
    pub fn secret_key(&self) -> String {
        let out = self.gpg(
            &[
                "--pinentry-mode",
                "loopback",
                "--passphrase",
                &self.passphrase,
                "--armor",
                "--export-secret-keys",
                &self.fingerprint,
            ],
            b"",
        );
        String::from_utf8(out).unwrap()
    }

    /// The armored public key.
    pub fn public_key(&self) -> String {
        String::from_utf8(self.gpg(&["--armor", "--export", &self.fingerprint], b"")).unwrap()
    }

    /// The recipient string the encryptor takes.
    pub fn recipient(&self) -> String {
        format!("pgp:{}:{}", self.fingerprint, self.home.path().display())
    }
}

impl Drop for GpgKey {
    fn drop(&mut self) {
        let _ = Command::new("gpgconf")
            .args(["--kill", "gpg-agent"])
            .env("GNUPGHOME", self.home.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

fn run_gpg(home: &Path, args: &[&str], stdin: &[u8]) -> Vec<u8> {
    let mut child = Command::new("gpg")
        .arg("--batch")
        .args(args)
        .env("GNUPGHOME", home)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("gpg is installed");
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "gpg {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// The data key encrypted by gpg for a `pgp:<fingerprint>:<home>` recipient, as SOPS' `encryptWithGnuPG` does.
fn wrap_pgp(key: &[u8], recipient: &str) -> (String, String) {
    let (fingerprint, home) = recipient
        .strip_prefix("pgp:")
        .and_then(|r| r.split_once(':'))
        .unwrap();
    let out = run_gpg(
        Path::new(home),
        &[
            "--yes",
            "--trust-model",
            "always",
            "--no-encrypt-to",
            "--armor",
            "--encrypt",
            "-r",
            fingerprint,
        ],
        key,
    );
    (
        fingerprint.to_string(),
        String::from_utf8(out).unwrap().trim().to_string(),
    )
}

struct State {
    key: [u8; 32],
    cipher: Cipher,
    hash: sha2::Sha512,
}

impl State {
    fn new() -> State {
        let mut key = [0u8; 32];
        OsRng.fill_bytes(&mut key);
        State {
            key,
            cipher: Cipher::new_from_slice(&key).unwrap(),
            hash: sha2::Sha512::new(),
        }
    }

    fn seal(&self, plain: &[u8], kind: &str, aad: &str) -> String {
        if plain.is_empty() {
            return String::new();
        }
        let mut iv = [0u8; 32];
        OsRng.fill_bytes(&mut iv);
        let out = self
            .cipher
            .encrypt(
                aes_gcm::Nonce::<U32>::from_slice(&iv),
                Payload {
                    msg: plain,
                    aad: aad.as_bytes(),
                },
            )
            .unwrap();
        let (data, tag) = out.split_at(out.len() - 16);
        format!(
            "ENC[AES256_GCM,data:{},iv:{},tag:{},type:{kind}]",
            B64.encode(data),
            B64.encode(iv),
            B64.encode(tag)
        )
    }

    fn leaf(&mut self, v: &Value, path: &[String], opts: &Options) -> Value {
        let (bytes, kind) = match v {
            Value::Str(s) => (s.as_bytes().to_vec(), "str"),
            Value::Int(i) => (i.to_string().into_bytes(), "int"),
            Value::Float(f) => (f.to_string().into_bytes(), "float"),
            Value::Bool(b) => (if *b { "True" } else { "False" }.into(), "bool"),
            other => return other.clone(),
        };
        self.hash.update(&bytes);
        if !opts.encrypted(path) {
            return v.clone();
        }
        Value::Str(self.seal(&bytes, kind, &format!("{}:", path.join(":"))))
    }

    fn walk(&mut self, v: &Value, path: &mut Vec<String>, opts: &Options) -> Value {
        match v {
            Value::Map(m) => Value::Map(
                m.iter()
                    .map(|(k, c)| {
                        path.push(k.clone());
                        let out = self.walk(c, path, opts);
                        path.pop();
                        (k.clone(), out)
                    })
                    .collect(),
            ),
            Value::Seq(s) => Value::Seq(s.iter().map(|c| self.walk(c, path, opts)).collect()),
            leaf => self.leaf(leaf, path, opts),
        }
    }

    /// The `sops` metadata: age and pgp stanzas, lastmodified, the sealed MAC and the rule.
    fn metadata(self, recipients: &[&str], opts: &Options) -> Map {
        let mac = hex::encode_upper(self.hash.clone().finalize());
        let mut sops = Map::new();
        let (pgp, age): (Vec<&str>, Vec<&str>) =
            recipients.iter().partition(|r| r.starts_with("pgp:"));
        let age: Vec<Value> = age
            .iter()
            .map(|r| {
                let mut m = Map::new();
                m.insert("recipient".into(), Value::Str(r.to_string()));
                m.insert("enc".into(), Value::Str(wrap(&self.key, r)));
                Value::Map(m)
            })
            .collect();
        let pgp: Vec<Value> = pgp
            .iter()
            .map(|r| {
                let (fp, enc) = wrap_pgp(&self.key, r);
                let mut m = Map::new();
                m.insert("created_at".into(), Value::Str(LAST_MODIFIED.into()));
                m.insert("enc".into(), Value::Str(enc));
                m.insert("fp".into(), Value::Str(fp));
                Value::Map(m)
            })
            .collect();
        if !age.is_empty() || pgp.is_empty() {
            sops.insert("age".into(), Value::Seq(age));
        }
        if !pgp.is_empty() {
            sops.insert("pgp".into(), Value::Seq(pgp));
        }
        sops.insert("lastmodified".into(), Value::Str(LAST_MODIFIED.into()));
        sops.insert(
            "mac".into(),
            Value::Str(self.seal(mac.as_bytes(), "str", LAST_MODIFIED)),
        );
        sops.insert("version".into(), Value::Str("3.9.0".into()));
        opts.write(&mut sops);
        sops
    }
}

/// The data key as an armored age file for `recipient`.
fn wrap(key: &[u8], recipient: &str) -> String {
    let r = age::x25519::Recipient::from_str(recipient).unwrap();
    let enc = age::Encryptor::with_recipients(std::iter::once(&r as &dyn age::Recipient)).unwrap();
    let mut out = Vec::new();
    let armored =
        age::armor::ArmoredWriter::wrap_output(&mut out, age::armor::Format::AsciiArmor).unwrap();
    let mut w = enc.wrap_output(armored).unwrap();
    w.write_all(key).unwrap();
    w.finish().and_then(|a| a.finish()).unwrap();
    String::from_utf8(out).unwrap()
}

fn encrypt_value(plain: &Value, recipients: &[&str], opts: &Options) -> Value {
    let mut st = State::new();
    let Value::Map(mut doc) = st.walk(plain, &mut Vec::new(), opts) else {
        panic!("a SOPS document is a map");
    };
    doc.insert("sops".into(), Value::Map(st.metadata(recipients, opts)));
    Value::Map(doc)
}

/// Encrypts a YAML document (keys end up sorted, as kustomize prints them).
pub fn encrypt_yaml(plain: &str, recipients: &[&str], opts: &Options) -> String {
    let v = kustomize::yaml::parse_one(plain).unwrap();
    kustomize::yaml::emit(&encrypt_value(&v, recipients, opts))
}

fn to_json(v: &Value) -> serde_json::Value {
    match v {
        Value::Bool(b) => (*b).into(),
        Value::Int(i) => (*i).into(),
        Value::Float(f) => (*f).into(),
        Value::Str(s) => s.clone().into(),
        Value::Seq(s) => s.iter().map(to_json).collect(),
        Value::Map(m) => {
            serde_json::Value::Object(m.iter().map(|(k, v)| (k.clone(), to_json(v))).collect())
        }
        _ => serde_json::Value::Null,
    }
}

/// Encrypts a JSON document with SOPS' defaults.
pub fn encrypt_json(plain: &str, recipients: &[&str]) -> String {
    let v = kustomize::yaml::parse_one(plain).unwrap();
    serde_json::to_string_pretty(&to_json(&encrypt_value(
        &v,
        recipients,
        &Options::default(),
    )))
    .unwrap()
}

/// Encrypts a file the way `sops` does for unknown extensions: `{"data": ENC[...], "sops": {...}}`.
pub fn encrypt_binary(plain: &[u8], recipients: &[&str]) -> String {
    let mut m = Map::new();
    m.insert(
        "data".into(),
        Value::Str(String::from_utf8(plain.to_vec()).unwrap()),
    );
    serde_json::to_string_pretty(&to_json(&encrypt_value(
        &Value::Map(m),
        recipients,
        &Options::default(),
    )))
    .unwrap()
}

/// Encrypts a dotenv file: values and comments sealed, metadata flattened into `sops_*` lines.
pub fn encrypt_dotenv(plain: &str, recipients: &[&str]) -> String {
    let opts = Options::default();
    let mut st = State::new();
    let mut out = String::new();
    for line in plain.lines().filter(|l| !l.is_empty()) {
        if let Some(c) = line.strip_prefix('#') {
            out.push_str(&format!("#{}\n", st.seal(c.as_bytes(), "comment", ":")));
            continue;
        }
        let (k, v) = line.split_once('=').unwrap();
        let sealed = st.leaf(&Value::Str(v.replace("\\n", "\n")), &[k.to_string()], &opts);
        out.push_str(&format!(
            "{k}={}\n",
            sealed.as_str().unwrap().replace('\n', "\\n")
        ));
    }
    let sops = st.metadata(recipients, &opts);
    let mut flat = Vec::new();
    for (k, v) in &sops {
        match v {
            Value::Seq(items) => {
                for (i, item) in items.iter().enumerate() {
                    for (ik, iv) in item.as_map().unwrap() {
                        flat.push((format!("sops_{k}__list_{i}__map_{ik}"), iv.clone()));
                    }
                }
            }
            other => flat.push((format!("sops_{k}"), other.clone())),
        }
    }
    for (k, v) in flat {
        out.push_str(&format!(
            "{k}={}\n",
            v.as_str().unwrap().replace('\n', "\\n")
        ));
    }
    out
}
