//! SOPS decryption with age identities and OpenPGP secret keys (`spec.decryption.provider: sops`), as Flux's
//! kustomize-controller does it:
//! files referenced by `secretGenerator` (`files`, `envs`) and `patches[].path` are decrypted in place before the
//! build, then every built object carrying SOPS metadata (and every Secret data entry holding a SOPS document) is
//! decrypted before post-build substitution.
//!
//! The SOPS v3 format: each selected leaf is `ENC[AES256_GCM,data:..,iv:..,tag:..,type:..]`, sealed with the
//! 32-byte data key under a 32-byte nonce, the additional data being the leaf's map-key path joined and ended
//! with `:` (sequence indices take no part). The data key is wrapped for each recipient; here age recipients
//! (an armored age file, opened with the `.agekey` identities) and PGP recipients (an armored OpenPGP message
//! holding the raw data key, opened with the secret keys of the `.asc` entries, see [`pgp`]) can be opened, tried
//! in turn until one yields the key. Like Flux, the MAC is not verified by default: kustomize adds and reorders
//! fields, which changes it.
//!
//! Messages never carry a decrypted value or key material.

use std::collections::HashSet;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::str::FromStr as _;

use aes_gcm::aead::consts::U32;
use aes_gcm::aead::{Aead as _, KeyInit as _, Payload};
use aes_gcm::aes::Aes256;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use common::api::kustomize_v1::Kustomization;
use common::api::meta::annotations::{DISABLED_VALUE, KUSTOMIZE_DECRYPT};
use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client, ResourceExt as _};
use kustomize::{Map, Value as KValue};
use sha2::Digest as _;

use super::build::KUSTOMIZATION_FILES;

mod pgp;

/// Secret entries with this extension hold age identities.
pub const AGE_KEY_EXT: &str = ".agekey";
/// Secret entries with this extension hold ASCII-armored OpenPGP secret keys.
pub const PGP_KEY_EXT: &str = ".asc";
/// Flux's limit on the size of an encrypted file.
const MAX_FILE_SIZE: u64 = 5 << 20;
/// SOPS' default when a file names no encryption rule.
const DEFAULT_UNENCRYPTED_SUFFIX: &str = "_unencrypted";
/// SOPS' MAC seed when `mac_only_encrypted` is set.
const MAC_ONLY_ENCRYPTED_INIT: [u8; 32] = [
    0x8a, 0x3f, 0xd2, 0xad, 0x54, 0xce, 0x66, 0x52, 0x7b, 0x10, 0x34, 0xf3, 0xd1, 0x47, 0xbe, 0x0b,
    0x0b, 0x97, 0x5b, 0x3b, 0xf4, 0x4f, 0x72, 0xc6, 0xfd, 0xad, 0xec, 0x81, 0x76, 0xf2, 0x7d, 0x69,
];
/// Recipient kinds SOPS knows besides age and PGP, all out of Riptide's reach.
const OTHER_KEY_KINDS: &[&str] = &["kms", "gcp_kms", "azure_kv", "hc_vault", "hckms"];

type Aes256Gcm32 = aes_gcm::AesGcm<Aes256, U32>;

/// Why decryption failed. Flux reports all of these as `BuildFailed`.
#[derive(Debug, thiserror::Error)]
pub enum DecryptError {
    /// The Secret does not exist (Flux passes the API error on as it is).
    #[error("secrets \"{0}\" not found")]
    SecretNotFound(String),
    #[error("cannot get sops {what} Secret '{secret}': {reason}")]
    GetSecret {
        what: &'static str,
        secret: String,
        reason: String,
    },
    #[error("failed to import '{entry}' data from sops {what} Secret '{secret}': {reason}")]
    Import {
        what: &'static str,
        entry: String,
        secret: String,
        reason: String,
    },
    #[error("error decrypting sources: {0}")]
    Sources(String),
    #[error("decryption failed for '{object}': {reason}")]
    Resource { object: String, reason: String },
}

/// The SOPS file formats, chosen by file extension as SOPS does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Yaml,
    Json,
    Dotenv,
    Ini,
    Binary,
}

impl Format {
    /// The format of a file or Secret key (`.dockerconfigjson` is JSON, unknown extensions binary).
    pub fn for_path(path: &str) -> Format {
        if path.ends_with(".dockerconfigjson") || path.ends_with(".json") {
            Format::Json
        } else if path.ends_with(".yaml") || path.ends_with(".yml") {
            Format::Yaml
        } else if path.ends_with(".env") {
            Format::Dotenv
        } else if path.ends_with(".ini") {
            Format::Ini
        } else {
            Format::Binary
        }
    }

    /// The bytes that show an encrypted document of this format.
    fn marker(self) -> &'static str {
        match self {
            Format::Binary | Format::Json => "\"mac\": \"ENC[",
            Format::Dotenv => "sops_mac=ENC[",
            Format::Ini => "[sops]",
            Format::Yaml => "mac: ENC[",
        }
    }

    /// The format whose marker `data` holds, if any.
    fn detect(data: &[u8]) -> Option<Format> {
        let text = String::from_utf8_lossy(data);
        [Format::Json, Format::Yaml, Format::Dotenv, Format::Ini]
            .into_iter()
            .find(|f| text.contains(f.marker()))
    }

    fn name(self) -> &'static str {
        match self {
            Format::Yaml => "YAML",
            Format::Json => "JSON",
            Format::Dotenv => "dotenv",
            Format::Ini => "INI",
            Format::Binary => "binary",
        }
    }
}

/// Whether an object opts out with `kustomize.toolkit.fluxcd.io/decrypt: disabled`.
pub fn disabled(obj: &KValue) -> bool {
    obj.get_path(&["metadata", "annotations", KUSTOMIZE_DECRYPT])
        .and_then(KValue::as_str)
        .is_some_and(|v| v.eq_ignore_ascii_case(DISABLED_VALUE))
}

/// The age identities and OpenPGP secret keys a Kustomization may decrypt with.
#[derive(Default)]
pub struct Decryptor {
    identities: Vec<age::x25519::Identity>,
    pgp_keys: Vec<pgp::PgpKey>,
    check_mac: bool,
}

impl std::fmt::Debug for Decryptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decryptor")
            .field("identities", &self.identities.len())
            .field("pgp_keys", &self.pgp_keys.len())
            .field("check_mac", &self.check_mac)
            .finish()
    }
}

/// Reads the keys for `obj`: `spec.decryption.secretRef` in its namespace, else the controller-wide
/// `--sops-age-secret` (`(namespace, name)`). `None` when the Kustomization has no `spec.decryption`.
pub async fn load(
    client: &Client,
    obj: &Kustomization,
    global: Option<&(String, String)>,
) -> Result<Option<Decryptor>, DecryptError> {
    let Some(decryption) = &obj.spec.decryption else {
        return Ok(None);
    };
    let mut decryptor = Decryptor::default();
    let (namespace, name, what, only_age) = match (&decryption.secret_ref, global) {
        (Some(r), _) => (
            obj.namespace().unwrap_or_default(),
            r.name.clone(),
            "decryption",
            false,
        ),
        (None, Some((ns, name))) => (ns.clone(), name.clone(), "SOPS age decryption", true),
        (None, None) => return Ok(Some(decryptor)),
    };
    let api: Api<Secret> = Api::namespaced(client.clone(), &namespace);
    let secret = match api.get_opt(&name).await {
        Ok(Some(s)) => s,
        Ok(None) => return Err(DecryptError::SecretNotFound(name)),
        Err(e) => {
            return Err(DecryptError::GetSecret {
                what,
                secret: format!("{namespace}/{name}"),
                reason: super::discovery::api_message(&e),
            });
        }
    };
    for (entry, value) in secret.data.unwrap_or_default() {
        let imported = if entry.ends_with(AGE_KEY_EXT) {
            decryptor.import(&String::from_utf8_lossy(&value.0))
        } else if !only_age && entry.ends_with(PGP_KEY_EXT) {
            decryptor.import_pgp(&entry, &value.0)
        } else {
            if !only_age && entry.starts_with("sops.") {
                tracing::debug!(
                    entry,
                    "ignoring a decryption key kind Riptide does not support"
                );
            }
            continue;
        };
        imported.map_err(|reason| DecryptError::Import {
            what,
            entry: entry.clone(),
            secret: format!("{namespace}/{name}"),
            reason,
        })?;
    }
    Ok(Some(decryptor))
}

