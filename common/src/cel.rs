//! CEL expressions as Flux's `runtime/cel` handles them, for the controllers that evaluate CEL
//! (kustomize-controller's `healthCheckExprs` and `readyExpr`, notification-controller's Receiver filters).
//!
//! - The environment is the CEL standard library with optional values (`a.?b`), plus the strings and encoders
//!   extensions (Flux's `ext.Strings()` and `ext.Encoders()`). Not available: Flux's `ext.Sets()`, timestamps and
//!   durations.
//! - [`Expression::parse`] only checks syntax (Flux's health check expressions, where any top-level field of an
//!   object is a variable); [`Expression::compile_bool`] also checks, as Flux's compiled expressions are checked,
//!   that only the declared variables are used and that the result can be a bool. cel-rust has no type checker,
//!   so both rules are checked on the syntax tree, as far as they can be known without field types: a field of a
//!   variable is `dyn` (cel-go types `google.protobuf.Struct` fields so), so `dep.spec.suspend` is refused
//!   (`expected bool, got dyn`) while `dep.spec.suspend == true` is not. What cannot be typed here (list
//!   literals, arithmetic, unknown functions) is left to the evaluation, which requires a bool.
//! - Error messages follow cel-go's: `failed to parse the CEL expression '<expr>': ERROR: <input>:1:5: ...`,
//!   `failed to evaluate the CEL expression '<expr>': no such key: phase`.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use cel::common::ast::{EntryExpr, Expr, IdedExpr, LiteralValue, operators};
use cel::common::value::Val;
use cel::{Context, DeclarationError, Env, ExecutionError, Program, Value as CelValue};
use serde_json::Value;

/// A CEL extension library: registers its functions on an environment.
type Extension = fn(&mut Env) -> Result<(), DeclarationError>;

/// The shared environment: standard library, strings and encoders.
static ENV: LazyLock<Arc<Env>> = LazyLock::new(|| {
    let mut env = Env::stdlib();
    let extensions: [(&str, Extension); 2] = [
        ("strings", cel::extensions::strings),
        ("encoders", cel::extensions::encoders),
    ];
    for (name, extension) in extensions {
        if let Err(e) = env.add_extension(extension) {
            tracing::error!(extension = name, error = %e, "CEL extension not registered");
        }
    }
    Arc::new(env)
});

/// Identifiers that are not variables: type names and the namespaces of extension functions.
const NON_VARIABLE_IDENTS: &[&str] = &[
    "bool",
    "bytes",
    "double",
    "dyn",
    "int",
    "list",
    "map",
    "null_type",
    "string",
    "type",
    "uint",
    "optional",
    "base64",
    "strings",
    "math",
    "sets",
];

/// Why an expression cannot be used, with cel-go's wording.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CelError {
    #[error("failed to parse the CEL expression '{expr}': {issues}")]
    Parse { expr: String, issues: String },
    #[error("CEL expression output type mismatch: expected {expected}, got {got}")]
    OutputType { expected: String, got: String },
    #[error("failed to evaluate the CEL expression '{expr}': {message}")]
    Evaluate { expr: String, message: String },
    #[error("failed to evaluate CEL expression as boolean: '{0}'")]
    NotBoolean(String),
    #[error("failed to evaluate CEL expression as string: '{0}'")]
    NotString(String),
}

/// A parsed (or compiled) CEL expression.
#[derive(Debug)]
pub struct Expression {
    source: String,
    program: Program,
}

impl Expression {
    /// Parses `source` for its syntax only, as Flux's `NewExpression` without `WithCompile`.
    pub fn parse(source: &str) -> Result<Self, CelError> {
        let program = ENV.compile(source).map_err(|e| CelError::Parse {
            expr: source.to_string(),
            issues: e.to_string(),
        })?;
        Ok(Expression {
            source: source.to_string(),
            program,
        })
    }

    /// Compiles `source` with `variables` declared as structs and a bool result, as Flux's `NewExpression` with
    /// `WithCompile`, `WithStructVariables(variables...)` and `WithOutputType(BoolType)`.
    pub fn compile_bool(source: &str, variables: &[&str]) -> Result<Self, CelError> {
        Self::compile(source, variables, "bool")
    }

