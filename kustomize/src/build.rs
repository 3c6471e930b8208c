//! The build pipeline (kustomize's KustTarget): accumulate resources, run
//! generators, components and transformers per kustomization, then at the top
//! add hash suffixes, fix name references, resolve vars and sort.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::fieldspec::{FieldSpec, TransformerConfig};
use crate::generators::{self, GenCtx};
use crate::kustomization::{FILE_NAMES, Kustomization, PatchArgs, Var};
use crate::loader::{Loader, is_remote};
use crate::patch::{self, SelectorMatcher};
use crate::resource::{Behavior, Resource};
use crate::value::Value;
use crate::{nameref, replacements, sort, transformers, vars, yaml};

/// Build settings.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// Files larger than this are refused.
    pub max_file_size: u64,
}

impl Default for BuildOptions {
    fn default() -> Self {
        BuildOptions {
            max_file_size: crate::loader::DEFAULT_MAX_FILE_SIZE,
        }
    }
}

/// What a build produced.
#[derive(Debug, Clone)]
pub struct BuildOutput {
    /// The objects, in output order.
    pub objects: Vec<Value>,
    /// Warnings (deprecated fields, unused vars).
    pub warnings: Vec<String>,
}

impl BuildOutput {
    /// The objects as a multi-document YAML stream, as `kustomize build` prints them.
    pub fn to_yaml(&self) -> String {
        yaml::emit_documents(&self.objects)
    }
}

#[derive(Default)]
struct Accumulator {
    resources: Vec<Resource>,
    config: TransformerConfig,
    vars: Vec<Var>,
    /// Ids of `resources`, valid while `index_len == resources.len()` and no
    /// transformer ran since it was built.
    index: std::collections::HashSet<crate::resource::IdKey>,
    index_len: usize,
}

impl Accumulator {
    fn invalidate(&mut self) {
        self.index.clear();
        self.index_len = usize::MAX;
    }

    fn append(&mut self, r: Resource, file: &Path, field: &str) -> Result<()> {
        if self.index_len != self.resources.len() {
            self.index = self
                .resources
                .iter()
                .filter(|o| !o.is_empty())
                .map(|o| o.cur_id().key())
                .collect();
        }
        let id = r.cur_id();
        if !self.index.insert(id.key()) {
            return Err(Error::field(
                file,
                field,
                format!("may not add resource with an already registered id: {id}"),
            ));
        }
        self.resources.push(r);
        self.index_len = self.resources.len();
        Ok(())
    }

    fn merge_vars(&mut self, vars: &[Var], file: &Path) -> Result<()> {
        for v in vars {
            if self.vars.iter().any(|o| o.name == v.name) {
                return Err(Error::field(
                    file,
                    "vars",
                    format!("var '{}' already encountered", v.name),
                ));
            }
            self.vars.push(v.clone());
        }
        Ok(())
    }
}

pub(crate) struct Builder {
    loader: Loader,
    stack: Vec<PathBuf>,
    /// Whether to record origin annotations (top-level buildMetadata).
    origins: bool,
    /// Path of the current kustomization relative to the top one.
    rel: Vec<String>,
    warnings: Vec<String>,
}

