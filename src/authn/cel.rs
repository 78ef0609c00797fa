//! CEL for structured authentication (`--authentication-config`): the expressions of claim
//! validation rules, claim mappings and user validation rules, compiled once at load and
//! evaluated per token, with kube-apiserver's variables (`claims`, `user`).
//!
//! Compiling also checks what kube-apiserver's type checker would: every identifier is the
//! field's variable (or one a macro binds), every function exists. And as the `cel` crate has
//! no cost limit, every expression is bounded when it is compiled:
//! - at most [`MAX_SOURCE`] bytes and [`MAX_NODES`] syntax nodes;
//! - at most [`MAX_COMPREHENSIONS`] comprehensions (`map`, `all`, `exists`, `filter`,
//!   `optMap`, ...), none inside another's body, each body at most [`MAX_BODY_NODES`] nodes and
//!   reading only its own variables and literals (not `claims` or `user`): per element, a body
//!   does work in proportion to that element, so a comprehension costs what its list weighs;
//! - `replace` takes a literal replacement, and the growth all of an expression's `replace`
//!   calls allow together (1 + the replacement's length, multiplied) is at most [`MAX_GROWTH`];
//!   `indexOf`, `lastIndexOf` and `join` take literal arguments (the crate's search is naive).
//!
//! With those, evaluation is linear in the size of the claims, which [`MAX_CLAIMS_BYTES`]
//! bounds for the issuers that use CEL.

use std::{collections::HashMap, sync::Arc, sync::OnceLock};

use cel::{
    Context, Env, Program, Value,
    common::ast::{EntryExpr, Expr, IdedExpr, LiteralValue},
};
use serde_json::Map;

/// Longest expression source accepted.
pub const MAX_SOURCE: usize = 4096;
/// Most syntax nodes in one expression, after macro expansion.
pub const MAX_NODES: usize = 256;
/// Largest factor by which `replace` calls may grow a string, all together.
pub const MAX_GROWTH: usize = 1024;
/// Most comprehensions in one expression, and most nodes in one comprehension's body.
pub const MAX_COMPREHENSIONS: usize = 2;
pub const MAX_BODY_NODES: usize = 32;
/// Largest claims payload (decoded JSON) of a token whose issuer has CEL expressions.
pub const MAX_CLAIMS_BYTES: usize = 32 * 1024;

/// The environment every expression is compiled and run in: CEL's standard library, optional
/// fields (`claims.?x.orValue(...)`), the strings extension and `matches`, as kube-apiserver's
/// authentication environment offers them.
fn env() -> &'static Arc<Env> {
    static ENV: OnceLock<Arc<Env>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Env::stdlib().with_optional_support(true);
        // The strings extension is part of the crate; registering it cannot fail.
        let _ = env.add_extension(cel::extensions::strings);
        Arc::new(env)
    })
}

/// A compiled expression and its source (the source is what error messages quote).
pub struct Expression {
    pub source: String,
    program: Program,
    /// The claims it reads by name (`claims.x`, `claims.?x`, `has(claims.x)`).
    claims_named: Vec<String>,
    /// It also uses `claims` as a whole (`'x' in claims`, `claims['x']`).
    claims_whole: bool,
}

impl std::fmt::Debug for Expression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Expression").field(&self.source).finish()
    }
}

/// The variable an expression may read: `claims` (claim rules and mappings) or `user` (user
/// validation rules). kube-apiserver refuses the other one at compile time; so do we.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variable {
    Claims,
    User,
}

impl Variable {
    fn name(self) -> &'static str {
        match self {
            Variable::Claims => "claims",
            Variable::User => "user",
        }
    }
}