    /// Compiles `source` with `variables` declared as structs and a string result (`WithOutputType(StringType)`).
    pub fn compile_string(source: &str, variables: &[&str]) -> Result<Self, CelError> {
        Self::compile(source, variables, "string")
    }

    fn compile(source: &str, variables: &[&str], output: &str) -> Result<Self, CelError> {
        let expression = Self::parse(source)?;
        let root = expression.program.expression();
        if let Some((name, id)) = undeclared(root, variables, &mut Vec::new()) {
            let offset = expression
                .program
                .source_info()
                .offset_for(id)
                .map_or(0, |(start, _)| start as usize);
            return Err(CelError::Parse {
                expr: source.to_string(),
                issues: issue(
                    source,
                    offset,
                    &format!("undeclared reference to '{name}' (in container '')"),
                ),
            });
        }
        let scope: HashMap<&str, Type> = variables
            .iter()
            .map(|v| (*v, Type::Other(STRUCT_TYPE.to_string())))
            .collect();
        let mismatch = |got: String| CelError::OutputType {
            expected: output.to_string(),
            got,
        };
        match (output_type(root, &scope), output) {
            (Type::Unknown, _) | (Type::Bool, "bool") => Ok(expression),
            (Type::Other(name), _) if name == output => Ok(expression),
            (Type::Bool, _) => Err(mismatch("bool".into())),
            (Type::Dyn, _) => Err(mismatch("dyn".into())),
            (Type::Other(name), _) => Err(mismatch(name)),
        }
    }

    /// The expression as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Evaluates the expression with `variables` bound to JSON values; the result must be a bool.
    pub fn evaluate_bool<'a>(
        &self,
        variables: impl IntoIterator<Item = (&'a str, &'a Value)>,
    ) -> Result<bool, CelError> {
        self.evaluate_bool_in(&Variables::new(variables))
    }

    /// Evaluates the expression with `variables` bound to JSON values; the result must be a string.
    pub fn evaluate_string<'a>(
        &self,
        variables: impl IntoIterator<Item = (&'a str, &'a Value)>,
    ) -> Result<String, CelError> {
        match self.execute(&Variables::new(variables))? {
            CelValue::String(s) => Ok(s.to_string()),
            _ => Err(CelError::NotString(self.source.clone())),
        }
    }

    /// Evaluates the expression against variables converted once for several expressions.
    pub fn evaluate_bool_in(&self, variables: &Variables<'_>) -> Result<bool, CelError> {
        match self.execute(variables)? {
            CelValue::Bool(b) => Ok(b),
            _ => Err(CelError::NotBoolean(self.source.clone())),
        }
    }

    fn execute(&self, variables: &Variables<'_>) -> Result<CelValue, CelError> {
        self.program
            .execute(&variables.0)
            .map_err(|e| CelError::Evaluate {
                expr: self.source.clone(),
                message: self.execution_message(&e),
            })
    }

    /// cel-go's wording for the errors users meet most: a missing field or variable.
    fn execution_message(&self, err: &ExecutionError) -> String {
        match err {
            ExecutionError::NoSuchKey(key) => format!("no such key: {key}"),
            ExecutionError::UndeclaredReference(name)
                if self.program.references().has_variable(name.as_str()) =>
            {
                format!("no such attribute(s): {name}")
            }
            other => other.to_string(),
        }
    }
}

/// JSON values bound to variable names, ready for evaluation; [`Variables::with`] adds one in a child scope.
pub struct Variables<'p>(Context<'p, 'static>);

fn bind(context: &mut Context<'_, 'static>, name: &str, value: &Value) {
    // Cannot fail for the values `to_cel` makes; a variable left out would be an evaluation error.
    match Box::<dyn Val>::try_from(to_cel(value)) {
        Ok(value) => context.add_variable_as_val(name, value),
        Err(e) => tracing::warn!(variable = name, error = %e, "CEL variable not bound"),
    }
}

impl Variables<'static> {
    /// Converts each value with [`to_cel`].
    pub fn new<'a>(variables: impl IntoIterator<Item = (&'a str, &'a Value)>) -> Self {
        let mut context = Context::with_env(ENV.clone());
        for (name, value) in variables {
            bind(&mut context, name, value);
        }
        Variables(context)
    }
}