/// Builds the kustomization at `path` (a directory under `root`), reading
/// nothing outside `root`.
pub fn build(root: &Path, path: &Path, opts: &BuildOptions) -> Result<BuildOutput> {
    let loader = Loader::new(root, opts.max_file_size)?;
    let rel = path.strip_prefix(root).unwrap_or(path);
    let dir = if rel.as_os_str().is_empty() {
        loader.root().to_path_buf()
    } else {
        let root_path = loader.root().to_path_buf();
        loader.resolve(
            &root_path,
            &rel.to_string_lossy(),
            Path::new("<build>"),
            "path",
        )?
    };
    let mut b = Builder {
        loader,
        stack: Vec::new(),
        origins: false,
        rel: Vec::new(),
        warnings: Vec::new(),
    };
    let top = b.load_kustomization(&dir)?;
    let mut managed_by = false;
    for m in &top.build_metadata {
        match m.as_str() {
            "originAnnotations" => b.origins = true,
            "managedByLabel" => managed_by = true,
            other => {
                return Err(Error::Unsupported {
                    file: top.file.clone(),
                    field: "buildMetadata".into(),
                    what: format!("'{other}'"),
                });
            }
        }
    }
    let mut ra = Accumulator::default();
    let k = b.accumulate(&dir, &mut ra, None)?;
    // Hash suffixes.
    for r in ra.resources.iter_mut() {
        if r.needs_hash && !r.is_empty() {
            let h = generators::hash(r);
            r.store_previous_id();
            let n = format!("{}-{h}", r.name());
            r.set_name(&n);
        }
    }
    nameref::fix(&mut ra.resources, &ra.config.name_reference)
        .map_err(|e| Error::field(&k.file, "resources", e))?;
    let unused = vars::resolve(&mut ra.resources, &ra.vars, &ra.config.var_reference)
        .map_err(|e| Error::field(&k.file, "vars", e))?;
    if !unused.is_empty() {
        b.warnings.push(format!(
            "well-defined vars that were never replaced: {}",
            unused.join(",")
        ));
    }
    let mut resources: Vec<Resource> = ra
        .resources
        .into_iter()
        .filter(|r| !r.is_empty())
        .filter(|r| {
            r.meta_value("annotations", "config.kubernetes.io/local-config")
                .as_deref()
                != Some("true")
        })
        .collect();
    let (order, first, last) = match &k.sort_options {
        Some(so) => (
            so.order.clone(),
            so.order_first.clone(),
            so.order_last.clone(),
        ),
        None => ("legacy".to_string(), None, None),
    };
    match order.as_str() {
        "legacy" | "" => {
            let first = first.unwrap_or_else(|| {
                sort::DEFAULT_ORDER_FIRST
                    .iter()
                    .map(|s| s.to_string())
                    .collect()
            });
            let last = last.unwrap_or_else(|| {
                sort::DEFAULT_ORDER_LAST
                    .iter()
                    .map(|s| s.to_string())
                    .collect()
            });
            sort::legacy_sort(&mut resources, &first, &last);
        }
        "fifo" => {}
        other => {
            return Err(Error::field(
                &k.file,
                "sortOptions.order",
                format!(
                    "the field 'sortOptions.order' must be one of [fifo, legacy], got '{other}'"
                ),
            ));
        }
    }
    let objects = resources
        .into_iter()
        .map(|mut r| {
            if let Some(o) = r.origin.take()
                && let Some(Value::Map(a)) = r.obj.entry_map("metadata").map(|m| {
                    m.entry("annotations".to_string())
                        .or_insert_with(|| Value::Map(Default::default()))
                })
            {
                a.insert("config.kubernetes.io/origin".into(), Value::Str(o));
            }
            if managed_by
                && let Some(Value::Map(l)) = r.obj.entry_map("metadata").map(|m| {
                    m.entry("labels".to_string())
                        .or_insert_with(|| Value::Map(Default::default()))
                })
            {
                l.insert(
                    "app.kubernetes.io/managed-by".into(),
                    Value::Str("kustomize-(devel)".into()),
                );
            }
            r.obj
        })
        .collect();
    Ok(BuildOutput {
        objects,
        warnings: b.warnings,
    })
}

/// Joins and cleans a relative path the way Go's `path.Join` does.
fn join_clean(base: &[String], rel: &str) -> Vec<String> {
    let mut out: Vec<String> = base.to_vec();
    for part in rel.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if out.last().is_some_and(|l| l != "..") {
                    out.pop();
                } else {
                    out.push("..".into());
                }
            }
            p => out.push(p.to_string()),
        }
    }
    out
}

fn field_err(file: &Path, field: &str, e: impl std::fmt::Display) -> Error {
    Error::field(file, field, e.to_string())
}