/// Compiles `source` for `variable`, or says why it cannot be used.
pub fn compile(source: &str, variable: Variable) -> Result<Expression, String> {
    if source.trim().is_empty() {
        return Err("expression is empty".into());
    }
    if source.len() > MAX_SOURCE {
        return Err(format!(
            "expression is {} bytes long, more than the {MAX_SOURCE} allowed",
            source.len()
        ));
    }
    let program = env()
        .compile(source)
        .map_err(|e| format!("compilation failed: {}", first_line(&e.to_string())))?;
    let mut walk = Walk::default();
    walk.visit(program.expression(), None);
    if walk.nodes > MAX_NODES {
        return Err(format!(
            "expression has {} nodes, more than the {MAX_NODES} allowed",
            walk.nodes
        ));
    }
    if let Some(problem) = walk.problem {
        return Err(problem);
    }
    let other = match variable {
        Variable::Claims => Variable::User,
        Variable::User => Variable::Claims,
    };
    for ident in &walk.idents {
        if ident == variable.name() || walk.bound.contains(ident) || TYPE_NAMES.contains(&ident.as_str()) {
            continue;
        }
        if ident == other.name() {
            return Err(format!(
                "undeclared reference to '{ident}' (in this field only '{}' is defined)",
                variable.name()
            ));
        }
        return Err(format!("undeclared reference to '{ident}'"));
    }
    for (name, member) in &walk.calls {
        if !function_exists(name, *member) {
            return Err(format!("undeclared reference to function '{name}'"));
        }
    }
    let claims_named: Vec<String> = (walk.selects.into_iter())
        .filter(|(root, _)| root == "claims")
        .map(|(_, f)| f)
        .collect();
    let claims_whole = walk.idents.iter().filter(|i| *i == "claims").count() > claims_named.len();
    Ok(Expression {
        source: source.to_string(),
        program,
        claims_named,
        claims_whole,
    })
}

/// Type names an expression may use as values (`type(x) == list`).
const TYPE_NAMES: [&str; 10] = [
    "int",
    "uint",
    "double",
    "bool",
    "string",
    "bytes",
    "list",
    "map",
    "null_type",
    "type",
];

/// Whether the environment declares function `name` (as a method when `member`): the crate has
/// no checker, so ask it the way a call would, with no arguments, and see whether the name or
/// only the arguments are wrong.
fn function_exists(name: &str, member: bool) -> bool {
    let probe = if member {
        format!("null.{name}()")
    } else {
        format!("{name}()")
    };
    let Ok(program) = env().compile(&probe) else {
        return false;
    };
    let ctx = Context::with_env(env().clone());
    !matches!(program.execute(&ctx), Err(cel::ExecutionError::UndeclaredReference(n)) if n.as_str() == name)
}

/// The checks of [`compile`] that need the syntax tree.
#[derive(Default)]
struct Walk {
    nodes: usize,
    growth: usize,
    comprehensions: usize,
    idents: Vec<String>,
    /// Names comprehensions bind (iteration variables, accumulators).
    bound: Vec<String>,
    /// Functions called: name, and whether as a method.
    calls: Vec<(String, bool)>,
    problem: Option<String>,
    /// `claims.email` and `claims.email_verified` are read (kube's email rule needs to know).
    selects: Vec<(String, String)>,
}

/// Inside a comprehension's body: the node count where the body began.
type Body = Option<usize>;

impl Walk {
    fn refuse(&mut self, why: impl Into<String>) {
        self.problem.get_or_insert_with(|| why.into());
    }