impl Variables<'_> {
    /// These variables and `name` bound to `value`, without converting these again.
    pub fn with<'s>(&'s self, name: &str, value: &Value) -> Variables<'s> {
        let mut context = self.0.new_inner_scope();
        bind(&mut context, name, value);
        Variables(context)
    }
}

/// A JSON value as CEL sees it: integers are `int` (as in Go's unstructured objects), maps have string keys.
pub fn to_cel(value: &Value) -> CelValue {
    match value {
        Value::Null => CelValue::Null,
        Value::Bool(b) => CelValue::Bool(*b),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                CelValue::Int(i)
            } else if let Some(u) = n.as_u64() {
                CelValue::UInt(u)
            } else {
                CelValue::Float(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        Value::String(s) => CelValue::String(Arc::new(s.clone())),
        Value::Array(items) => CelValue::List(Arc::new(items.iter().map(to_cel).collect())),
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| (k.clone(), to_cel(v)))
            .collect::<HashMap<String, CelValue>>()
            .into(),
    }
}

/// cel-go's issue format: the message at `line:column`, then the line and a caret under the column.
fn issue(source: &str, offset: usize, message: &str) -> String {
    let (mut line, mut column) = (1, 1);
    for c in source.chars().take(offset) {
        if c == '\n' {
            line += 1;
            column = 1;
        } else {
            column += 1;
        }
    }
    let text = source.lines().nth(line - 1).unwrap_or_default();
    format!(
        "ERROR: <input>:{line}:{column}: {message}\n | {text}\n | {}^",
        ".".repeat(column - 1)
    )
}

/// The first identifier used as a variable that is neither declared nor bound by a macro, with its node id.
fn undeclared<'e>(
    e: &'e IdedExpr,
    declared: &[&str],
    bound: &mut Vec<&'e str>,
) -> Option<(&'e str, u64)> {
    match &e.expr {
        Expr::Ident(name) => {
            let known = name.starts_with('@')
                || declared.contains(&name.as_str())
                || bound.contains(&name.as_str())
                || NON_VARIABLE_IDENTS.contains(&name.as_str());
            (!known).then_some((name.as_str(), e.id))
        }
        Expr::Call(call) => call
            .target
            .as_deref()
            .and_then(|t| undeclared(t, declared, bound))
            .or_else(|| {
                call.args
                    .iter()
                    .find_map(|a| undeclared(a, declared, bound))
            }),
        Expr::Select(select) => undeclared(&select.operand, declared, bound),
        Expr::List(list) => list
            .elements
            .iter()
            .find_map(|el| undeclared(el, declared, bound)),
        Expr::Map(map) => map
            .entries
            .iter()
            .find_map(|entry| entry_undeclared(&entry.expr, declared, bound)),
        Expr::Struct(s) => s
            .entries
            .iter()
            .find_map(|entry| entry_undeclared(&entry.expr, declared, bound)),
        Expr::Comprehension(c) => {
            if let Some(found) = undeclared(&c.iter_range, declared, bound)
                .or_else(|| undeclared(&c.accu_init, declared, bound))
            {
                return Some(found);
            }
            let depth = bound.len();
            bound.push(&c.iter_var);
            if let Some(v) = &c.iter_var2 {
                bound.push(v);
            }
            bound.push(&c.accu_var);
            let found = [&c.loop_cond, &c.loop_step, &c.result]
                .into_iter()
                .find_map(|x| undeclared(x, declared, bound));
            bound.truncate(depth);
            found
        }
        Expr::Literal(_) | Expr::Unspecified => None,
    }
}

fn entry_undeclared<'e>(
    entry: &'e EntryExpr,
    declared: &[&str],
    bound: &mut Vec<&'e str>,
) -> Option<(&'e str, u64)> {
    match entry {
        EntryExpr::StructField(f) => undeclared(&f.value, declared, bound),
        EntryExpr::MapEntry(m) => {
            undeclared(&m.key, declared, bound).or_else(|| undeclared(&m.value, declared, bound))
        }
    }
}

/// cel-go's name for a variable declared as `google.protobuf.Struct`.
const STRUCT_TYPE: &str = "map(string, dyn)";

/// What is known of an expression's result type.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Type {
    Bool,
    /// A field of a struct: any value.
    Dyn,
    /// Known, and not a bool.
    Other(String),
    /// Not known here.
    Unknown,
}

