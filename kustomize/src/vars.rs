//! `vars`: `$(NAME)` references filled from fields of resources.

use crate::fieldspec::{FieldSpec, apply_specs};
use crate::kustomization::Var;
use crate::replacements::{lookup, split_field_path};
use crate::resource::{Gvk, Resource};
use crate::value::Value;

/// Tags the resource each var refers to (kustomize's `MergeVars`).
pub fn tag(resources: &mut [Resource], vars: &[Var]) -> Result<(), String> {
    for v in vars {
        let want = Gvk::from_api_version(&v.api_version, &v.kind);
        let matched: Vec<usize> = resources
            .iter()
            .enumerate()
            .filter(|(_, r)| !r.is_empty())
            .filter(|(_, r)| {
                let mut ids = vec![r.cur_id()];
                ids.extend(r.prev_ids());
                ids.iter().any(|id| {
                    id.gvk.is_selected_by(&want)
                        && id.name == v.obj_name
                        && (v.namespace.is_empty() || id.namespace == v.namespace)
                })
            })
            .map(|(i, _)| i)
            .collect();
        if matched.len() > 1 {
            return Err(format!(
                "found {} resId matches for var {} (unable to disambiguate)",
                matched.len(),
                v.name
            ));
        }
        if let [i] = matched.as_slice() {
            resources[*i].ref_var_names.push(v.name.clone());
        }
    }
    Ok(())
}

fn expand(input: &str, values: &[(String, Value)], counts: &mut [usize]) -> Value {
    let bytes = input.as_bytes();
    let mut out = String::new();
    let mut checkpoint = 0;
    let mut cursor = 0;
    while cursor < bytes.len() {
        if bytes[cursor] == b'$' && cursor + 1 < bytes.len() {
            out.push_str(&input[checkpoint..cursor]);
            let rest = &input[cursor + 1..];
            let advance;
            match rest.as_bytes()[0] {
                b'$' => {
                    out.push('$');
                    advance = 1;
                }
                b'(' => match rest.find(')') {
                    Some(end) => {
                        let name = &rest[1..end];
                        match values.iter().position(|(n, _)| n == name) {
                            Some(i) => {
                                counts[i] += 1;
                                if input.len() == end + 2 {
                                    return values[i].1.clone();
                                }
                                out.push_str(&values[i].1.scalar_string().unwrap_or_default());
                            }
                            None => {
                                out.push_str("$(");
                                out.push_str(name);
                                out.push(')');
                            }
                        }
                        advance = end + 1;
                    }
                    None => {
                        out.push_str("$(");
                        advance = 1;
                    }
                },
                _ => {
                    out.push('$');
                    let c = rest.chars().next().unwrap_or(' ');
                    out.push(c);
                    advance = c.len_utf8();
                }
            }
            cursor += advance + 1;
            checkpoint = cursor;
            continue;
        }
        cursor += 1;
    }
    out.push_str(&input[checkpoint.min(input.len())..]);
    Value::Str(out)
}

/// Replaces `$(VAR)` in the varReference fields. Returns the names of vars never used.
pub fn resolve(
    resources: &mut [Resource],
    vars: &[Var],
    specs: &[FieldSpec],
) -> Result<Vec<String>, String> {
    if vars.is_empty() {
        return Ok(Vec::new());
    }
    let mut values: Vec<(String, Value)> = Vec::new();
    for v in vars {
        let r = resources
            .iter()
            .find(|r| r.ref_var_names.contains(&v.name))
            .ok_or_else(|| {
                format!(
                    "var '{}' cannot be mapped to a field in the set of known resources",
                    v.name
                )
            })?;
        let val = lookup(&r.obj, &split_field_path(&v.field_path))
            .cloned()
            .ok_or_else(|| {
                format!(
                    "field specified in var '{}' not found in corresponding resource",
                    v.name
                )
            })?;
        values.push((v.name.clone(), val));
    }
    let mut counts = vec![0usize; values.len()];
    for r in resources.iter_mut() {
        if r.is_empty() {
            continue;
        }
        let gvk = r.gvk();
        apply_specs(&mut r.obj, &gvk, specs, &mut |n| {
            match n {
                Value::Str(s) => {
                    let s = s.clone();
                    *n = expand(&s, &values, &mut counts);
                }
                Value::Map(m) => {
                    for v in m.values_mut() {
                        if let Value::Str(s) = v {
                            let s = s.clone();
                            *v = expand(&s, &values, &mut counts);
                        }
                    }
                }
                Value::Seq(items) => {
                    for v in items.iter_mut() {
                        if let Value::Str(s) = v {
                            let s = s.clone();
                            *v = expand(&s, &values, &mut counts);
                        }
                    }
                }
                _ => {}
            }
            Ok(())
        })?;
    }
    Ok(values
        .iter()
        .zip(counts)
        .filter(|(_, c)| *c == 0)
        .map(|((n, _), _)| n.clone())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_references() {
        let vals = vec![
            ("A".to_string(), Value::Str("x".into())),
            ("N".to_string(), Value::Int(3)),
        ];
        let mut c = vec![0, 0];
        assert_eq!(
            expand("a-$(A)-$(B)-$$", &vals, &mut c),
            Value::Str("a-x-$(B)-$".into())
        );
        assert_eq!(expand("$(N)", &vals, &mut c), Value::Int(3));
        assert_eq!(c, [1, 1]);
    }
}
