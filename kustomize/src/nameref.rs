//! Name-reference fixing: after names changed (prefix, suffix, hash, namespace),
//! update every field that refers to the old name (kustomize's nameref filter).

use std::collections::HashMap;

use crate::fieldspec::{FieldSpec, NameBackRef, apply_path, split_path};
use crate::resource::{Gvk, ResId, Resource, same_ending};
use crate::value::Value;

/// What the fixer needs to know about a possible referral target.
struct Candidate {
    cur: ResId,
    prev: Vec<ResId>,
    prefixes: Vec<String>,
    suffixes: Vec<String>,
    orig_ns: String,
}

impl Candidate {
    fn ps_equals(&self, prefixes: &[String], suffixes: &[String], allow_empty: bool) -> bool {
        if allow_empty {
            let pe = self.prefixes.is_empty() || prefixes.is_empty();
            let se = self.suffixes.is_empty() || suffixes.is_empty();
            (pe || same_ending(&self.prefixes, prefixes))
                && (se || same_ending(&self.suffixes, suffixes))
        } else {
            same_ending(&self.prefixes, prefixes) && same_ending(&self.suffixes, suffixes)
        }
    }
}

struct Referrer {
    cur: ResId,
    prefixes: Vec<String>,
    suffixes: Vec<String>,
    role_ref: Option<Gvk>,
}

fn role_binding_namespaces(r: &Resource) -> Vec<String> {
    let mut out = Vec::new();
    if r.kind() != "RoleBinding" {
        return out;
    }
    if let Some(Value::Seq(subjects)) = r.obj.get("subjects") {
        for s in subjects {
            if s.str_at(&["kind"]) == Some("ServiceAccount")
                && let Some(ns) = s.str_at(&["namespace"])
            {
                out.push(ns.to_string());
            }
        }
    }
    out
}

fn select<'a>(
    old_name: &str,
    cands: Vec<&'a Candidate>,
    target: &Gvk,
    path: &str,
    referrer: &Referrer,
    same_ns_too: bool,
) -> Result<Option<&'a Candidate>, String> {
    let mut c: Vec<&Candidate> = cands
        .into_iter()
        .filter(|c| c.prev.iter().any(|id| id.name == old_name))
        .filter(|c| c.prev.iter().any(|id| id.gvk.is_selected_by(target)))
        .collect();
    if path.ends_with("roleRef/name")
        && let Some(g) = &referrer.role_ref
    {
        c.retain(|c| c.prev.iter().any(|id| id.gvk.is_selected_by(g)));
    }
    if !referrer.cur.gvk.is_cluster_scoped() {
        c.retain(|c| {
            c.cur.gvk.is_cluster_scoped()
                || c.cur.gvk.kind == "ServiceAccount"
                || referrer.cur.ns_equals(&c.cur)
        });
    }
    if c.len() == 1 {
        return Ok(Some(c[0]));
    }
    c.retain(|x| x.ps_equals(&referrer.prefixes, &referrer.suffixes, true));
    if c.len() > 1 {
        c.retain(|x| x.ps_equals(&referrer.prefixes, &referrer.suffixes, false));
    }
    match c.len() {
        0 => Ok(None),
        1 => Ok(Some(c[0])),
        _ => {
            let first = c[0];
            let same = c.iter().all(|x| {
                x.cur.name == first.cur.name
                    && (!same_ns_too || x.cur.namespace == first.cur.namespace)
            });
            if same {
                Ok(Some(first))
            } else {
                let ids: Vec<String> = c.iter().map(|x| x.cur.to_string()).collect();
                Err(format!(
                    "found multiple possible referrals: {}",
                    ids.join(", ")
                ))
            }
        }
    }
}

/// Candidates whose previous names include a name, restricted to those the
/// referrer could reference (kustomize's `SubsetThatCouldBeReferencedByResource`).
struct Pool<'a> {
    cands: &'a [Candidate],
    by_name: &'a HashMap<String, Vec<usize>>,
    referrer_cluster_scoped: bool,
    referrer_id: &'a crate::resource::ResId,
    rb_namespaces: &'a [String],
}

impl<'a> Pool<'a> {
    fn named(&self, name: &str) -> Vec<&'a Candidate> {
        let Some(idx) = self.by_name.get(name) else {
            return Vec::new();
        };
        idx.iter()
            .map(|i| &self.cands[*i])
            .filter(|c| self.in_subset(c))
            .collect()
    }

    fn in_subset(&self, c: &Candidate) -> bool {
        self.referrer_cluster_scoped
            || c.cur.gvk.is_cluster_scoped()
            || c.cur.ns_equals(self.referrer_id)
            || self.rb_namespaces.contains(&c.cur.namespace)
    }
}