/// Functions of the standard library and extensions by result type.
const BOOL_FUNCTIONS: &[&str] = &[
    "contains",
    "endsWith",
    "startsWith",
    "matches",
    "hasValue",
    "bool",
    operators::LOGICAL_AND,
    operators::LOGICAL_OR,
    operators::LOGICAL_NOT,
    operators::EQUALS,
    operators::NOT_EQUALS,
    operators::GREATER,
    operators::GREATER_EQUALS,
    operators::LESS,
    operators::LESS_EQUALS,
    operators::IN,
    operators::NOT_STRICTLY_FALSE,
];
const INT_FUNCTIONS: &[&str] = &["size", "int", "indexOf", "lastIndexOf"];
const STRING_FUNCTIONS: &[&str] = &[
    "string",
    "charAt",
    "format",
    "join",
    "lowerAscii",
    "upperAscii",
    "trim",
    "replace",
    "substring",
    "reverse",
    "quote",
];

fn output_type<'e>(e: &'e IdedExpr, scope: &HashMap<&'e str, Type>) -> Type {
    match &e.expr {
        Expr::Literal(l) => match l {
            LiteralValue::Boolean(_) => Type::Bool,
            LiteralValue::Int(_) => Type::Other("int".into()),
            LiteralValue::UInt(_) => Type::Other("uint".into()),
            LiteralValue::Double(_) => Type::Other("double".into()),
            LiteralValue::String(_) => Type::Other("string".into()),
            LiteralValue::Bytes(_) => Type::Other("bytes".into()),
            LiteralValue::Null => Type::Other("null_type".into()),
        },
        Expr::Ident(name) => scope.get(name.as_str()).cloned().unwrap_or(Type::Unknown),
        // `has(a.b)`.
        Expr::Select(s) if s.test => Type::Bool,
        Expr::Select(s) => field_of(output_type(&s.operand, scope)),
        Expr::Call(call) => {
            let name = call.func_name.as_str();
            if BOOL_FUNCTIONS.contains(&name) {
                return Type::Bool;
            }
            if INT_FUNCTIONS.contains(&name) {
                return Type::Other("int".into());
            }
            if STRING_FUNCTIONS.contains(&name) {
                return Type::Other("string".into());
            }
            match name {
                "dyn" => Type::Dyn,
                operators::INDEX => match call.args.first() {
                    Some(operand) => field_of(output_type(operand, scope)),
                    None => Type::Unknown,
                },
                operators::CONDITIONAL => {
                    let branches: Vec<Type> = call
                        .args
                        .iter()
                        .skip(1)
                        .map(|a| output_type(a, scope))
                        .collect();
                    match branches.as_slice() {
                        [a, b] if a == b => a.clone(),
                        _ => Type::Unknown,
                    }
                }
                _ => Type::Unknown,
            }
        }
        Expr::Comprehension(c) => {
            let accu = output_type(&c.accu_init, scope);
            let mut inner = scope.clone();
            inner.insert(&c.iter_var, Type::Dyn);
            if let Some(v) = &c.iter_var2 {
                inner.insert(v, Type::Dyn);
            }
            inner.insert(&c.accu_var, accu);
            output_type(&c.result, &inner)
        }
        Expr::List(_) | Expr::Map(_) | Expr::Struct(_) | Expr::Unspecified => Type::Unknown,
    }
}