    fn visit(&mut self, e: &IdedExpr, body: Body) {
        self.nodes += 1;
        if self.nodes > MAX_NODES || self.problem.is_some() {
            return;
        }
        if let Some(first) = body
            && self.nodes - first > MAX_BODY_NODES
        {
            self.refuse(format!(
                "a comprehension's body may have at most {MAX_BODY_NODES} nodes"
            ));
            return;
        }
        match &e.expr {
            Expr::Unspecified | Expr::Literal(_) => {}
            Expr::Ident(name) => {
                if body.is_some() && (name == "claims" || name == "user") {
                    self.refuse(format!(
                        "a comprehension's body may read only its own variables, not '{name}': \
                         per element it would cost as much as the whole token"
                    ));
                }
                self.idents.push(name.clone());
            }
            Expr::Select(s) => {
                if let Expr::Ident(root) = &s.operand.expr {
                    self.selects.push((root.clone(), s.field.clone()));
                }
                self.visit(&s.operand, body);
            }
            Expr::Call(c) => {
                // `claims.?email` is the optional-select call with the field as a literal.
                if c.func_name == "_?._"
                    && let [
                        IdedExpr {
                            expr: Expr::Ident(root),
                            ..
                        },
                        IdedExpr {
                            expr: Expr::Literal(LiteralValue::String(field)),
                            ..
                        },
                    ] = c.args.as_slice()
                {
                    self.selects.push((root.clone(), field.inner().to_string()));
                }
                let member = c.target.is_some();
                match c.func_name.as_str() {
                    "replace" if member => self.replace(&c.args),
                    "indexOf" | "lastIndexOf" | "join"
                        if member && !c.args.iter().all(|a| matches!(a.expr, Expr::Literal(_))) =>
                    {
                        self.refuse(format!("{}() needs literal arguments", c.func_name));
                    }
                    "format" => self.refuse("format() is not available"),
                    _ => {}
                }
                // Operators and internal helpers are spelled with symbols; only named
                // functions can be misspelled.
                if c.func_name
                    .chars()
                    .next()
                    .is_some_and(|ch| ch.is_ascii_alphabetic())
                {
                    self.calls.push((c.func_name.clone(), member));
                }
                if let Some(t) = &c.target {
                    self.visit(t, body);
                }
                for a in &c.args {
                    self.visit(a, body);
                }
            }
            Expr::Comprehension(c) => {
                if body.is_some() {
                    self.refuse(
                        "a comprehension (map, all, exists, exists_one, filter, optMap) inside the \
                         body of another is not allowed: its cost would grow with the square of \
                         the token's size",
                    );
                    return;
                }
                self.comprehensions += 1;
                if self.comprehensions > MAX_COMPREHENSIONS {
                    self.refuse(format!(
                        "an expression may have at most {MAX_COMPREHENSIONS} comprehensions"
                    ));
                    return;
                }
                self.bound.push(c.iter_var.clone());
                self.bound.extend(c.iter_var2.iter().cloned());
                self.bound.push(c.accu_var.clone());
                self.visit(&c.iter_range, None);
                self.visit(&c.accu_init, None);
                // The body runs once per element (optMap's runs once, in `result`).
                let start = Some(self.nodes);
                self.visit(&c.loop_cond, start);
                self.visit(&c.loop_step, start);
                self.visit(&c.result, start);
            }
            Expr::List(l) => {
                for x in &l.elements {
                    self.visit(x, body);
                }
            }
            Expr::Map(m) => self.entries(&m.entries, body),
            Expr::Struct(s) => self.entries(&s.entries, body),
        }
    }

    fn entries(&mut self, entries: &[cel::common::ast::IdedEntryExpr], body: Body) {
        for entry in entries {
            match &entry.expr {
                EntryExpr::StructField(f) => self.visit(&f.value, body),
                EntryExpr::MapEntry(m) => {
                    self.visit(&m.key, body);
                    self.visit(&m.value, body);
                }
            }
        }
    }

    fn replace(&mut self, args: &[IdedExpr]) {
        let Some(IdedExpr {
            expr: Expr::Literal(LiteralValue::String(to)),
            ..
        }) = args.get(1)
        else {
            self.refuse("replace() needs a string literal as its replacement");
            return;
        };
        let factor = to.len() + 1;
        self.growth = self.growth.max(1).saturating_mul(factor);
        if self.growth > MAX_GROWTH {
            self.refuse(format!(
                "the replace() calls of this expression could grow a claim {}-fold, more than \
                 the {MAX_GROWTH} allowed",
                self.growth
            ));
        }
    }
}

impl Expression {
    /// Whether the expression reads `claims.<field>` (plain or optional select).
    pub fn reads_claim(&self, field: &str) -> bool {
        self.claims_named.iter().any(|f| f == field)
    }

    /// The claims the expression reads by name; `None`: all of them.
    pub fn claims_read(&self) -> Option<&[String]> {
        (!self.claims_whole).then_some(self.claims_named.as_slice())
    }

    /// Runs the expression on `input`.
    pub fn eval(&self, input: &Input) -> Result<Value, String> {
        self.program.execute(&input.0).map_err(|e| e.to_string())
    }
}