impl Decryptor {
    /// Adds the age identities in `text`: one or more per line, `#` comments and blank lines skipped.
    pub fn import(&mut self, text: &str) -> Result<(), String> {
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            for word in line.split_whitespace() {
                let id = age::x25519::Identity::from_str(word).map_err(|_| {
                    "malformed age identity (expected AGE-SECRET-KEY-1...)".to_string()
                })?;
                self.identities.push(id);
            }
        }
        Ok(())
    }

    /// Adds the OpenPGP secret keys of Secret entry `entry` (armored blocks, several keys each, or binary data).
    /// Public keys are passed over, as are, with a warning, keys protected by a passphrase: like Flux's
    /// `gpg --batch --import`, the import accepts them, and like Flux's keyring they cannot decrypt (the data key
    /// error then names them). Data that holds no OpenPGP key, or a block that does not parse, is an error.
    pub fn import_pgp(&mut self, entry: &str, data: &[u8]) -> Result<(), String> {
        for key in pgp::parse_secret_keys(data)? {
            let key = pgp::PgpKey {
                entry: entry.to_string(),
                key,
            };
            if key.locked() {
                tracing::warn!(
                    entry,
                    fingerprint = key.fingerprint(),
                    "PGP secret key is protected by a passphrase and cannot decrypt"
                );
            }
            self.pgp_keys.push(key);
        }
        Ok(())
    }

    /// Also verify the SOPS MAC (Flux leaves this off).
    pub fn with_mac_check(mut self, check: bool) -> Self {
        self.check_mac = check;
        self
    }

    /// Decrypts, in place, the SOPS-encrypted files the kustomization at `dir` (and those it reaches through
    /// `resources` and `components`) names in `secretGenerator` `files`/`envs` and `patches[].path`.
    pub fn decrypt_sources(&self, root: &Path, dir: &Path) -> Result<(), DecryptError> {
        let mut visited_dirs = HashSet::new();
        let mut decrypted = HashSet::new();
        self.visit_dir(root, dir, &mut visited_dirs, &mut decrypted, true)
            .map_err(|e| match e {
                Visit::Ignore(m) | Visit::Fail(m) => DecryptError::Sources(m),
            })
    }

    fn visit_dir(
        &self,
        root: &Path,
        dir: &Path,
        visited: &mut HashSet<PathBuf>,
        decrypted: &mut HashSet<PathBuf>,
        top: bool,
    ) -> Result<(), Visit> {
        let dir = confine(root, dir);
        if !visited.insert(dir.clone()) {
            return Ok(());
        }
        match std::fs::symlink_metadata(&dir) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => return Err(Visit::Ignore("not a directory".into())),
            Err(_) if !top => return Err(Visit::Ignore(String::new())),
            Err(_) => {
                return Err(Visit::Fail(format!(
                    "lstat {}: no such file or directory",
                    rel(root, &dir)
                )));
            }
        }
        let mut found = None;
        for name in KUSTOMIZATION_FILES {
            let p = dir.join(name);
            if let Ok(m) = std::fs::symlink_metadata(&p) {
                if !m.is_file() {
                    return Err(Visit::Fail(format!("expected {name} to be a regular file")));
                }
                if found.is_some() {
                    return Err(Visit::Fail("found multiple kustomization files".into()));
                }
                found = Some(p);
            }
        }
        let Some(file) = found else {
            return Err(Visit::Fail("no kustomization file found".into()));
        };
        let text = std::fs::read_to_string(&file)
            .map_err(|e| Visit::Fail(format!("failed to read kustomization file: {e}")))?;
        let kus = kustomize::yaml::parse_one(&text).map_err(|e| {
            Visit::Fail(format!(
                "failed to unmarshal kustomization file from '{}': {e}",
                rel(root, &file)
            ))
        })?;
        let strings = |v: Option<&KValue>| -> Vec<String> {
            v.and_then(KValue::as_seq)
                .map(|s| {
                    s.iter()
                        .filter_map(|i| i.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default()
        };
        for generator in kus
            .get("secretGenerator")
            .and_then(KValue::as_seq)
            .into_iter()
            .flatten()
        {
            for source in strings(generator.get("files")) {
                let (key, path) = source.split_once('=').unwrap_or((&source, &source));
                self.decrypt_file(root, &dir.join(path), Format::for_path(key), decrypted)
                    .map_err(Visit::Fail)?;
            }
            for env in strings(generator.get("envs")) {
                let format = match Format::for_path(&env) {
                    Format::Binary => Format::Dotenv,
                    f => f,
                };
                self.decrypt_file(root, &dir.join(&env), format, decrypted)
                    .map_err(Visit::Fail)?;
            }
        }
        for patch in kus
            .get("patches")
            .and_then(KValue::as_seq)
            .into_iter()
            .flatten()
        {
            let Some(path) = patch.get("path").and_then(KValue::as_str) else {
                continue;
            };
            if path.is_empty() || path.contains("://") {
                continue;
            }
            self.decrypt_file(root, &dir.join(path), Format::for_path(path), decrypted)
                .map_err(Visit::Fail)?;
        }
        let mut refs = strings(kus.get("resources"));
        refs.extend(strings(kus.get("components")));
        for r in refs {
            match self.visit_dir(root, &dir.join(&r), visited, decrypted, false) {
                Ok(()) | Err(Visit::Ignore(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn decrypt_file(
        &self,
        root: &Path,
        path: &Path,
        format: Format,
        decrypted: &mut HashSet<PathBuf>,
    ) -> Result<(), String> {
        let path = confine(root, path);
        if decrypted.contains(&path) {
            return Ok(());
        }
        let shown = rel(root, &path);
        let meta = std::fs::symlink_metadata(&path)
            .map_err(|_| format!("lstat {shown}: no such file or directory"))?;
        if !meta.is_file() {
            return Err(
                "cannot decrypt irregular file as it has file mode type bits set".to_string(),
            );
        }
        if meta.len() > MAX_FILE_SIZE {
            return Err(format!(
                "cannot decrypt file with size ({} bytes) exceeding limit ({MAX_FILE_SIZE})",
                meta.len()
            ));
        }
        let data = std::fs::read(&path).map_err(|e| format!("read {shown}: {e}"))?;
        if !String::from_utf8_lossy(&data).contains(format.marker()) {
            return Ok(());
        }
        let out = self
            .decrypt_bytes(&data, format, format)
            .map_err(|e| format!("failed to decrypt '{shown}': {e}"))?;
        std::fs::write(&path, out).map_err(|e| {
            format!(
                "error writing sops decrypted {} data to {} file: {e}",
                format.name(),
                format.name()
            )
        })?;
        decrypted.insert(path);
        Ok(())
    }

    /// Decrypts a built object: the whole object when it carries SOPS metadata, else (Secrets) each data entry
    /// that holds a SOPS document. Returns whether anything changed.
    pub fn decrypt_resource(&self, obj: &mut KValue) -> Result<bool, DecryptError> {
        if disabled(obj) {
            return Ok(false);
        }
        let kind = obj.str_at(&["kind"]).unwrap_or_default().to_string();
        let name = obj
            .str_at(&["metadata", "name"])
            .unwrap_or_default()
            .to_string();
        let namespace = obj
            .str_at(&["metadata", "namespace"])
            .unwrap_or_default()
            .to_string();
        let fail = |obj: &KValue, reason: String| DecryptError::Resource {
            object: format!("{}/{name}", gvk(obj)),
            reason,
        };
        let has_mac = obj.get_path(&["sops", "mac"]).is_some_and(|m| {
            !matches!(m, KValue::Null | KValue::EmptyNull) && m.as_str() != Some("")
        });
        if has_mac {
            let mut docs = vec![obj.clone()];
            return match self.decrypt_docs(&mut docs) {
                Ok(()) => {
                    if let Some(doc) = docs.pop() {
                        *obj = doc;
                    }
                    Ok(true)
                }
                Err(e) => Err(fail(
                    obj,
                    format!("failed to decrypt and format '{namespace}/{name}' {kind} data: {e}"),
                )),
            };
        }
        if kind != "Secret" {
            return Ok(false);
        }
        let mut changed = false;
        let mut failure = None;
        if let Some(data) = obj.get_mut("data").and_then(KValue::as_map_mut) {
            for (key, value) in data.iter_mut() {
                let Some(bytes) = value.as_str().and_then(|v| B64.decode(v).ok()) else {
                    continue;
                };
                let Some(input) = Format::detect(&bytes) else {
                    continue;
                };
                match self.decrypt_bytes(&bytes, input, Format::for_path(key)) {
                    Ok(out) => {
                        *value = KValue::Str(B64.encode(out));
                        changed = true;
                    }
                    Err(e) => {
                        failure = Some(format!(
                            "failed to decrypt and format '{namespace}/{name}' Secret field '{key}': {e}"
                        ));
                        break;
                    }
                }
            }
        }
        match failure {
            Some(reason) => Err(fail(obj, reason)),
            None => Ok(changed),
        }
    }

    /// Decrypts one SOPS document of format `input` and writes it as `output`.
    pub fn decrypt_bytes(
        &self,
        data: &[u8],
        input: Format,
        output: Format,
    ) -> Result<Vec<u8>, String> {
        let text = std::str::from_utf8(data)
            .map_err(|_| format!("failed to load encrypted {} data: not UTF-8", input.name()))?;
        let load_err = |e: String| format!("failed to load encrypted {} data: {e}", input.name());
        let mut doc = match input {
            Format::Yaml => Doc::Maps(
                kustomize::yaml::parse_documents(text)
                    .map_err(load_err)?
                    .into_iter()
                    .filter(|d| !matches!(d, KValue::Null | KValue::EmptyNull))
                    .collect(),
            ),
            Format::Json | Format::Binary => {
                let v: serde_json::Value =
                    serde_json::from_str(text).map_err(|e| load_err(e.to_string()))?;
                Doc::Maps(vec![from_json(&v)])
            }
            Format::Dotenv => Doc::Lines(parse_dotenv(text).map_err(load_err)?),
            Format::Ini => return Err("SOPS INI files are not supported by Riptide".into()),
        };
        match &mut doc {
            Doc::Maps(docs) => self.decrypt_docs(docs)?,
            Doc::Lines(lines) => self.decrypt_lines(lines)?,
        }
        emit(doc, output).map_err(|e| {
            format!(
                "failed to emit encrypted {} file as decrypted {}: {e}",
                input.name(),
                output.name()
            )
        })
    }

    /// Decrypts YAML/JSON documents; the metadata is taken from the first and removed from all.
    fn decrypt_docs(&self, docs: &mut [KValue]) -> Result<(), String> {
        let mut meta = None;
        for d in docs.iter_mut() {
            if let Some(m) = d.as_map_mut().and_then(|m| m.remove("sops"))
                && meta.is_none()
            {
                meta = Some(m);
            }
        }
        let meta = Metadata::parse(&meta.ok_or("sops metadata not found")?)?;
        let key = self.data_key(&meta)?;
        let mut walker = Walker::new(&meta, key)?;
        for d in docs.iter_mut() {
            walker
                .walk(d)
                .map_err(|e| format!("error decrypting sops tree: Error walking tree: {e}"))?;
        }
        walker.verify(self.check_mac)
    }

    fn decrypt_lines(&self, lines: &mut Vec<Line>) -> Result<(), String> {
        let mut flat = Vec::new();
        lines.retain(|l| match l {
            Line::Entry(k, v) if k.starts_with("sops_") => {
                flat.push((k["sops_".len()..].to_string(), v.clone()));
                false
            }
            _ => true,
        });
        if flat.is_empty() {
            return Err("sops metadata not found".into());
        }
        let meta = Metadata::parse(&unflatten(flat)?)?;
        let key = self.data_key(&meta)?;
        let mut walker = Walker::new(&meta, key)?;
        for line in lines.iter_mut() {
            match line {
                Line::Entry(k, v) => {
                    walker.path.push(k.clone());
                    walker.walk(v).map_err(|e| {
                        format!("error decrypting sops tree: Error walking tree: {e}")
                    })?;
                    walker.path.pop();
                }
                // SOPS encrypts comments too, and keeps those that do not decrypt as they are.
                Line::Comment(c) if meta.encrypted(&[]) => {
                    if let Ok(KValue::Str(plain)) = decrypt_value(&walker.cipher, c, ":") {
                        *c = plain;
                    }
                }
                Line::Comment(_) => {}
            }
        }
        walker.verify(self.check_mac)
    }

    /// Opens the data key with the first recipient a key opens: age recipients with the identities, then PGP
    /// recipients with the secret keys (SOPS tries every key of the group until one works). When none does, the
    /// error says what was tried, by recipient and key fingerprint.
    fn data_key(&self, meta: &Metadata) -> Result<[u8; 32], String> {
        let err = |m: String| format!("cannot get sops data key: {m}");
        if meta.groups > 1 {
            return Err(err(
                "the file uses several key groups (Shamir secret sharing), which Riptide does not support".into(),
            ));
        }
        if !self.identities.is_empty() {
            for (_, enc) in &meta.age {
                if let Some(key) = self.open(enc) {
                    return Ok(key);
                }
            }
        }
        let mut pgp_notes = Vec::new();
        if !self.pgp_keys.is_empty() {
            for (fp, enc) in &meta.pgp {
                match pgp::open(&self.pgp_keys, fp, enc) {
                    pgp::Opened::Key(key) => return Ok(key),
                    pgp::Opened::Not(notes) => pgp_notes.extend(notes),
                }
            }
        }
        let mut tried = Vec::new();
        if !meta.age.is_empty() {
            tried.push(if self.identities.is_empty() {
                format!(
                    "no age identities were provided (Secret entries ending with {AGE_KEY_EXT}) to decrypt for {}",
                    meta.age_recipients()
                )
            } else {
                format!(
                    "none of the provided age identities matches the file's age recipients ({})",
                    meta.age_recipients()
                )
            });
        }
        if !meta.pgp.is_empty() {
            tried.push(if self.pgp_keys.is_empty() {
                format!(
                    "no PGP secret keys were provided (Secret entries ending with {PGP_KEY_EXT}) to decrypt for {}",
                    meta.pgp_recipients()
                )
            } else {
                let keys: Vec<String> = self
                    .pgp_keys
                    .iter()
                    .map(|k| format!("{} from '{}'", k.fingerprint(), k.entry))
                    .collect();
                format!(
                    "none of the provided PGP secret keys ({}) opens the file's PGP recipients ({})",
                    keys.join(", "),
                    meta.pgp_recipients()
                )
            });
            tried.extend(pgp_notes);
        }
        if tried.is_empty() {
            tried.push("the file has no age or PGP recipient".to_string());
        }
        let others = if meta.others.is_empty() {
            String::new()
        } else {
            format!(
                "; its other recipients ({}) cannot be used by Riptide, which supports age and PGP keys only",
                meta.others.join(", ")
            )
        };
        Err(err(format!("{}{others}", tried.join("; "))))
    }

    fn open(&self, enc: &str) -> Option<[u8; 32]> {
        let reader = age::armor::ArmoredReader::new(enc.trim().as_bytes());
        let decryptor = age::Decryptor::new_buffered(reader).ok()?;
        let mut out = Vec::new();
        decryptor
            .decrypt(self.identities.iter().map(|i| i as &dyn age::Identity))
            .ok()?
            .read_to_end(&mut out)
            .ok()?;
        out.try_into().ok()
    }
}

enum Visit {
    /// A reference that is not a local directory: skipped, like kustomize remote bases.
    Ignore(String),
    Fail(String),
}

/// `path` lexically confined to `root` (`..` never climbs above it; absolute paths are taken inside `root`).
fn confine(root: &Path, path: &Path) -> PathBuf {
    super::build::secure_join(root, path.strip_prefix(root).unwrap_or(path))
}

fn rel(root: &Path, p: &Path) -> String {
    format!("./{}", p.strip_prefix(root).unwrap_or(p).display())
}

/// kustomize's `Gvk.String()`: `~G_v1_Secret`, `apps_v1_Deployment`.
fn gvk(obj: &KValue) -> String {
    let (group, version) =
        super::inventory::split_api_version(obj.str_at(&["apiVersion"]).unwrap_or_default());
    let or = |s: &str, d: &str| {
        if s.is_empty() {
            d.to_string()
        } else {
            s.to_string()
        }
    };
    format!(
        "{}_{}_{}",
        or(group, "~G"),
        or(version, "~V"),
        or(obj.str_at(&["kind"]).unwrap_or_default(), "~K")
    )
}

/// The parts of the `sops` metadata decryption needs.
struct Metadata {
    /// `(recipient, armored data key)`.
    age: Vec<(String, String)>,
    /// `(fingerprint, armored PGP message holding the data key)`.
    pgp: Vec<(String, String)>,
    /// Other recipient kinds present (`kms`, `hc_vault`, ...).
    others: Vec<String>,
    groups: usize,
    lastmodified: String,
    mac: String,
    rule: Rule,
    mac_only_encrypted: bool,
}

enum Rule {
    UnencryptedSuffix(String),
    EncryptedSuffix(String),
    UnencryptedRegex(regex::Regex),
    EncryptedRegex(regex::Regex),
}

impl Metadata {
    fn parse(v: &KValue) -> Result<Metadata, String> {
        let m = v.as_map().ok_or("sops metadata is not a mapping")?;
        let text = |k: &str| match m.get(k) {
            Some(KValue::Str(s)) => s.clone(),
            Some(KValue::Int(i)) => i.to_string(),
            _ => String::new(),
        };
        let list = |m: &Map, k: &str| -> Vec<KValue> {
            m.get(k)
                .and_then(KValue::as_seq)
                .cloned()
                .unwrap_or_default()
        };
        let has_keys = |g: &Map| {
            ["age", "pgp"]
                .iter()
                .chain(OTHER_KEY_KINDS)
                .any(|k| !list(g, k).is_empty())
        };
        let groups: Vec<Map> = if has_keys(m) {
            vec![m.clone()]
        } else {
            list(m, "key_groups")
                .into_iter()
                .filter_map(|g| g.as_map().cloned())
                .collect()
        };
        if groups.is_empty() {
            return Err("No keys found in file".into());
        }
        let mut age = Vec::new();
        let mut pgp = Vec::new();
        let mut others = Vec::new();
        let field = |entry: &KValue, k: &str| {
            entry
                .get(k)
                .and_then(KValue::as_str)
                .unwrap_or_default()
                .to_string()
        };
        for g in &groups {
            for a in list(g, "age") {
                age.push((field(&a, "recipient"), field(&a, "enc")));
            }
            for p in list(g, "pgp") {
                pgp.push((field(&p, "fp"), field(&p, "enc")));
            }
            for k in OTHER_KEY_KINDS {
                if !list(g, k).is_empty() && !others.iter().any(|o| o == k) {
                    others.push(k.to_string());
                }
            }
        }
        let rules: Vec<(&str, String)> = [
            "unencrypted_suffix",
            "encrypted_suffix",
            "unencrypted_regex",
            "encrypted_regex",
            "unencrypted_comment_regex",
            "encrypted_comment_regex",
        ]
        .into_iter()
        .map(|k| (k, text(k)))
        .filter(|(_, v)| !v.is_empty())
        .collect();
        if rules.len() > 1 {
            return Err("Cannot use more than one of encrypted_suffix, unencrypted_suffix, encrypted_regex, unencrypted_regex, encrypted_comment_regex, or unencrypted_comment_regex in the same file".into());
        }
        let re =
            |s: &str| regex::Regex::new(s).map_err(|_| format!("invalid regular expression '{s}'"));
        let rule = match rules.first() {
            None => Rule::UnencryptedSuffix(DEFAULT_UNENCRYPTED_SUFFIX.into()),
            Some(("unencrypted_suffix", s)) => Rule::UnencryptedSuffix(s.clone()),
            Some(("encrypted_suffix", s)) => Rule::EncryptedSuffix(s.clone()),
            Some(("unencrypted_regex", s)) => Rule::UnencryptedRegex(re(s)?),
            Some(("encrypted_regex", s)) => Rule::EncryptedRegex(re(s)?),
            Some((k, _)) => {
                return Err(format!(
                    "{k} (comment-based encryption) is not supported by Riptide"
                ));
            }
        };
        Ok(Metadata {
            age,
            pgp,
            others,
            groups: groups.len(),
            lastmodified: text("lastmodified"),
            mac: text("mac"),
            rule,
            mac_only_encrypted: matches!(m.get("mac_only_encrypted"), Some(KValue::Bool(true)))
                || text("mac_only_encrypted") == "true",
        })
    }

    fn age_recipients(&self) -> String {
        join_first(&self.age)
    }

    fn pgp_recipients(&self) -> String {
        join_first(&self.pgp)
    }

    /// SOPS' `shouldBeEncrypted`, without comments (Riptide's YAML model drops them).
    fn encrypted(&self, path: &[String]) -> bool {
        match &self.rule {
            Rule::UnencryptedSuffix(s) => !path.iter().any(|p| p.ends_with(s.as_str())),
            Rule::EncryptedSuffix(s) => path.iter().any(|p| p.ends_with(s.as_str())),
            Rule::UnencryptedRegex(r) => !path.iter().any(|p| r.is_match(p)),
            Rule::EncryptedRegex(r) => path.iter().any(|p| r.is_match(p)),
        }
    }
}

/// The first elements of `pairs`, comma-separated.
fn join_first(pairs: &[(String, String)]) -> String {
    pairs
        .iter()
        .map(|(r, _)| r.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Walks a tree, decrypting the selected leaves and hashing the values for the MAC.
struct Walker<'a> {
    meta: &'a Metadata,
    cipher: Aes256Gcm32,
    hash: sha2::Sha512,
    path: Vec<String>,
}

impl<'a> Walker<'a> {
    fn new(meta: &'a Metadata, key: [u8; 32]) -> Result<Walker<'a>, String> {
        let cipher = Aes256Gcm32::new_from_slice(&key).map_err(|_| "invalid data key length")?;
        let mut hash = sha2::Sha512::new();
        if meta.mac_only_encrypted {
            hash.update(MAC_ONLY_ENCRYPTED_INIT);
        }
        Ok(Walker {
            meta,
            cipher,
            hash,
            path: Vec::new(),
        })
    }

    fn walk(&mut self, v: &mut KValue) -> Result<(), String> {
        match v {
            KValue::Map(m) => {
                for (k, child) in m.iter_mut() {
                    self.path.push(k.clone());
                    let r = self.walk(child);
                    self.path.pop();
                    r?;
                }
                Ok(())
            }
            KValue::Seq(items) => items.iter_mut().try_for_each(|i| self.walk(i)),
            KValue::Null | KValue::EmptyNull => Ok(()),
            leaf => {
                let encrypted = self.meta.encrypted(&self.path);
                if encrypted {
                    let KValue::Str(s) = leaf else {
                        return Err("Expected encrypted value as string".into());
                    };
                    let aad = format!("{}:", self.path.join(":"));
                    *leaf = decrypt_value(&self.cipher, s, &aad)
                        .map_err(|e| format!("Could not decrypt value: {e}"))?;
                }
                if !self.meta.mac_only_encrypted || encrypted {
                    self.hash.update(leaf_bytes(leaf));
                }
                Ok(())
            }
        }
    }

    fn verify(self, check: bool) -> Result<(), String> {
        if !check {
            return Ok(());
        }
        let computed = hex::encode_upper(self.hash.finalize());
        let stored = match decrypt_value(&self.cipher, &self.meta.mac, &self.meta.lastmodified) {
            Ok(KValue::Str(s)) => s,
            Ok(_) => String::new(),
            Err(e) => return Err(format!("failed to verify sops data integrity: {e}")),
        };
        if stored != computed {
            return Err(
                "failed to verify sops data integrity: the MAC does not match the data".into(),
            );
        }
        Ok(())
    }
}

/// SOPS' `ToBytes` for the MAC.
fn leaf_bytes(v: &KValue) -> Vec<u8> {
    match v {
        KValue::Str(s) => s.as_bytes().to_vec(),
        KValue::Int(i) => i.to_string().into_bytes(),
        KValue::Float(f) => f.to_string().into_bytes(),
        KValue::Bool(true) => b"True".to_vec(),
        KValue::Bool(false) => b"False".to_vec(),
        _ => Vec::new(),
    }
}

/// Opens one `ENC[AES256_GCM,...]` value; the type tag gives the plaintext's type.
fn decrypt_value(cipher: &Aes256Gcm32, value: &str, aad: &str) -> Result<KValue, String> {
    if value.is_empty() {
        return Ok(KValue::Str(String::new()));
    }
    let parts =
        parse_enc(value).ok_or("Input string <redacted> does not match sops' data format")?;
    let b64 = |what: &str, s: &str| {
        B64.decode(s)
            .map_err(|_| format!("Error base64-decoding {what}"))
    };
    let mut data = b64("data", parts[0])?;
    let iv = b64("iv", parts[1])?;
    data.extend(b64("tag", parts[2])?);
    if iv.len() != 32 {
        return Err(format!("unsupported AES-GCM nonce size {}", iv.len()));
    }
    let plain = cipher
        .decrypt(
            aes_gcm::Nonce::<U32>::from_slice(&iv),
            Payload {
                msg: &data,
                aad: aad.as_bytes(),
            },
        )
        .map_err(|_| "Could not decrypt with AES_GCM: cipher: message authentication failed")?;
    let text = || String::from_utf8_lossy(&plain).into_owned();
    Ok(match parts[3] {
        "str" | "bytes" | "time" | "comment" => KValue::Str(text()),
        "int" => KValue::Int(
            text()
                .parse()
                .map_err(|_| "strconv.Atoi: invalid decrypted int value")?,
        ),
        "float" => {
            let f: f64 = text()
                .parse()
                .map_err(|_| "strconv.ParseFloat: invalid decrypted float value")?;
            if f.is_finite() && f.fract() == 0.0 && f.abs() < 9.0e15 {
                KValue::Int(f as i64)
            } else {
                KValue::Float(f)
            }
        }
        "bool" => match text().as_str() {
            "1" | "t" | "T" | "TRUE" | "true" | "True" => KValue::Bool(true),
            "0" | "f" | "F" | "FALSE" | "false" | "False" => KValue::Bool(false),
            _ => return Err("strconv.ParseBool: invalid decrypted bool value".into()),
        },
        other => return Err(format!("Unknown datatype: {other}")),
    })
}

/// `ENC[AES256_GCM,data:<b64>,iv:<b64>,tag:<b64>,type:<t>]` → `[data, iv, tag, type]`.
fn parse_enc(value: &str) -> Option<[&str; 4]> {
    let body = value
        .strip_prefix("ENC[AES256_GCM,data:")?
        .strip_suffix(']')?;
    let (data, rest) = body.split_once(",iv:")?;
    let (iv, rest) = rest.split_once(",tag:")?;
    let (tag, kind) = rest.split_once(",type:")?;
    Some([data, iv, tag, kind])
}

fn from_json(v: &serde_json::Value) -> KValue {
    match v {
        serde_json::Value::Null => KValue::Null,
        serde_json::Value::Bool(b) => KValue::Bool(*b),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => KValue::Int(i),
            None => KValue::Float(n.as_f64().unwrap_or_default()),
        },
        serde_json::Value::String(s) => KValue::Str(s.clone()),
        serde_json::Value::Array(a) => KValue::Seq(a.iter().map(from_json).collect()),
        serde_json::Value::Object(o) => {
            KValue::Map(o.iter().map(|(k, v)| (k.clone(), from_json(v))).collect())
        }
    }
}

/// A parsed SOPS document.
enum Doc {
    Maps(Vec<KValue>),
    Lines(Vec<Line>),
}

/// A dotenv line.
enum Line {
    Comment(String),
    Entry(String, KValue),
}

/// SOPS' dotenv reading: `KEY=VALUE` lines (`\n` in a value is a newline), `#` comments, blank lines dropped.
fn parse_dotenv(text: &str) -> Result<Vec<Line>, String> {
    let mut out = Vec::new();
    for line in text.split('\n') {
        if line.is_empty() {
            continue;
        }
        if let Some(c) = line.strip_prefix('#') {
            out.push(Line::Comment(c.to_string()));
            continue;
        }
        let (k, v) = line.split_once('=').ok_or("invalid dotenv input line")?;
        out.push(Line::Entry(
            k.to_string(),
            KValue::Str(v.replace("\\n", "\n")),
        ));
    }
    Ok(out)
}

/// SOPS' flattened metadata keys (`age__list_0__map_enc`) back into a tree.
fn unflatten(flat: Vec<(String, KValue)>) -> Result<KValue, String> {
    let mut root = KValue::Map(Map::new());
    for (key, value) in flat {
        let mut tokens: Vec<Result<String, usize>> = Vec::new();
        let mut rest = key.as_str();
        let first_end = [rest.find("__map_"), rest.find("__list_")]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(rest.len());
        tokens.push(Ok(rest[..first_end].to_string()));
        rest = &rest[first_end..];
        while !rest.is_empty() {
            let (is_map, body) = if let Some(b) = rest.strip_prefix("__map_") {
                (true, b)
            } else if let Some(b) = rest.strip_prefix("__list_") {
                (false, b)
            } else {
                return Err("malformed flattened sops metadata key".into());
            };
            let end = [body.find("__map_"), body.find("__list_")]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or(body.len());
            tokens.push(if is_map {
                Ok(body[..end].to_string())
            } else {
                Err(body[..end]
                    .parse()
                    .map_err(|_| "malformed flattened sops metadata index")?)
            });
            rest = &body[end..];
        }
        place(&mut root, &tokens, value)?;
    }
    Ok(root)
}

fn place(node: &mut KValue, tokens: &[Result<String, usize>], value: KValue) -> Result<(), String> {
    let Some((first, rest)) = tokens.split_first() else {
        *node = value;
        return Ok(());
    };
    let fresh = |next: Option<&Result<String, usize>>| match next {
        Some(Err(_)) => KValue::Seq(Vec::new()),
        Some(Ok(_)) => KValue::Map(Map::new()),
        None => KValue::Null,
    };
    let child = match (first, node) {
        (Ok(k), KValue::Map(m)) => m.entry(k.clone()).or_insert_with(|| fresh(rest.first())),
        (Err(i), KValue::Seq(s)) => {
            if *i > 10_000 {
                return Err("flattened sops metadata index too large".into());
            }
            while s.len() <= *i {
                s.push(fresh(rest.first()));
            }
            &mut s[*i]
        }
        _ => return Err("inconsistent flattened sops metadata".into()),
    };
    place(child, rest, value)
}

/// Writes a decrypted document in `format`.
fn emit(doc: Doc, format: Format) -> Result<Vec<u8>, String> {
    let entries: Vec<(String, KValue)> = match doc {
        Doc::Maps(docs) if format == Format::Yaml => {
            return Ok(kustomize::yaml::emit_documents(&docs).into_bytes());
        }
        Doc::Maps(docs) => match docs.into_iter().next() {
            Some(KValue::Map(m)) => m.into_iter().collect(),
            Some(other) if format == Format::Json => {
                return serde_json::to_vec_pretty(&super::build::to_json(&other))
                    .map_err(|e| e.to_string());
            }
            _ => Vec::new(),
        },
        Doc::Lines(lines) => {
            if format == Format::Dotenv {
                let mut out = String::new();
                for line in lines {
                    match line {
                        Line::Comment(c) => out.push_str(&format!("#{c}\n")),
                        Line::Entry(k, v) => {
                            out.push_str(&format!("{k}={}\n", dotenv_value(&k, &v)?))
                        }
                    }
                }
                return Ok(out.into_bytes());
            }
            lines
                .into_iter()
                .filter_map(|l| match l {
                    Line::Entry(k, v) => Some((k, v)),
                    Line::Comment(_) => None,
                })
                .collect()
        }
    };
    match format {
        Format::Yaml => {
            Ok(kustomize::yaml::emit(&KValue::Map(entries.into_iter().collect())).into_bytes())
        }
        Format::Json => serde_json::to_vec_pretty(&super::build::to_json(&KValue::Map(
            entries.into_iter().collect(),
        )))
        .map_err(|e| e.to_string()),
        Format::Dotenv => {
            let mut out = String::new();
            for (k, v) in &entries {
                out.push_str(&format!("{k}={}\n", dotenv_value(k, v)?));
            }
            Ok(out.into_bytes())
        }
        Format::Binary => match entries.into_iter().find(|(k, _)| k == "data") {
            Some((_, KValue::Str(s))) => Ok(s.into_bytes()),
            _ => Err("error emitting binary store: no binary data found in tree".into()),
        },
        Format::Ini => Err("SOPS INI files are not supported by Riptide".into()),
    }
}

fn dotenv_value(key: &str, v: &KValue) -> Result<String, String> {
    Ok(match v {
        KValue::Str(s) => s.replace('\n', "\\n"),
        KValue::Int(i) => i.to_string(),
        KValue::Float(f) => {
            let s = f.to_string();
            if s.contains('.') { s } else { format!("{s}.0") }
        }
        KValue::Bool(b) => b.to_string(),
        KValue::Null | KValue::EmptyNull => "<nil>".into(),
        KValue::Seq(_) | KValue::Map(_) => {
            return Err(format!(
                "cannot use complex value in dotenv file; offending key {key}"
            ));
        }
    })
}

#[cfg(test)]
#[path = "../../../tests/support/sops.rs"]
mod sops_encryptor;

#[cfg(test)]
mod tests {
    use super::sops_encryptor::{GpgKey, Options, encrypt_yaml, identity};
    use super::*;

    fn decryptor(keys: &[&str]) -> Decryptor {
        let mut d = Decryptor::default();
        for k in keys {
            d.import(k).unwrap();
        }
        d
    }

    const SECRET: &str = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\n  namespace: apps\nstringData:\n  password: hunter2-secret\n  port: 5432\n  ratio: 0.25\n  enabled: true\n  nested:\n    list:\n    - one-secret\n    - deep: two-secret\n";

    #[test]
    fn decrypts_typed_values_nested_maps_and_lists_with_encrypted_regex() {
        let (key, recipient) = identity();
        let enc = encrypt_yaml(
            SECRET,
            &[recipient.as_str()],
            &Options::regex("^(data|stringData)$"),
        );
        assert!(!enc.contains("hunter2"), "{enc}");
        assert!(enc.contains("name: db"), "metadata stays in clear: {enc}");
        let mut obj = kustomize::yaml::parse_one(&enc).unwrap();
        let d = decryptor(&[&key]).with_mac_check(true);
        assert!(d.decrypt_resource(&mut obj).unwrap());
        let want = kustomize::yaml::parse_one(SECRET).unwrap();
        assert_eq!(obj, want);
        assert!(obj.get("sops").is_none());
    }

    #[test]
    fn default_rule_encrypts_everything_but_unencrypted_suffix() {
        let (key, recipient) = identity();
        let plain = "a: secret-a\nb_unencrypted: visible\nc:\n  d: secret-d\n";
        let enc = encrypt_yaml(plain, &[recipient.as_str()], &Options::default());
        assert!(
            enc.contains("b_unencrypted: visible") && !enc.contains("secret-a"),
            "{enc}"
        );
        let d = decryptor(&[&key]).with_mac_check(true);
        let out = d
            .decrypt_bytes(enc.as_bytes(), Format::Yaml, Format::Yaml)
            .unwrap();
        assert_eq!(
            kustomize::yaml::parse_one(std::str::from_utf8(&out).unwrap()).unwrap(),
            kustomize::yaml::parse_one(plain).unwrap()
        );
    }

    #[test]
    fn several_recipients_one_matching_and_several_identity_lines() {
        let (_, other) = identity();
        let (key, recipient) = identity();
        let (unrelated, _) = identity();
        let enc = encrypt_yaml(
            SECRET,
            &[other.as_str(), recipient.as_str()],
            &Options::regex("^stringData$"),
        );
        let keys = format!("# created: now\n# public key: {recipient}\n{unrelated}\n\n{key}\n");
        let mut obj = kustomize::yaml::parse_one(&enc).unwrap();
        decryptor(&[&keys]).decrypt_resource(&mut obj).unwrap();
        assert_eq!(
            obj.str_at(&["stringData", "password"]),
            Some("hunter2-secret")
        );
    }

    #[test]
    fn tampering_is_detected_by_gcm_and_by_the_mac() {
        let (key, recipient) = identity();
        let enc = encrypt_yaml(
            SECRET,
            &[recipient.as_str()],
            &Options::regex("^stringData$"),
        );
        // A ciphertext moved to another key fails authentication (the path is the additional data).
        let mut obj = kustomize::yaml::parse_one(&enc).unwrap();
        let pw = obj.get_path(&["stringData", "password"]).unwrap().clone();
        obj.get_mut("stringData")
            .unwrap()
            .as_map_mut()
            .unwrap()
            .insert("other".into(), pw);
        let err = decryptor(&[&key])
            .decrypt_resource(&mut obj)
            .unwrap_err()
            .to_string();
        assert!(err.contains("message authentication failed"), "{err}");
        assert!(err.starts_with("decryption failed for '~G_v1_Secret/db': failed to decrypt and format 'apps/db' Secret data"), "{err}");
        // A changed clear value passes decryption but not the MAC check (off by default, as in Flux).
        let tampered = enc.replace("name: db", "name: evil");
        let mut obj = kustomize::yaml::parse_one(&tampered).unwrap();
        assert!(
            decryptor(&[&key])
                .decrypt_resource(&mut obj.clone())
                .is_ok()
        );
        let err = decryptor(&[&key])
            .with_mac_check(true)
            .decrypt_resource(&mut obj)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("failed to verify sops data integrity"),
            "{err}"
        );
        assert!(!err.contains("hunter2"));
    }

    #[test]
    fn wrong_key_missing_key_and_foreign_recipients_say_what_is_missing() {
        let (_, recipient) = identity();
        let (wrong, _) = identity();
        let enc = encrypt_yaml(
            SECRET,
            &[recipient.as_str()],
            &Options::regex("^stringData$"),
        );
        let mut obj = kustomize::yaml::parse_one(&enc).unwrap();
        let err = decryptor(&[&wrong])
            .decrypt_resource(&mut obj)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("none of the provided age identities matches") && err.contains(&recipient),
            "{err}"
        );
        let err = decryptor(&[])
            .decrypt_resource(&mut obj)
            .unwrap_err()
            .to_string();
        assert!(err.contains("no age identities were provided"), "{err}");
        // Only PGP and KMS recipients.
        let mut foreign = kustomize::yaml::parse_one(&enc).unwrap();
        let sops = foreign.get_mut("sops").unwrap().as_map_mut().unwrap();
        sops.remove("age");
        sops.insert(
            "pgp".into(),
            kustomize::yaml::parse_one("- fp: ABCD\n  enc: x\n").unwrap(),
        );
        sops.insert(
            "kms".into(),
            kustomize::yaml::parse_one("- arn: a\n  enc: x\n").unwrap(),
        );
        let err = decryptor(&[&wrong])
            .decrypt_resource(&mut foreign)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("no PGP secret keys were provided (Secret entries ending with .asc) to decrypt for ABCD")
                && err.contains("its other recipients (kms) cannot be used"),
            "{err}"
        );
        assert!(!err.contains("age identities"), "{err}");
        assert!(decryptor(&[]).import("not-a-key").is_err());
    }

    fn with_pgp(mut d: Decryptor, entries: &[(&str, &str)]) -> Decryptor {
        for (entry, data) in entries {
            d.import_pgp(entry, data.as_bytes()).unwrap();
        }
        d
    }

    fn plain_secret() -> KValue {
        kustomize::yaml::parse_one(SECRET).unwrap()
    }

    #[test]
    fn pgp_recipients_open_with_real_gpg_rsa_and_curve25519_keys() {
        // RSA with an RSA encryption subkey, ed25519 with a cv25519 encryption subkey, an RSA primary key that
        // encrypts itself.
        for (algo, key) in [
            ("rsa2048", GpgKey::generate("rsa2048")),
            ("future-default", GpgKey::generate("future-default")),
            (
                "rsa2048 primary",
                GpgKey::generate_encrypting_primary("rsa2048"),
            ),
        ] {
            let enc = encrypt_yaml(
                SECRET,
                &[key.recipient().as_str()],
                &Options::regex("^(data|stringData)$"),
            );
            assert!(
                enc.contains("-----BEGIN PGP MESSAGE-----") && enc.contains(&key.fingerprint),
                "{enc}"
            );
            assert!(!enc.contains("hunter2"), "{enc}");
            let d = with_pgp(Decryptor::default(), &[("sops.asc", &key.secret_key())])
                .with_mac_check(true);
            let mut obj = kustomize::yaml::parse_one(&enc).unwrap();
            assert!(d.decrypt_resource(&mut obj).unwrap(), "{algo}");
            assert_eq!(obj, plain_secret(), "{algo}");

            // The metadata flattened into a dotenv file (multi-line `enc` as `\n`) works the same.
            let env = super::sops_encryptor::encrypt_dotenv(
                "TOKEN=pgp-secret\n",
                &[key.recipient().as_str()],
            );
            assert!(env.contains("sops_pgp__list_0__map_fp="), "{env}");
            let out = d
                .decrypt_bytes(env.as_bytes(), Format::Dotenv, Format::Dotenv)
                .unwrap();
            assert_eq!(String::from_utf8(out).unwrap(), "TOKEN=pgp-secret\n");
        }
    }

    #[test]
    fn several_keys_in_one_entry_and_public_keys_are_passed_over() {
        let first = GpgKey::generate("future-default");
        let second = GpgKey::generate("future-default");
        let enc = encrypt_yaml(
            SECRET,
            &[second.recipient().as_str()],
            &Options::regex("^stringData$"),
        );
        // One entry holding a public key block and two secret key blocks, as `cat`ed exports.
        let entry = format!(
            "{}\n{}\n{}",
            first.public_key(),
            first.secret_key(),
            second.secret_key()
        );
        let d = with_pgp(Decryptor::default(), &[("team.asc", &entry)]);
        assert_eq!(d.pgp_keys.len(), 2);
        let mut obj = kustomize::yaml::parse_one(&enc).unwrap();
        d.decrypt_resource(&mut obj).unwrap();
        assert_eq!(
            obj.str_at(&["stringData", "password"]),
            Some("hunter2-secret")
        );
        // A public key alone imports (gpg accepts it) but opens nothing.
        let d = with_pgp(Decryptor::default(), &[("pub.asc", &second.public_key())]);
        assert!(d.pgp_keys.is_empty());
    }

    #[test]
    fn wrong_missing_or_locked_pgp_key_says_what_was_tried_and_leaks_nothing() {
        let owner = GpgKey::generate("future-default");
        let other = GpgKey::generate("rsa2048");
        let enc = encrypt_yaml(
            SECRET,
            &[owner.recipient().as_str()],
            &Options::regex("^stringData$"),
        );
        let other_secret = other.secret_key();
        let mut obj = kustomize::yaml::parse_one(&enc).unwrap();
        let err = with_pgp(Decryptor::default(), &[("sops.asc", &other_secret)])
            .decrypt_resource(&mut obj)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("decryption failed for '~G_v1_Secret/db': failed to decrypt and format 'apps/db' Secret data: cannot get sops data key: "),
            "{err}"
        );
        assert!(
            err.contains(&format!(
                "none of the provided PGP secret keys ({} from 'sops.asc') opens the file's PGP recipients ({})",
                other.fingerprint, owner.fingerprint
            )),
            "{err}"
        );
        let secret_body: Vec<&str> = other_secret
            .lines()
            .filter(|l| l.len() > 40 && !l.starts_with("-----"))
            .collect();
        assert!(!secret_body.is_empty());
        for line in secret_body {
            assert!(!err.contains(line), "key material in {err}");
        }
        assert!(
            !err.contains("hunter2") && !err.contains("BEGIN PGP"),
            "{err}"
        );

        let err = decryptor(&[])
            .decrypt_resource(&mut obj)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&format!(
                "no PGP secret keys were provided (Secret entries ending with .asc) to decrypt for {}",
                owner.fingerprint
            )),
            "{err}"
        );

        // The right key, protected by a passphrase: imported (as gpg does) but unusable, and said so.
        let locked = GpgKey::generate_with_passphrase("rsa2048", "correct horse");
        let enc = encrypt_yaml(
            SECRET,
            &[locked.recipient().as_str()],
            &Options::regex("^stringData$"),
        );
        let d = with_pgp(
            Decryptor::default(),
            &[("locked.asc", &locked.secret_key())],
        );
        assert!(d.pgp_keys[0].locked());
        let mut obj = kustomize::yaml::parse_one(&enc).unwrap();
        let err = d.decrypt_resource(&mut obj).unwrap_err().to_string();
        assert!(
            err.contains(&format!(
                "PGP key {fp} (from 'locked.asc') holds the secret key for recipient {fp} but is protected by a passphrase",
                fp = locked.fingerprint
            )),
            "{err}"
        );
        assert!(!err.contains("correct horse"), "{err}");
    }

    #[test]
    fn age_and_pgp_recipients_open_with_the_pgp_key_alone() {
        let (_, age_recipient) = identity();
        let (unrelated_age, _) = identity();
        let key = GpgKey::generate("future-default");
        let enc = encrypt_yaml(
            SECRET,
            &[age_recipient.as_str(), key.recipient().as_str()],
            &Options::regex("^(data|stringData)$"),
        );
        let meta = kustomize::yaml::parse_one(&enc).unwrap();
        assert_eq!(
            meta.get_path(&["sops", "age"])
                .and_then(KValue::as_seq)
                .map(Vec::len),
            Some(1)
        );
        // Only the PGP key, and with an age identity that does not match (tried first, in vain).
        for d in [
            with_pgp(Decryptor::default(), &[("sops.asc", &key.secret_key())]),
            with_pgp(
                decryptor(&[&unrelated_age]),
                &[("sops.asc", &key.secret_key())],
            ),
        ] {
            let mut obj = kustomize::yaml::parse_one(&enc).unwrap();
            d.with_mac_check(true).decrypt_resource(&mut obj).unwrap();
            assert_eq!(obj, plain_secret());
        }
        // Neither: both kinds are named.
        let mut obj = kustomize::yaml::parse_one(&enc).unwrap();
        let err = decryptor(&[&unrelated_age])
            .decrypt_resource(&mut obj)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&format!("none of the provided age identities matches the file's age recipients ({age_recipient}); no PGP secret keys were provided (Secret entries ending with .asc) to decrypt for {}", key.fingerprint)),
            "{err}"
        );
        assert!(!err.contains(&unrelated_age), "{err}");
    }

    #[test]
    fn pgp_entries_without_key_data_fail_to_import() {
        let mut d = Decryptor::default();
        assert_eq!(
            d.import_pgp("sops.asc", b"x").unwrap_err(),
            "no valid OpenPGP data found"
        );
        assert_eq!(
            d.import_pgp("sops.asc", b"").unwrap_err(),
            "no valid OpenPGP data found"
        );
        let message = "-----BEGIN PGP MESSAGE-----\n\nhQEMA0Jx\n-----END PGP MESSAGE-----\n";
        assert_eq!(
            d.import_pgp("sops.asc", message.as_bytes()).unwrap_err(),
            "armored block 1 is a PGP message, not a key block"
        );
        let broken = "-----BEGIN PGP PRIVATE KEY BLOCK-----\n\nbm90IGEga2V5\n-----END PGP PRIVATE KEY BLOCK-----\n";
        let err = d.import_pgp("sops.asc", broken.as_bytes()).unwrap_err();
        assert_eq!(err, "armored block 1 is not valid OpenPGP key data");
        assert!(d.pgp_keys.is_empty());
    }

    #[test]
    fn disabled_annotation_and_plain_objects_are_left_alone() {
        let mut obj = kustomize::yaml::parse_one(SECRET).unwrap();
        assert!(!decryptor(&[]).decrypt_resource(&mut obj).unwrap());
        let (_, recipient) = identity();
        let enc = encrypt_yaml(
            SECRET,
            &[recipient.as_str()],
            &Options::regex("^stringData$"),
        );
        let enc = enc.replace(
            "  name: db\n",
            "  name: db\n  annotations:\n    kustomize.toolkit.fluxcd.io/decrypt: Disabled\n",
        );
        let mut obj = kustomize::yaml::parse_one(&enc).unwrap();
        assert!(!decryptor(&[]).decrypt_resource(&mut obj).unwrap());
        assert!(obj.get("sops").is_some());
    }

    #[test]
    fn dotenv_json_and_binary_files_and_secret_data_entries() {
        let (key, recipient) = identity();
        let d = decryptor(&[&key]).with_mac_check(true);
        let env = super::sops_encryptor::encrypt_dotenv(
            "USER=admin\n# note\nPASS=s3cret\\nline2\n",
            &[recipient.as_str()],
        );
        assert!(
            env.contains("sops_age__list_0__map_enc=-----BEGIN AGE ENCRYPTED FILE-----\\n"),
            "{env}"
        );
        let out = d
            .decrypt_bytes(env.as_bytes(), Format::Dotenv, Format::Dotenv)
            .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "USER=admin\n# note\nPASS=s3cret\\nline2\n"
        );

        let bin = super::sops_encryptor::encrypt_binary(b"raw \x01 token", &[recipient.as_str()]);
        let out = d
            .decrypt_bytes(bin.as_bytes(), Format::Binary, Format::Binary)
            .unwrap();
        assert_eq!(out, b"raw \x01 token");

        let json = super::sops_encryptor::encrypt_json(
            r#"{"auths": {"r": {"auth": "c2VjcmV0"}}}"#,
            &[recipient.as_str()],
        );
        let out = d
            .decrypt_bytes(json.as_bytes(), Format::Json, Format::Json)
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["auths"]["r"]["auth"], "c2VjcmV0");

        // A Secret whose data entry holds an encrypted document (e.g. generated from an encrypted file).
        let mut obj = kustomize::yaml::parse_one(&format!(
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: s\ndata:\n  .env: {}\n  plain: {}\n",
            B64.encode(&env),
            B64.encode("x")
        ))
        .unwrap();
        assert!(d.decrypt_resource(&mut obj).unwrap());
        let got = B64.decode(obj.str_at(&["data", ".env"]).unwrap()).unwrap();
        assert_eq!(got, b"USER=admin\n# note\nPASS=s3cret\\nline2\n");
    }

    #[test]
    fn sources_referenced_by_generators_and_patches_are_decrypted_in_place() {
        let (key, recipient) = identity();
        let root = tempfile::tempdir().unwrap();
        let base = root.path().join("base");
        std::fs::create_dir_all(&base).unwrap();
        let env =
            super::sops_encryptor::encrypt_dotenv("TOKEN=abc-secret\n", &[recipient.as_str()]);
        let file = super::sops_encryptor::encrypt_binary(b"file-secret", &[recipient.as_str()]);
        std::fs::write(base.join("app.env"), &env).unwrap();
        std::fs::write(base.join("cert.enc"), &file).unwrap();
        std::fs::write(base.join("plain.txt"), "not encrypted").unwrap();
        std::fs::write(
            base.join("kustomization.yaml"),
            "secretGenerator:\n- name: s\n  envs: [app.env]\n  files: [tls.crt=cert.enc, plain.txt]\n",
        )
        .unwrap();
        std::fs::write(
            root.path().join("kustomization.yaml"),
            "resources: [base, https://example.invalid/x]\n",
        )
        .unwrap();
        decryptor(&[&key])
            .decrypt_sources(root.path(), root.path())
            .unwrap();
        assert_eq!(
            std::fs::read_to_string(base.join("app.env")).unwrap(),
            "TOKEN=abc-secret\n"
        );
        assert_eq!(
            std::fs::read_to_string(base.join("cert.enc")).unwrap(),
            "file-secret"
        );
        assert_eq!(
            std::fs::read_to_string(base.join("plain.txt")).unwrap(),
            "not encrypted"
        );

        std::fs::write(base.join("app.env"), &env).unwrap();
        let (wrong, _) = identity();
        let err = decryptor(&[&wrong])
            .decrypt_sources(root.path(), root.path())
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("error decrypting sources: failed to decrypt './base/app.env': cannot get sops data key"), "{err}");
    }

    #[test]
    fn flattened_metadata_round_trips() {
        let t = unflatten(vec![
            ("age__list_1__map_recipient".into(), KValue::Str("b".into())),
            ("age__list_0__map_recipient".into(), KValue::Str("a".into())),
            ("lastmodified".into(), KValue::Str("t".into())),
        ])
        .unwrap();
        assert_eq!(
            t.get_path(&["lastmodified"]).and_then(KValue::as_str),
            Some("t")
        );
        let age = t.get("age").and_then(KValue::as_seq).unwrap();
        assert_eq!(age[0].str_at(&["recipient"]), Some("a"));
        assert_eq!(age[1].str_at(&["recipient"]), Some("b"));
    }

    /// A cross-check against files written by the real `sops` binary: set `SOPS_FIXTURES` to a directory with
    /// `age.txt` (the identity) and/or `*.asc` (armored PGP secret keys) and encrypted files (`*.yaml`, `*.env`,
    /// `*.json`, other = binary).
    #[test]
    #[ignore = "needs real sops fixtures (SOPS_FIXTURES)"]
    fn real_sops_fixtures() {
        let dir = std::path::PathBuf::from(std::env::var("SOPS_FIXTURES").unwrap());
        let is_key = |name: &str| name == "age.txt" || name.ends_with(PGP_KEY_EXT);
        let mut d = Decryptor::default();
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            if name == "age.txt" {
                d.import(&std::fs::read_to_string(&path).unwrap()).unwrap();
            } else if is_key(&name) {
                d.import_pgp(&name, &std::fs::read(&path).unwrap()).unwrap();
            }
        }
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            if is_key(&name) {
                continue;
            }
            let data = std::fs::read(&path).unwrap();
            if name.ends_with(".yaml") {
                // As a built object: decrypted whole, or entry by entry for a Secret's data.
                let mut obj =
                    kustomize::yaml::parse_one(std::str::from_utf8(&data).unwrap()).unwrap();
                assert!(d.decrypt_resource(&mut obj).unwrap(), "{name}");
                println!("{name}: object decrypted");
                seen += 1;
            }
            let Some(format) = Format::detect(&data) else {
                continue;
            };
            let out_format = match Format::for_path(&name) {
                Format::Binary if format == Format::Dotenv => Format::Dotenv,
                f => f,
            };
            let out = d
                .with_mac_check_ref(true)
                .decrypt_bytes(&data, format, out_format);
            let out = out.unwrap_or_else(|e| panic!("{name}: {e}"));
            println!("{name}: {} decrypted bytes", out.len());
            seen += 1;
        }
        assert!(seen > 0);
    }

    impl Decryptor {
        fn with_mac_check_ref(&self, check: bool) -> Decryptor {
            Decryptor {
                identities: self.identities.clone(),
                pgp_keys: self.pgp_keys.clone(),
                check_mac: check,
            }
        }
    }
}