/// The type of a field (or index) of a value of type `operand`.
fn field_of(operand: Type) -> Type {
    match operand {
        Type::Dyn => Type::Dyn,
        Type::Other(name) if name == STRUCT_TYPE => Type::Dyn,
        _ => Type::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_numbers_are_ints_and_the_stdlib_and_extensions_work() {
        let obj = json!({"replicas": 3, "ratio": 0.5, "labels": {"app/version": "v1.2.3"},
                         "conditions": [{"type": "Ready", "status": "True"}], "data": "aGk="});
        let eval = |source: &str| {
            Expression::parse(source).unwrap().evaluate_bool(
                obj.as_object()
                    .unwrap()
                    .iter()
                    .map(|(k, v)| (k.as_str(), v)),
            )
        };
        for source in [
            "replicas == 3",
            "replicas > 2 && ratio < 1.0",
            "labels['app/version'].startsWith('v1.')",
            "conditions.filter(e, e.type == 'Ready').all(e, e.status == 'True')",
            "conditions.exists(e, e.type == 'Ready')",
            "size(conditions) == 1",
            "labels['app/version'].matches('^v[0-9.]+$')",
            "'V1'.lowerAscii() == 'v1'",
            "base64.decode(data) == b'hi'",
            "labels.?missing.orValue('none') == 'none'",
            "!has(labels.missing)",
        ] {
            assert_eq!(eval(source), Ok(true), "{source}");
        }
    }

    #[test]
    fn ready_expressions_are_compiled_against_self_and_dep() {
        let vars = ["self", "dep"];
        let ok = [
            "self.metadata.annotations['app/version'] == dep.metadata.annotations['app/version']",
            "dep.status.conditions.filter(e, e.type == 'Ready').all(e, e.status == 'True')",
            "dep.spec.suspend == true",
            "has(dep.status.lastAppliedRevision)",
            "dep.metadata.name.startsWith('db') || size(dep.metadata.name) > 3",
            "true",
        ];
        for source in ok {
            assert!(Expression::compile_bool(source, &vars).is_ok(), "{source}");
        }
        let err = |source: &str| {
            Expression::compile_bool(source, &vars)
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            err("self.generation == deps.generation"),
            "failed to parse the CEL expression 'self.generation == deps.generation': ERROR: <input>:1:20: \
             undeclared reference to 'deps' (in container '')\n | self.generation == deps.generation\n \
             | ...................^"
        );
        assert_eq!(
            err("dep.spec.suspend"),
            "CEL expression output type mismatch: expected bool, got dyn"
        );
        assert_eq!(
            err("'foo'"),
            "CEL expression output type mismatch: expected bool, got string"
        );
        assert_eq!(
            err("size(dep.metadata.name)"),
            "CEL expression output type mismatch: expected bool, got int"
        );
        assert!(
            err("dep.").starts_with("failed to parse the CEL expression 'dep.': ERROR: <input>:1:")
        );
    }

    #[test]
    fn string_expressions_compile_and_evaluate() {
        let vars = ["event", "provider"];
        let expr = Expression::compile_string(
            "(event.involvedObject.kind + '/' + event.involvedObject.name).lowerAscii() + '/' + provider.metadata.name",
            &vars,
        )
        .unwrap();
        let event = json!({"involvedObject": {"kind": "Kustomization", "name": "Apps"}});
        let provider = json!({"metadata": {"name": "prod-01"}});
        assert_eq!(
            expr.evaluate_string([("event", &event), ("provider", &provider)]),
            Ok("kustomization/apps/prod-01".to_string())
        );
        let err = |source: &str| {
            Expression::compile_string(source, &vars)
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            err("event.involvedObject.kind"),
            "CEL expression output type mismatch: expected string, got dyn"
        );
        assert_eq!(
            err("event.involvedObject.kind == 'x'"),
            "CEL expression output type mismatch: expected string, got bool"
        );
        assert_eq!(
            err("size(provider.metadata.name)"),
            "CEL expression output type mismatch: expected string, got int"
        );
        let number = Expression::compile_string("event.count", &[]).err();
        assert!(number.is_some(), "undeclared 'event'");
    }

    #[test]
    fn ready_expressions_evaluate_with_cel_go_errors() {
        let vars = ["self", "dep"];
        let me = json!({"metadata": {"annotations": {"app/version": "v1"}}});
        let dep = json!({"metadata": {"annotations": {"app/version": "v1"}}});
        let same = Expression::compile_bool(
            "self.metadata.annotations['app/version'] == dep.metadata.annotations['app/version']",
            &vars,
        )
        .unwrap();
        assert_eq!(same.evaluate_bool([("self", &me), ("dep", &dep)]), Ok(true));
        let other = json!({"metadata": {"annotations": {"app/version": "v2"}}});
        assert_eq!(
            same.evaluate_bool([("self", &me), ("dep", &other)]),
            Ok(false)
        );
        let none = json!({"metadata": {}});
        assert_eq!(
            same.evaluate_bool([("self", &me), ("dep", &none)]),
            Err(CelError::Evaluate {
                expr: same.source().to_string(),
                message: "no such key: annotations".into()
            })
        );
    }
}