fn set_node(
    node: &mut Value,
    pool: &Pool<'_>,
    target: &Gvk,
    path: &str,
    referrer: &Referrer,
) -> Result<(), String> {
    match node {
        Value::Null | Value::EmptyNull => Ok(()),
        Value::Str(old) => {
            if let Some(r) = select(old, pool.named(old), target, path, referrer, false)?
                && r.cur.name != *old
            {
                *node = Value::Str(r.cur.name.clone());
            }
            Ok(())
        }
        Value::Map(m) => {
            let Some(old) = m.get("name").and_then(Value::as_str).map(str::to_string) else {
                return Err("path config error; no 'name' field in node".into());
            };
            let named = pool.named(&old);
            let filtered: Vec<&Candidate> = match m.get("namespace").and_then(Value::as_str) {
                None => named,
                Some(ns) => {
                    // kustomize groups the candidates by original namespace and
                    // falls back to the current one when no group matches.
                    let any_orig = pool
                        .cands
                        .iter()
                        .any(|c| c.orig_ns == ns && pool.in_subset(c));
                    if any_orig {
                        named.into_iter().filter(|c| c.orig_ns == ns).collect()
                    } else {
                        named
                            .into_iter()
                            .filter(|c| c.cur.namespace == ns)
                            .collect()
                    }
                }
            };
            if let Some(r) = select(&old, filtered, target, path, referrer, true)? {
                if r.cur.name == old && r.cur.namespace.is_empty() {
                    return Ok(());
                }
                m.insert("name".into(), Value::Str(r.cur.name.clone()));
                if !r.cur.namespace.is_empty() {
                    m.insert("namespace".into(), Value::Str(r.cur.namespace.clone()));
                }
            }
            Ok(())
        }
        Value::Seq(items) => {
            for item in items {
                match item {
                    Value::Str(_) | Value::Map(_) => set_node(item, pool, target, path, referrer)?,
                    _ => {}
                }
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Fixes name references in all resources.
pub fn fix(resources: &mut [Resource], backrefs: &[NameBackRef]) -> Result<(), String> {
    let cands: Vec<Candidate> = resources
        .iter()
        .map(|r| {
            let prev = r.prev_ids();
            let orig_ns = prev
                .first()
                .map(|p| p.namespace.clone())
                .unwrap_or_else(|| r.namespace().to_string());
            Candidate {
                cur: r.cur_id(),
                prev,
                prefixes: r.prefixes.clone(),
                suffixes: r.suffixes.clone(),
                orig_ns,
            }
        })
        .collect();
    let rb_ns: Vec<Vec<String>> = resources.iter().map(role_binding_namespaces).collect();
    let mut by_name: HashMap<String, Vec<usize>> = HashMap::new();
    for (i, c) in cands.iter().enumerate() {
        let mut names: Vec<&str> = c.prev.iter().map(|p| p.name.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        for n in names {
            by_name.entry(n.to_string()).or_default().push(i);
        }
    }
    for (i, r) in resources.iter_mut().enumerate() {
        if r.is_empty() {
            continue;
        }
        let org = r.org_id();
        let mut filters: Vec<(&FieldSpec, &Gvk)> = Vec::new();
        for br in backrefs {
            for fs in &br.field_specs {
                if org.gvk.is_selected_by(&fs.gvk) {
                    filters.push((fs, &br.gvk));
                }
            }
        }
        if filters.is_empty() {
            continue;
        }
        let cur = r.cur_id();
        let role_ref = r.obj.get("roleRef").and_then(|rr| {
            Some(Gvk {
                group: rr.str_at(&["apiGroup"])?.to_string(),
                version: String::new(),
                kind: rr.str_at(&["kind"])?.to_string(),
            })
        });
        let referrer = Referrer {
            cur,
            prefixes: r.prefixes.clone(),
            suffixes: r.suffixes.clone(),
            role_ref,
        };
        let pool = Pool {
            cands: &cands,
            by_name: &by_name,
            referrer_cluster_scoped: referrer.cur.gvk.is_cluster_scoped(),
            referrer_id: &referrer.cur,
            rb_namespaces: &rb_ns[i],
        };
        for (fs, target) in filters {
            apply_path(&mut r.obj, &split_path(&fs.path), false, &mut |n| {
                set_node(n, &pool, target, &fs.path, &referrer)
            })
            .map_err(|e| {
                format!(
                    "updating name reference in '{}' field of '{}': {e}",
                    fs.path, referrer.cur
                )
            })?;
        }
    }
    Ok(())
}