/// What expressions read: one variable bound once, for every expression of a token (binding
/// converts the whole value, which costs more than most evaluations).
pub struct Input(Context<'static, 'static>);

impl Input {
    pub fn new(variable: Variable, value: Value) -> Input {
        let mut ctx = Context::with_env(env().clone());
        ctx.add_variable_from_value(variable.name(), value);
        Input(ctx)
    }
}

/// Claims as CEL sees them in kube-apiserver: decoded from JSON the way apimachinery's JSON
/// decoding does, so whole numbers are ints and the others doubles.
pub fn claims_value(claims: &Map<String, serde_json::Value>) -> Value {
    Value::from(
        claims
            .iter()
            .map(|(k, v)| (k.clone(), json_value(v)))
            .collect::<HashMap<String, Value>>(),
    )
}

/// [`claims_value`] with only the claims named in `keys` (those the expressions read): the
/// conversion is most of an evaluation's cost, and a claim nobody reads need not be converted.
pub fn claims_value_of(claims: &Map<String, serde_json::Value>, keys: &[String]) -> Value {
    Value::from(
        keys.iter()
            .filter_map(|k| claims.get(k).map(|v| (k.clone(), json_value(v))))
            .collect::<HashMap<String, Value>>(),
    )
}

fn json_value(v: &serde_json::Value) -> Value {
    match v {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        // As kube-apiserver's JSON decoding: a whole number that fits is an int, else a double.
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => Value::Int(i),
            None => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        serde_json::Value::String(s) => Value::String(Arc::new(s.clone())),
        serde_json::Value::Array(items) => Value::List(Arc::new(items.iter().map(json_value).collect())),
        serde_json::Value::Object(o) => claims_value(o),
    }
}

/// The `user` variable of user validation rules: `username`, `uid`, `groups`, `extra`.
pub fn user_value(user: &super::User) -> Value {
    let strings = |v: &[String]| Value::List(Arc::new(v.iter().map(|s| Value::from(s.as_str())).collect()));
    let extra: HashMap<String, Value> = user.extra.iter().map(|(k, v)| (k.clone(), strings(v))).collect();
    let mut fields: HashMap<String, Value> = HashMap::new();
    fields.insert("username".into(), Value::from(user.name.as_str()));
    fields.insert("uid".into(), Value::from(user.uid.as_str()));
    fields.insert("groups".into(), strings(&user.groups));
    fields.insert("extra".into(), Value::from(extra));
    Value::from(fields)
}

/// A CEL result as a string or list of strings (groups and extra values): a string is one value
/// (none when empty), null is none; anything else is an error.
pub fn string_list(v: &Value) -> Result<Vec<String>, String> {
    match v {
        Value::Null => Ok(Vec::new()),
        Value::String(s) if s.is_empty() => Ok(Vec::new()),
        Value::String(s) => Ok(vec![s.to_string()]),
        Value::List(items) => items
            .iter()
            // Empty strings in a list are dropped, as kube-apiserver drops them.
            .filter(|item| !matches!(item, Value::String(s) if s.is_empty()))
            .map(|item| match item {
                Value::String(s) => Ok(s.to_string()),
                other => Err(format!(
                    "expression must return a string or a list of strings, found a list holding {}",
                    type_name(other)
                )),
            })
            .collect(),
        other => Err(format!(
            "expression must return a string or a list of strings, found {}",
            type_name(other)
        )),
    }
}