impl Builder {
    fn load_kustomization(&self, dir: &Path) -> Result<Kustomization> {
        let found: Vec<&str> = FILE_NAMES
            .iter()
            .copied()
            .filter(|n| dir.join(n).is_file())
            .collect();
        let name = match found.as_slice() {
            [] => {
                return Err(Error::Kustomization {
                    dir: dir.to_path_buf(),
                    message: format!(
                        "unable to find one of {} in directory",
                        FILE_NAMES
                            .iter()
                            .map(|n| format!("'{n}'"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                });
            }
            [one] => *one,
            _ => {
                return Err(Error::Kustomization {
                    dir: dir.to_path_buf(),
                    message: format!("Found multiple kustomization files: {}", found.join(", ")),
                });
            }
        };
        let file = dir.join(name);
        let text = self.loader.read_file(dir, name, &file, "kustomization")?;
        let docs = yaml::parse_documents(&text).map_err(|message| Error::Yaml {
            file: file.clone(),
            message,
        })?;
        let v = docs.into_iter().next().unwrap_or(Value::Null);
        Kustomization::from_value(&v, &file)
    }

    fn read_resources(&self, path: &Path, file: &Path, field: &str) -> Result<Vec<Resource>> {
        let text = self.loader.read_abs(path)?;
        parse_resources(&text, path).map_err(|e| match e {
            Error::Yaml { .. } => e,
            other => Error::field(file, field, other.to_string()),
        })
    }

    /// Accumulates the kustomization in `dir` into `ra`. `component` is
    /// `Some(true)` when it must be a Component, `Some(false)` when it must not.
    fn accumulate(
        &mut self,
        dir: &Path,
        ra: &mut Accumulator,
        component: Option<bool>,
    ) -> Result<Kustomization> {
        if let Some(pos) = self.stack.iter().position(|d| d == dir) {
            let chain: Vec<String> = self.stack[pos..]
                .iter()
                .map(|p| p.display().to_string())
                .collect();
            return Err(Error::Cycle {
                file: self
                    .stack
                    .last()
                    .cloned()
                    .unwrap_or_else(|| dir.to_path_buf()),
                field: "resources".into(),
                path: dir.to_path_buf(),
                chain: chain.join(" -> "),
            });
        }
        self.stack.push(dir.to_path_buf());
        let r = self.accumulate_inner(dir, ra, component);
        self.stack.pop();
        r
    }

    fn accumulate_inner(
        &mut self,
        dir: &Path,
        ra: &mut Accumulator,
        component: Option<bool>,
    ) -> Result<Kustomization> {
        let k = self.load_kustomization(dir)?;
        let file = k.file.clone();
        match component {
            Some(true) if k.kind != "Component" => {
                return Err(Error::field(
                    &file,
                    "kind",
                    format!(
                        "expected kind 'Component' for path '{}' but got '{}'",
                        dir.display(),
                        k.kind
                    ),
                ));
            }
            Some(false) if k.kind == "Component" => {
                return Err(Error::field(
                    &file,
                    "kind",
                    format!("expected kind != 'Component' for path '{}'", dir.display()),
                ));
            }
            _ => {}
        }
        // resources
        for res in &k.resources {
            if is_remote(res) {
                return Err(Error::Unsupported {
                    file: file.clone(),
                    field: "resources".into(),
                    what: format!("remote resource '{res}'"),
                });
            }
            let path = self.loader.resolve(dir, res, &file, "resources")?;
            if path.is_dir() {
                if dir.starts_with(&path) {
                    return Err(Error::Cycle {
                        file: file.clone(),
                        field: "resources".into(),
                        path: path.clone(),
                        chain: format!("{} -> {}", dir.display(), path.display()),
                    });
                }
                let mut sub = Accumulator::default();
                let next = join_clean(&self.rel, res);
                let saved = std::mem::replace(&mut self.rel, next);
                let r = self.accumulate(&path, &mut sub, Some(false));
                self.rel = saved;
                r?;
                for r in sub.resources {
                    ra.append(r, &file, "resources")?;
                }
                ra.config.merge(&sub.config);
                ra.merge_vars(&sub.vars, &file)?;
            } else {
                if !path.starts_with(dir) {
                    return Err(Error::OutsideRoot {
                        file: file.clone(),
                        field: "resources".into(),
                        path,
                        root: dir.to_path_buf(),
                    });
                }
                for mut r in self.read_resources(&path, &file, "resources")? {
                    if self.origins {
                        r.origin =
                            Some(format!("path: {}\n", join_clean(&self.rel, res).join("/")));
                    }
                    ra.append(r, &file, "resources")?;
                }
            }
        }
        // configurations
        let mut tc =
            TransformerConfig::builtin().map_err(|e| field_err(&file, "configurations", e))?;
        for c in &k.configurations {
            let text = self.loader.read_file(dir, c, &file, "configurations")?;
            let v = yaml::parse_one(&text).map_err(|message| Error::Yaml {
                file: dir.join(c),
                message,
            })?;
            let cfg = TransformerConfig::from_value(&v)
                .map_err(|e| field_err(&file, "configurations", e))?;
            tc.merge(&cfg);
        }
        for c in &k.crds {
            let text = self.loader.read_file(dir, c, &file, "crds")?;
            let v = yaml::parse_one(&text).map_err(|message| Error::Yaml {
                file: dir.join(c),
                message,
            })?;
            let cfg = TransformerConfig::from_openapi(&v).map_err(|e| {
                field_err(
                    &file,
                    "crds",
                    format!("unable to parse open API definition from '{c}': {e}"),
                )
            })?;
            tc.merge(&cfg);
        }
        ra.config.merge(&tc);
        // generators
        let gctx = GenCtx {
            loader: &self.loader,
            dir,
            file: &file,
        };
        let mut generated = Vec::new();
        for g in &k.config_map_generator {
            generated.push(generators::generate(
                &gctx,
                g,
                k.generator_options.as_ref(),
                false,
            )?);
        }
        for g in &k.secret_generator {
            generated.push(generators::generate(
                &gctx,
                g,
                k.generator_options.as_ref(),
                true,
            )?);
        }
        for g in &k.generators {
            for r in self.builtin_plugin_generators(dir, g, &file)? {
                generated.push(r);
            }
        }
        for mut g in generated {
            if self.origins {
                let kfile = file
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                g.origin = Some(format!(
                    "configuredIn: {}\nconfiguredBy:\n  apiVersion: builtin\n  kind: {}\n",
                    join_clean(&self.rel, &kfile).join("/"),
                    if g.kind() == "Secret" {
                        "SecretGenerator"
                    } else {
                        "ConfigMapGenerator"
                    }
                ));
            }
            absorb(ra, g, &file)?;
        }
        ra.invalidate();
        // components
        for c in &k.components {
            if is_remote(c) {
                return Err(Error::Unsupported {
                    file: file.clone(),
                    field: "components".into(),
                    what: format!("remote component '{c}'"),
                });
            }
            let path = self.loader.resolve(dir, c, &file, "components")?;
            let next = join_clean(&self.rel, c);
            let saved = std::mem::replace(&mut self.rel, next);
            let r = self.accumulate(&path, ra, Some(true));
            self.rel = saved;
            r?;
            ra.invalidate();
        }
        self.run_transformers(dir, &k, ra)?;
        ra.invalidate();
        vars::tag(&mut ra.resources, &k.vars).map_err(|e| field_err(&file, "vars", e))?;
        ra.merge_vars(&k.vars, &file)?;
        Ok(k)
    }

    fn builtin_plugin_generators(&self, dir: &Path, g: &str, file: &Path) -> Result<Vec<Resource>> {
        if is_remote(g) {
            return Err(Error::Unsupported {
                file: file.to_path_buf(),
                field: "generators".into(),
                what: format!("remote generator '{g}'"),
            });
        }
        let text = if g.contains('\n') {
            g.to_string()
        } else {
            self.loader.read_file(dir, g, file, "generators")?
        };
        let docs = yaml::parse_documents(&text).map_err(|message| Error::Yaml {
            file: dir.join(g),
            message,
        })?;
        let gctx = GenCtx {
            loader: &self.loader,
            dir,
            file,
        };
        let mut out = Vec::new();
        for d in docs.into_iter().filter(|d| !d.is_null()) {
            let (k, secret) = crate::plugins::generator_kustomization(&d, file)?;
            let list = if secret {
                &k.secret_generator
            } else {
                &k.config_map_generator
            };
            for args in list {
                out.push(generators::generate(&gctx, args, None, secret)?);
            }
        }
        Ok(out)
    }

    fn load_patch_text(
        &self,
        dir: &Path,
        p: &PatchArgs,
        file: &Path,
        field: &str,
    ) -> Result<String> {
        match (p.path.is_empty(), p.patch.trim().is_empty()) {
            (true, true) => Err(Error::field(
                file,
                field,
                "must specify one of patch and path",
            )),
            (false, false) => Err(Error::field(
                file,
                field,
                "patch and path can't be set at the same time",
            )),
            (false, true) => self.loader.read_file(dir, &p.path, file, field),
            (true, false) => Ok(p.patch.clone()),
        }
    }

    fn run_transformers(&self, dir: &Path, k: &Kustomization, ra: &mut Accumulator) -> Result<()> {
        let file = &k.file;
        let tc = ra.config.clone();
        // patchesStrategicMerge
        for (i, p) in k.patches_strategic_merge.iter().enumerate() {
            let field = format!("patchesStrategicMerge[{i}]");
            let looks_inline = p.contains('\n') || p.contains(": ");
            let text = if looks_inline {
                p.clone()
            } else {
                self.loader.read_file(dir, p, file, &field)?
            };
            let docs = yaml::parse_documents(&text).map_err(|message| Error::Yaml {
                file: file.clone(),
                message,
            })?;
            for d in docs.into_iter().filter(|d| !d.is_null()) {
                smp_by_id(&mut ra.resources, &d, false, false)
                    .map_err(|e| field_err(file, &field, e))?;
            }
        }
        // patches
        for (i, p) in k.patches.iter().enumerate() {
            let field = format!("patches[{i}]");
            let text = self.load_patch_text(dir, p, file, &field)?;
            apply_patch_entry(&mut ra.resources, &text, p, file, &field)?;
        }
        if !k.namespace.is_empty() {
            transformers::namespace(&mut ra.resources, &k.namespace, &tc.namespace)
                .map_err(|e| field_err(file, "namespace", e))?;
        }
        if !k.name_prefix.is_empty() {
            transformers::prefix_suffix(&mut ra.resources, &k.name_prefix, true, &tc.name_prefix)
                .map_err(|e| field_err(file, "namePrefix", e))?;
        }
        if !k.name_suffix.is_empty() {
            transformers::prefix_suffix(&mut ra.resources, &k.name_suffix, false, &tc.name_suffix)
                .map_err(|e| field_err(file, "nameSuffix", e))?;
        }
        for l in &k.labels {
            let mut fss: Vec<FieldSpec> = l.fields.clone();
            merge_fs(&mut fss, &tc.labels);
            if l.include_selectors {
                merge_fs(&mut fss, &tc.common_labels);
            } else {
                if l.include_templates {
                    merge_fs(&mut fss, &tc.template_labels);
                }
                merge_fs(
                    &mut fss,
                    &[FieldSpec {
                        path: "metadata/labels".into(),
                        create: true,
                        ..Default::default()
                    }],
                );
            }
            transformers::set_map_entries(&mut ra.resources, &l.pairs, &fss)
                .map_err(|e| field_err(file, "labels", e))?;
        }
        transformers::set_map_entries(&mut ra.resources, &k.common_labels, &tc.common_labels)
            .map_err(|e| field_err(file, "commonLabels", e))?;
        transformers::set_map_entries(
            &mut ra.resources,
            &k.common_annotations,
            &tc.common_annotations,
        )
        .map_err(|e| field_err(file, "commonAnnotations", e))?;
        for (i, p) in k.patches_json6902.iter().enumerate() {
            let field = format!("patchesJson6902[{i}]");
            let text = self.load_patch_text(dir, p, file, &field)?;
            let ops = parse_json_patch(&text).map_err(|e| field_err(file, &field, e))?;
            let Some(target) = &p.target else {
                return Err(Error::field(
                    file,
                    &field,
                    "must specify a target for JSON patch",
                ));
            };
            json6902_on_targets(&mut ra.resources, target, &ops)
                .map_err(|e| field_err(file, &field, e))?;
        }
        for (name, count) in &k.replicas {
            transformers::replicas(&mut ra.resources, name, count, &tc.replicas)
                .map_err(|e| field_err(file, "replicas", e))?;
        }
        for im in &k.images {
            transformers::images(&mut ra.resources, im, &tc.images)
                .map_err(|e| field_err(file, "images", e))?;
        }
        if !k.replacements.is_empty() {
            let mut list = Vec::new();
            for (i, r) in k.replacements.iter().enumerate() {
                let field = format!("replacements[{i}]");
                if let Some(p) = r.str_at(&["path"]) {
                    let text = self.loader.read_file(dir, p, file, &field)?;
                    let docs = yaml::parse_documents(&text).map_err(|message| Error::Yaml {
                        file: dir.join(p),
                        message,
                    })?;
                    for d in docs {
                        match d {
                            Value::Seq(items) => list.extend(items),
                            Value::Null | Value::EmptyNull => {}
                            other => list.push(other),
                        }
                    }
                } else {
                    list.push(r.clone());
                }
            }
            replacements::apply(&mut ra.resources, &list)
                .map_err(|e| field_err(file, "replacements", e))?;
        }
        for t in &k.transformers {
            self.builtin_plugin_transformer(dir, t, ra, file)?;
        }
        Ok(())
    }

    fn builtin_plugin_transformer(
        &self,
        dir: &Path,
        t: &str,
        ra: &mut Accumulator,
        file: &Path,
    ) -> Result<()> {
        let text = if t.contains('\n') {
            t.to_string()
        } else {
            if is_remote(t) {
                return Err(Error::Unsupported {
                    file: file.to_path_buf(),
                    field: "transformers".into(),
                    what: format!("remote transformer '{t}'"),
                });
            }
            let path = self.loader.resolve(dir, t, file, "transformers")?;
            if path.is_dir() {
                return Err(Error::Unsupported {
                    file: file.to_path_buf(),
                    field: "transformers".into(),
                    what: "a kustomization directory of transformer configs".into(),
                });
            }
            self.loader.read_file(dir, t, file, "transformers")?
        };
        let docs = yaml::parse_documents(&text).map_err(|message| Error::Yaml {
            file: dir.join(t),
            message,
        })?;
        for d in docs.into_iter().filter(|d| !d.is_null()) {
            crate::plugins::apply_transformer(self, dir, &d, &mut ra.resources, &ra.config, file)?;
        }
        Ok(())
    }

    /// Reads a file a builtin plugin config names.
    pub(crate) fn plugin_read(
        &self,
        dir: &Path,
        rel: &str,
        file: &Path,
        field: &str,
    ) -> Result<String> {
        self.loader.read_file(dir, rel, file, field)
    }
}

fn merge_fs(into: &mut Vec<FieldSpec>, from: &[FieldSpec]) {
    for f in from {
        if !into.iter().any(|e| e.gvk == f.gvk && e.path == f.path) {
            into.push(f.clone());
        }
    }
}

/// Parses a JSON 6902 patch given as YAML or JSON.
pub(crate) fn parse_json_patch(text: &str) -> Result<Value, String> {
    let v = yaml::parse_one(text)?;
    match v {
        Value::Seq(_) => Ok(v),
        _ => Err("JSON patch must be a list of operations".into()),
    }
}

pub(crate) fn json6902_on_targets(
    resources: &mut [Resource],
    target: &crate::kustomization::Selector,
    ops: &Value,
) -> Result<(), String> {
    let sel = SelectorMatcher::new(target)?;
    for r in resources.iter_mut() {
        if r.is_empty() || !sel.matches(r) {
            continue;
        }
        r.store_previous_id();
        patch::apply_json6902(&mut r.obj, ops)?;
    }
    Ok(())
}

/// Applies an SMP patch to the one resource whose id it names.
pub(crate) fn smp_by_id(
    resources: &mut [Resource],
    p: &Value,
    allow_name: bool,
    allow_kind: bool,
) -> Result<(), String> {
    let pr = Resource::new(p.clone());
    let id = pr.cur_id();
    let matches: Vec<usize> = resources
        .iter()
        .enumerate()
        .filter(|(_, r)| !r.is_empty())
        .filter(|(_, r)| {
            r.prev_ids()
                .iter()
                .chain(std::iter::once(&r.cur_id()))
                .any(|x| x.equals(&id))
        })
        .map(|(i, _)| i)
        .collect();
    match matches.as_slice() {
        [i] => patch::apply_smp(&mut resources[*i], p, allow_name, allow_kind),
        [] => Err(format!(
            "no resource matches strategic merge patch \"{id}\": no matches for Id {id}; failed to find unique target for patch {id}"
        )),
        _ => Err(format!(
            "no resource matches strategic merge patch \"{id}\": multiple matches for Id {id}; failed to find unique target for patch {id}"
        )),
    }
}

pub(crate) fn apply_patch_entry(
    resources: &mut [Resource],
    text: &str,
    p: &PatchArgs,
    file: &Path,
    field: &str,
) -> Result<()> {
    let docs = yaml::parse_documents(text).map_err(|message| Error::Yaml {
        file: file.to_path_buf(),
        message,
    })?;
    let docs: Vec<Value> = docs.into_iter().filter(|d| !d.is_null()).collect();
    let is_json = docs.len() == 1 && matches!(docs[0], Value::Seq(_));
    if is_json {
        let Some(target) = &p.target else {
            return Err(Error::field(
                file,
                field,
                "must specify a target for JSON patch",
            ));
        };
        return json6902_on_targets(resources, target, &docs[0])
            .map_err(|e| field_err(file, field, e));
    }
    if docs.iter().any(|d| !matches!(d, Value::Map(_))) {
        return Err(Error::field(
            file,
            field,
            "unable to parse SM or JSON patch",
        ));
    }
    match &p.target {
        None => {
            for d in &docs {
                smp_by_id(resources, d, p.allow_name_change, p.allow_kind_change)
                    .map_err(|e| field_err(file, field, e))?;
            }
        }
        Some(t) => {
            if docs.len() > 1 {
                return Err(Error::field(
                    file,
                    field,
                    "Multiple Strategic-Merge Patches in one `patches` entry is not allowed to set `patches.target` field",
                ));
            }
            let sel = SelectorMatcher::new(t).map_err(|e| field_err(file, field, e))?;
            for r in resources.iter_mut() {
                if r.is_empty() || !sel.matches(r) {
                    continue;
                }
                let mut pc = docs[0].clone();
                if let Some(m) = pc.as_map_mut() {
                    m.insert("apiVersion".into(), Value::Str(r.api_version().to_string()));
                }
                patch::apply_smp(r, &pc, p.allow_name_change, p.allow_kind_change)
                    .map_err(|e| field_err(file, field, e))?;
            }
        }
    }
    Ok(())
}

/// Parses a resource file: multi-document YAML, `List` kinds expanded.
pub fn parse_resources(text: &str, path: &Path) -> Result<Vec<Resource>> {
    let docs = yaml::parse_documents(text).map_err(|message| Error::Yaml {
        file: path.to_path_buf(),
        message,
    })?;
    let mut out = Vec::new();
    for d in docs {
        match d {
            Value::Null | Value::EmptyNull => {}
            Value::Map(ref m) if m.is_empty() => {}
            Value::Map(_) => {
                let is_list = d.str_at(&["kind"]).is_some_and(|k| k.ends_with("List"))
                    && matches!(d.get("items"), Some(Value::Seq(_)));
                if is_list {
                    if let Some(Value::Seq(items)) = d.get("items") {
                        for it in items {
                            if let Value::Map(_) = it {
                                out.push(check_resource(it.clone(), path)?);
                            }
                        }
                    }
                } else {
                    out.push(check_resource(d, path)?);
                }
            }
            other => {
                let mut shown = other.scalar_string().unwrap_or_else(|| "a list".into());
                shown.truncate(80);
                return Err(Error::Yaml {
                    file: path.to_path_buf(),
                    message: format!("a resource document must be a map, found '{shown}'"),
                });
            }
        }
    }
    Ok(out)
}

fn check_resource(mut v: Value, path: &Path) -> Result<Resource> {
    // kustomize's reader annotates every object and clears those annotations
    // again, which drops an empty or null `metadata.annotations`.
    if let Some(Value::Map(meta)) = v.get_mut("metadata")
        && meta
            .get("annotations")
            .is_some_and(|a| a.is_null() || a.as_map().is_some_and(|m| m.is_empty()))
    {
        meta.remove("annotations");
    }
    let r = Resource::new(v);
    if r.kind().is_empty() {
        return Err(Error::field(
            path,
            "kind",
            "missing Resource metadata: kind is required",
        ));
    }
    if !r
        .kind()
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(Error::field(
            path,
            "kind",
            format!("invalid kind '{}' (is the file encrypted?)", r.kind()),
        ));
    }
    if r.name().contains(',') || r.namespace().contains(',') {
        return Err(Error::field(
            path,
            "metadata.name",
            format!("invalid name '{}' (is the file encrypted?)", r.name()),
        ));
    }
    Ok(r)
}

fn absorb(ra: &mut Accumulator, mut r: Resource, file: &Path) -> Result<()> {
    let id = r.cur_id();
    let matches: Vec<usize> = ra
        .resources
        .iter()
        .enumerate()
        .filter(|(_, o)| !o.is_empty())
        .filter(|(_, o)| {
            o.prev_ids()
                .iter()
                .chain(std::iter::once(&o.cur_id()))
                .any(|x| x.equals(&id))
        })
        .map(|(i, _)| i)
        .collect();
    let field = if r.kind() == "Secret" {
        "secretGenerator"
    } else {
        "configMapGenerator"
    };
    match matches.as_slice() {
        [] => match r.behavior {
            Behavior::Merge | Behavior::Replace => Err(Error::field(
                file,
                field,
                format!("id {id} does not exist; cannot merge or replace"),
            )),
            _ => {
                ra.resources.push(r);
                Ok(())
            }
        },
        [i] => {
            let old = ra.resources[*i].clone();
            match r.behavior {
                Behavior::Replace | Behavior::Merge => {
                    let merge = r.behavior == Behavior::Merge;
                    for key in ["labels", "annotations"] {
                        let mut merged: Vec<(String, String)> = old.string_map(key);
                        for (k, v) in r.string_map(key) {
                            merged.retain(|(ok, _)| *ok != k);
                            merged.push((k, v));
                        }
                        if let Some(meta) = r.metadata_mut() {
                            if merged.is_empty() {
                                meta.remove(key);
                            } else {
                                meta.insert(
                                    key.into(),
                                    Value::Map(
                                        merged
                                            .into_iter()
                                            .map(|(k, v)| (k, Value::Str(v)))
                                            .collect(),
                                    ),
                                );
                            }
                        }
                    }
                    r.set_name(old.name());
                    r.set_namespace(old.namespace());
                    r.prev = old.prev.clone();
                    r.prefixes = old.prefixes.clone();
                    r.suffixes = old.suffixes.clone();
                    r.needs_hash = r.needs_hash && old.needs_hash;
                    r.ref_var_names = old.ref_var_names.clone();
                    if merge && old.origin.is_some() {
                        r.origin = old.origin.clone();
                    }
                    if merge {
                        for key in ["data", "binaryData"] {
                            let mut merged = old
                                .obj
                                .get(key)
                                .and_then(Value::as_map)
                                .cloned()
                                .unwrap_or_default();
                            if let Some(Value::Map(new)) = r.obj.get(key) {
                                for (k, v) in new {
                                    merged.insert(k.clone(), v.clone());
                                }
                            }
                            if let Some(m) = r.obj.as_map_mut() {
                                if merged.is_empty() {
                                    m.remove(key);
                                } else {
                                    m.insert(key.into(), Value::Map(merged));
                                }
                            }
                        }
                    }
                    r.behavior = Behavior::Unspecified;
                    ra.resources[*i] = r;
                    Ok(())
                }
                _ => Err(Error::field(
                    file,
                    field,
                    format!(
                        "id {id} exists; can not use behavior: 'create', behavior must be merge or replace"
                    ),
                )),
            }
        }
        _ => Err(Error::field(
            file,
            field,
            format!("found multiple objects that could accept merge of {id}"),
        )),
    }
}