pub fn type_name(v: &Value) -> &'static str {
    match v {
        Value::List(_) => "list",
        Value::Map(_) => "map",
        Value::Function(..) => "function",
        Value::Int(_) => "int",
        Value::UInt(_) => "uint",
        Value::Float(_) => "double",
        Value::String(_) => "string",
        Value::Bytes(_) => "bytes",
        Value::Bool(_) => "bool",
        Value::Null => "null",
        _ => "value",
    }
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("").to_string()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn claims() -> Value {
        match json!({"sub": "1234", "email": "a@x.com", "email_verified": true,
            "groups": ["dev", "ops"], "hd": "example.com", "exp": 1700000100, "nbf": 1700000000,
            "roles": "a,b", "username": "bob"})
        {
            serde_json::Value::Object(m) => claims_value(&m),
            _ => unreachable!(),
        }
    }

    fn run(src: &str) -> Result<Value, String> {
        compile(src, Variable::Claims)?.eval(&Input::new(Variable::Claims, claims()))
    }

    /// The expressions of kube-apiserver's documentation for structured authentication.
    #[test]
    fn the_documented_expressions_work() {
        let ok = |src: &str, want: Value| assert_eq!(run(src).unwrap(), want, "{src}");
        ok("claims.email_verified", Value::Bool(true));
        ok(
            "claims.groups.map(g, 'oidc:' + g)",
            Value::from(vec!["oidc:dev", "oidc:ops"]),
        );
        ok("has(claims.groups)", Value::Bool(true));
        ok("has(claims.nope)", Value::Bool(false));
        ok("claims.hd == 'example.com'", Value::Bool(true));
        ok("claims.exp - claims.nbf <= 86400", Value::Bool(true));
        ok(
            "claims.username + ':external-user'",
            Value::from("bob:external-user"),
        );
        ok("claims.roles.split(',')", Value::from(vec!["a", "b"]));
        ok(
            "claims.email_verified ? claims.email : claims.sub",
            Value::from("a@x.com"),
        );
        ok("claims.?nope.orValue('none')", Value::from("none"));
        ok("claims.email.lowerAscii().endsWith('@x.com')", Value::Bool(true));
        ok("claims.sub.matches('^[0-9]+$')", Value::Bool(true));
        ok("claims.email.replace('@', '-at-')", Value::from("a-at-x.com"));
        let user = Input::new(
            Variable::User,
            user_value(&crate::authn::User {
                name: "system:admin".into(),
                groups: vec!["dev".into()],
                ..Default::default()
            }),
        );
        let rule = compile("!user.username.startsWith('system:')", Variable::User).unwrap();
        assert_eq!(rule.eval(&user).unwrap(), Value::Bool(false));
        let rule = compile("user.groups.all(g, !g.startsWith('system:'))", Variable::User).unwrap();
        assert_eq!(rule.eval(&user).unwrap(), Value::Bool(true));
    }

    #[test]
    fn whole_numbers_are_ints_as_in_kube() {
        assert_eq!(run("claims.exp").unwrap(), Value::Int(1700000100));
        assert_eq!(run("claims.exp + 1 == 1700000101").unwrap(), Value::Bool(true));
        // Beyond 2^53 a double would merge neighbouring IDs into one user name.
        let big = match json!({"id": 1234567890123456789_i64, "ratio": 0.5}) {
            serde_json::Value::Object(m) => Input::new(Variable::Claims, claims_value(&m)),
            _ => unreachable!(),
        };
        let e = compile("'u:' + string(claims.id)", Variable::Claims).unwrap();
        assert_eq!(e.eval(&big).unwrap(), Value::from("u:1234567890123456789"));
        let e = compile("claims.ratio", Variable::Claims).unwrap();
        assert_eq!(e.eval(&big).unwrap(), Value::Float(0.5));
    }

    #[test]
    fn a_missing_claim_is_an_error_not_a_value() {
        assert!(run("claims.nope").is_err());
    }

    #[test]
    fn costly_or_foreign_expressions_are_refused_at_compile_time() {
        let refused = |src: &str, var: Variable, why: &str| {
            let e = compile(src, var).unwrap_err();
            assert!(e.contains(why), "{src}: {e}");
        };
        refused("", Variable::Claims, "empty");
        refused("claims.", Variable::Claims, "compilation failed");
        refused(&"a".repeat(MAX_SOURCE + 1), Variable::Claims, "bytes long");
        let wide = (0..200)
            .map(|i| format!("claims.c{i}"))
            .collect::<Vec<_>>()
            .join(" + ");
        refused(&wide, Variable::Claims, "nodes");
        refused(
            "claims.groups.all(g, claims.groups.exists(h, g == h))",
            Variable::Claims,
            "inside the body",
        );
        refused("claims.sub.replace('1', claims.sub)", Variable::Claims, "literal");
        refused(
            "claims.sub.replace('', 'xxxxxxxxxxxxxxxx').replace('', 'xxxxxxxxxxxxxxxx').replace('', 'xxxxxxx')",
            Variable::Claims,
            "fold",
        );
        refused("'%s'.format([claims.sub])", Variable::Claims, "format");
        refused(
            "user.username",
            Variable::Claims,
            "undeclared reference to 'user'",
        );
        refused(
            "claims.sub == ''",
            Variable::User,
            "undeclared reference to 'claims'",
        );
        // What kube-apiserver's checker refuses at load, instead of refusing every token.
        refused("claim.sub", Variable::Claims, "undeclared reference to 'claim'");
        refused(
            "claims.sub.lowerascii()",
            Variable::Claims,
            "function 'lowerascii'",
        );
        refused("sizeof(claims.groups)", Variable::Claims, "function 'sizeof'");
        // Bodies read their own element only: per element, no work in the token's size.
        refused(
            "claims.groups.map(g, claims.org + g)",
            Variable::Claims,
            "may read only its own variables",
        );
        refused(
            "claims.groups.filter(g, g in claims.allowed)",
            Variable::Claims,
            "may read only its own variables",
        );
        refused(
            "[claims.sub].map(s, s+s+s+s).map(s, s+s+s+s).map(s, s+s+s+s)",
            Variable::Claims,
            "at most 2 comprehensions",
        );
        refused(
            "claims.?sub.optMap(s, s+s).optMap(s, s+s).optMap(s, s+s)",
            Variable::Claims,
            "at most 2 comprehensions",
        );
        let long_body = (0..20).map(|_| "g").collect::<Vec<_>>().join(" + ");
        refused(
            &format!("claims.groups.map(g, {long_body})"),
            Variable::Claims,
            "at most 32 nodes",
        );
        refused(
            "claims.sub.indexOf(claims.x)",
            Variable::Claims,
            "literal arguments",
        );
        refused(
            "claims.groups.join(claims.x)",
            Variable::Claims,
            "literal arguments",
        );
        // A comprehension over another's result is fine: each runs once.
        assert!(
            compile(
                "claims.groups.filter(g, g != 'x').map(g, 'k:' + g)",
                Variable::Claims
            )
            .is_ok()
        );
    }

    #[test]
    fn the_claims_an_expression_reads_are_known() {
        let read = |src: &str| {
            compile(src, Variable::Claims)
                .unwrap()
                .claims_read()
                .map(|r| r.to_vec())
        };
        assert_eq!(
            read("has(claims.a) ? claims.?b.orValue(claims.c) : ''"),
            Some(vec!["a".to_string(), "b".into(), "c".into()])
        );
        assert_eq!(read("'a' in claims"), None);
        assert_eq!(read("claims['a']"), None);
        assert_eq!(read("size(claims) > 1"), None);
    }

    #[test]
    fn reads_claim_sees_plain_and_optional_selects() {
        let e = compile("claims.email_verified ? claims.email : ''", Variable::Claims).unwrap();
        assert!(e.reads_claim("email") && e.reads_claim("email_verified"));
        let e = compile("claims.?email.orValue('')", Variable::Claims).unwrap();
        assert!(e.reads_claim("email") && !e.reads_claim("email_verified"));
    }

    #[test]
    fn string_lists() {
        assert_eq!(string_list(&Value::Null).unwrap(), Vec::<String>::new());
        assert_eq!(string_list(&Value::from("")).unwrap(), Vec::<String>::new());
        assert_eq!(string_list(&Value::from("a")).unwrap(), ["a"]);
        assert_eq!(string_list(&Value::from(vec!["a", "b"])).unwrap(), ["a", "b"]);
        assert_eq!(string_list(&Value::from(vec!["a", "", "b"])).unwrap(), ["a", "b"]);
        assert!(string_list(&Value::Int(1)).is_err());
        assert!(string_list(&Value::from(vec![Value::Int(1)])).is_err());
    }
}
