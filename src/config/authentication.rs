//! `--authentication-config`: kube-apiserver's `AuthenticationConfiguration`
//! (`apiserver.config.k8s.io/v1`, `v1beta1`, `v1alpha1`), read verbatim and validated as
//! kube-apiserver validates it (its messages are kept where they exist), with every CEL
//! expression compiled here, once.
//!
//! What the proxy cannot do is refused with a message, never ignored: `anonymous` (the proxy
//! serves no unauthenticated request) and `egressSelectorType` (it has no egress selector).

use std::{
    collections::HashSet,
    hash::{Hash, Hasher},
    path::Path,
    sync::Arc,
};

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::ConfigError;
use crate::authn::{
    cel::{self, Variable},
    rules::{ClaimRule, ExtraMapping, JwtRules, Prefixed, Uid, UserRule},
};

/// kube-apiserver's limit on `jwt` entries.
pub const MAX_JWT: usize = 64;

const API_VERSIONS: [&str; 3] = [
    "apiserver.config.k8s.io/v1",
    "apiserver.config.k8s.io/v1beta1",
    "apiserver.config.k8s.io/v1alpha1",
];

type S = Spanned<String>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct File {
    #[serde(default)]
    api_version: Option<S>,
    #[serde(default)]
    kind: Option<S>,
    #[serde(default)]
    jwt: Option<Vec<Spanned<Jwt>>>,
    #[serde(default)]
    anonymous: Option<Spanned<serde_json::Value>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Jwt {
    #[serde(default)]
    issuer: Option<Spanned<Issuer>>,
    #[serde(default)]
    claim_validation_rules: Option<Vec<Spanned<ClaimValidationRule>>>,
    #[serde(default)]
    claim_mappings: Option<Spanned<ClaimMappings>>,
    #[serde(default)]
    user_validation_rules: Option<Vec<Spanned<UserValidationRule>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Issuer {
    #[serde(default)]
    url: Option<S>,
    #[serde(default, rename = "discoveryURL")]
    discovery_url: Option<S>,
    #[serde(default)]
    certificate_authority: Option<S>,
    #[serde(default)]
    audiences: Option<Vec<S>>,
    #[serde(default)]
    audience_match_policy: Option<S>,
    #[serde(default)]
    egress_selector_type: Option<S>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ClaimValidationRule {
    #[serde(default)]
    claim: Option<S>,
    #[serde(default)]
    required_value: Option<S>,
    #[serde(default)]
    expression: Option<S>,
    #[serde(default)]
    message: Option<S>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ClaimMappings {
    #[serde(default)]
    username: Option<Spanned<PrefixedClaimOrExpression>>,
    #[serde(default)]
    groups: Option<Spanned<PrefixedClaimOrExpression>>,
    #[serde(default)]
    uid: Option<Spanned<ClaimOrExpression>>,
    #[serde(default)]
    extra: Option<Vec<Spanned<ExtraMappingSpec>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PrefixedClaimOrExpression {
    #[serde(default)]
    claim: Option<S>,
    #[serde(default)]
    prefix: Option<S>,
    #[serde(default)]
    expression: Option<S>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClaimOrExpression {
    #[serde(default)]
    claim: Option<S>,
    #[serde(default)]
    expression: Option<S>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ExtraMappingSpec {
    #[serde(default)]
    key: Option<S>,
    #[serde(default)]
    value_expression: Option<S>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UserValidationRule {
    #[serde(default)]
    expression: Option<S>,
    #[serde(default)]
    message: Option<S>,
}

/// One validated `jwt` entry, ready to build an authenticator from.
#[derive(Debug)]
pub struct JwtIssuer {
    pub url: String,
    pub discovery_url: Option<String>,
    pub ca_pem: Option<Vec<u8>>,
    pub audiences: Vec<String>,
    pub rules: Arc<JwtRules>,
    /// Hash of the entry as written: an entry that did not change between two loads keeps its
    /// authenticator (keys, refresh state).
    pub fingerprint: u64,
}

#[derive(Debug)]
pub struct AuthenticationConfig {
    pub jwt: Vec<JwtIssuer>,
}

/// Every problem found in the file (kube-apiserver reports them all at once, and so do we).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl std::fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

pub fn load(path: &Path) -> Result<AuthenticationConfig, ConfigErrors> {
    load_with_bytes(path).map(|(cfg, _)| cfg)
}

/// [`load`], and the bytes it parsed: the reloader starts from them, so an edit made between
/// start-up's read and the reloader's first look is still applied.
pub fn load_with_bytes(path: &Path) -> Result<(AuthenticationConfig, Vec<u8>), ConfigErrors> {
    let whole = |message: String| {
        ConfigErrors(vec![ConfigError {
            file: path.to_path_buf(),
            line: 0,
            field: String::new(),
            message,
        }])
    };
    let bytes = std::fs::read(path).map_err(|e| whole(format!("cannot read: {e}")))?;
    let text = std::str::from_utf8(&bytes).map_err(|e| whole(format!("not UTF-8: {e}")))?;
    Ok((parse(path, text)?, bytes))
}

struct Errors<'a> {
    path: &'a Path,
    list: Vec<ConfigError>,
}

impl Errors<'_> {
    fn add(&mut self, line: u64, field: impl Into<String>, message: impl Into<String>) {
        self.list.push(ConfigError {
            file: self.path.to_path_buf(),
            line,
            field: field.into(),
            message: message.into(),
        });
    }
}

fn text(s: &Option<S>) -> &str {
    s.as_ref().map_or("", |s| s.value.as_str())
}

fn line_of(s: &Option<S>, fallback: u64) -> u64 {
    s.as_ref().map_or(fallback, |s| s.referenced.line())
}

pub fn parse(path: &Path, source: &str) -> Result<AuthenticationConfig, ConfigErrors> {
    let mut errs = Errors {
        path,
        list: Vec::new(),
    };
    let file: File = serde_saphyr::from_str(source).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            file: path.to_path_buf(),
            line: e.location().map(|l| l.line()).unwrap_or(0),
            field: String::new(),
            message: e.to_string().lines().next().unwrap_or("").to_string(),
        }])
    })?;

    match &file.api_version {
        Some(v) if API_VERSIONS.contains(&v.value.as_str()) => {}
        other => errs.add(
            line_of(other, 1),
            "apiVersion",
            format!("must be one of {}", API_VERSIONS.join(", ")),
        ),
    }
    if text(&file.kind) != "AuthenticationConfiguration" {
        errs.add(
            line_of(&file.kind, 1),
            "kind",
            "must be AuthenticationConfiguration",
        );
    }
    if let Some(a) = &file.anonymous {
        errs.add(
            a.referenced.line(),
            "anonymous",
            "not supported: the proxy never serves an unauthenticated request",
        );
    }
    let entries = file.jwt.unwrap_or_default();
    if entries.len() > MAX_JWT {
        errs.add(
            entries[MAX_JWT].referenced.line(),
            "jwt",
            format!("must have at most {MAX_JWT} items"),
        );
        return Err(ConfigErrors(errs.list));
    }
    let mut seen_urls = HashSet::new();
    let mut seen_discovery = HashSet::new();
    let mut jwt = Vec::new();
    for (i, entry) in entries.into_iter().enumerate() {
        let at = format!("jwt[{i}]");
        let line = entry.referenced.line();
        if let Some(issuer) = jwt_entry(&mut errs, &at, line, entry.value) {
            if !seen_urls.insert(issuer.url.clone()) {
                errs.add(
                    line,
                    format!("{at}.issuer.url"),
                    format!("Duplicate value: {:?}", issuer.url),
                );
            }
            if let Some(d) = &issuer.discovery_url
                && !seen_discovery.insert(d.clone())
            {
                errs.add(
                    line,
                    format!("{at}.issuer.discoveryURL"),
                    format!("Duplicate value: {d:?}"),
                );
            }
            jwt.push(issuer);
        }
    }
    if errs.list.is_empty() {
        Ok(AuthenticationConfig { jwt })
    } else {
        Err(ConfigErrors(errs.list))
    }
}

fn jwt_entry(errs: &mut Errors, at: &str, line: u64, jwt: Jwt) -> Option<JwtIssuer> {
    let before = errs.list.len();
    let Some(issuer) = jwt.issuer else {
        errs.add(line, format!("{at}.issuer"), "Required value");
        return None;
    };
    let il = issuer.referenced.line();
    let issuer = issuer.value;
    let ip = format!("{at}.issuer");

    let url = text(&issuer.url).to_string();
    if url.is_empty() {
        errs.add(line_of(&issuer.url, il), format!("{ip}.url"), "Required value");
    } else {
        check_url(errs, line_of(&issuer.url, il), &format!("{ip}.url"), &url);
    }
    let discovery_url = issuer
        .discovery_url
        .as_ref()
        .map(|d| d.value.clone())
        .filter(|d| !d.is_empty());
    if let Some(d) = &discovery_url {
        let dl = line_of(&issuer.discovery_url, il);
        if !url.is_empty() && url.trim_end_matches('/') == d.trim_end_matches('/') {
            errs.add(
                dl,
                format!("{ip}.discoveryURL"),
                "discoveryURL must be different from URL",
            );
        }
        check_url(errs, dl, &format!("{ip}.discoveryURL"), d);
    }

    let audiences: Vec<S> = issuer.audiences.unwrap_or_default();
    let policy = text(&issuer.audience_match_policy);
    let pl = line_of(&issuer.audience_match_policy, il);
    if audiences.is_empty() {
        errs.add(
            il,
            format!("{ip}.audiences"),
            format!("at least one {ip}.audiences is required"),
        );
    }
    let mut seen = HashSet::new();
    for (j, a) in audiences.iter().enumerate() {
        let f = format!("{ip}.audiences[{j}]");
        if a.value.is_empty() {
            errs.add(a.referenced.line(), f.clone(), "Required value");
        }
        if !seen.insert(a.value.as_str()) {
            errs.add(a.referenced.line(), f, format!("Duplicate value: {:?}", a.value));
        }
    }
    if audiences.len() > 1 && policy != "MatchAny" {
        errs.add(
            pl,
            format!("{ip}.audienceMatchPolicy"),
            "audienceMatchPolicy must be MatchAny for multiple audiences",
        );
    }
    if audiences.len() == 1 && !policy.is_empty() && policy != "MatchAny" {
        errs.add(
            pl,
            format!("{ip}.audienceMatchPolicy"),
            "audienceMatchPolicy must be empty or MatchAny for single audience",
        );
    }
    let ca_pem = issuer
        .certificate_authority
        .as_ref()
        .filter(|c| !c.value.is_empty())
        .map(|c| c.value.clone().into_bytes());
    if let Some(pem) = &ca_pem
        && let Err(e) = crate::tls::certs_from_pem(pem, "certificateAuthority")
    {
        errs.add(
            line_of(&issuer.certificate_authority, il),
            format!("{ip}.certificateAuthority"),
            e.to_string(),
        );
    }
    if let Some(e) = issuer
        .egress_selector_type
        .as_ref()
        .filter(|e| !e.value.is_empty())
    {
        errs.add(
            e.referenced.line(),
            format!("{ip}.egressSelectorType"),
            "not supported: the proxy reaches issuers directly, it has no egress selector",
        );
    }

    let (claim_rules, uses_email_verified_in_rules) =
        claim_validation_rules(errs, at, jwt.claim_validation_rules);
    let mappings = mappings(errs, at, line, jwt.claim_mappings, uses_email_verified_in_rules);
    let user_rules = user_validation_rules(errs, at, jwt.user_validation_rules);

    if errs.list.len() > before {
        return None;
    }
    let (username, groups, uid, extra) = mappings?;
    let audiences: Vec<String> = audiences.into_iter().map(|a| a.value).collect();
    let rules = JwtRules::new(claim_rules, username, groups, uid, extra, user_rules);
    // What the entry means, expressions by their source: equal entries hash equal.
    let mut h = std::collections::hash_map::DefaultHasher::new();
    format!("{url:?} {discovery_url:?} {ca_pem:?} {audiences:?} {rules:?}").hash(&mut h);
    Some(JwtIssuer {
        url,
        discovery_url,
        ca_pem,
        audiences,
        rules: Arc::new(rules),
        fingerprint: h.finish(),
    })
}

/// kube-apiserver's URL rules for `url` and `discoveryURL`.
fn check_url(errs: &mut Errors, line: u64, field: &str, url: &str) {
    let Ok(uri) = url.parse::<http::Uri>() else {
        errs.add(line, field, format!("invalid URL {url:?}"));
        return;
    };
    if uri.scheme_str() != Some("https") {
        errs.add(line, field, "URL scheme must be https");
    }
    if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
        errs.add(line, field, "URL must not contain a username or password");
    }
    if uri.query().is_some() {
        errs.add(line, field, "URL must not contain a query");
    }
    if url.contains('#') {
        errs.add(line, field, "URL must not contain a fragment");
    }
}

fn compile(
    errs: &mut Errors,
    line: u64,
    field: &str,
    source: &str,
    var: Variable,
) -> Option<cel::Expression> {
    match cel::compile(source, var) {
        Ok(e) => Some(e),
        Err(why) => {
            errs.add(line, field, format!("Invalid value: {source:?}: {why}"));
            None
        }
    }
}

fn claim_validation_rules(
    errs: &mut Errors,
    at: &str,
    rules: Option<Vec<Spanned<ClaimValidationRule>>>,
) -> (Vec<ClaimRule>, bool) {
    let mut out = Vec::new();
    let mut seen_claims = HashSet::new();
    let mut seen_exprs = HashSet::new();
    let mut uses_email_verified = false;
    for (i, rule) in rules.unwrap_or_default().into_iter().enumerate() {
        let f = format!("{at}.claimValidationRules[{i}]");
        let rl = rule.referenced.line();
        let r = rule.value;
        let (claim, expr) = (text(&r.claim), text(&r.expression));
        match (claim.is_empty(), expr.is_empty()) {
            (false, false) => errs.add(rl, f, "claim and expression can't both be set"),
            (true, true) => errs.add(rl, f, "claim or expression is required"),
            (false, true) => {
                if !text(&r.message).is_empty() {
                    errs.add(
                        line_of(&r.message, rl),
                        format!("{f}.message"),
                        "may not be specified when claim is set",
                    );
                }
                if !seen_claims.insert(claim.to_string()) {
                    errs.add(rl, format!("{f}.claim"), format!("Duplicate value: {claim:?}"));
                }
                out.push(ClaimRule::Required {
                    claim: claim.to_string(),
                    value: text(&r.required_value).to_string(),
                });
            }
            (true, false) => {
                if !text(&r.required_value).is_empty() {
                    errs.add(
                        line_of(&r.required_value, rl),
                        format!("{f}.requiredValue"),
                        "may not be specified when expression is set",
                    );
                }
                if !seen_exprs.insert(expr.to_string()) {
                    errs.add(
                        rl,
                        format!("{f}.expression"),
                        format!("Duplicate value: {expr:?}"),
                    );
                    continue;
                }
                if let Some(e) = compile(
                    errs,
                    line_of(&r.expression, rl),
                    &format!("{f}.expression"),
                    expr,
                    Variable::Claims,
                ) {
                    uses_email_verified |= e.reads_claim("email_verified");
                    out.push(ClaimRule::Expression {
                        expr: e,
                        message: text(&r.message).to_string(),
                    });
                }
            }
        }
    }
    (out, uses_email_verified)
}

type Mappings = (Prefixed, Option<Prefixed>, Option<Uid>, Vec<ExtraMapping>);

fn mappings(
    errs: &mut Errors,
    at: &str,
    line: u64,
    m: Option<Spanned<ClaimMappings>>,
    mut uses_email_verified: bool,
) -> Option<Mappings> {
    let f = format!("{at}.claimMappings");
    let ml = m.as_ref().map_or(line, |m| m.referenced.line());
    let m = m.map(|m| m.value).unwrap_or_default();
    let username = prefixed(errs, &format!("{f}.username"), ml, m.username, true);
    let groups = prefixed(errs, &format!("{f}.groups"), ml, m.groups, false);

    let uid = match m.uid {
        None => Some(None),
        Some(u) => {
            let ul = u.referenced.line();
            let (claim, expr) = (text(&u.value.claim), text(&u.value.expression));
            match (claim.is_empty(), expr.is_empty()) {
                (false, false) => {
                    errs.add(ul, format!("{f}.uid"), "claim and expression can't both be set");
                    None
                }
                (true, true) => Some(None),
                (false, true) => Some(Some(Uid::Claim(claim.to_string()))),
                (true, false) => compile(errs, ul, &format!("{f}.uid.expression"), expr, Variable::Claims)
                    .map(|e| Some(Uid::Expression(e))),
            }
        }
    };

    let mut extra = Vec::new();
    let mut seen = HashSet::new();
    for (i, x) in m.extra.unwrap_or_default().into_iter().enumerate() {
        let xf = format!("{f}.extra[{i}]");
        let xl = x.referenced.line();
        let key = text(&x.value.key).to_string();
        if let Err(why) = domain_prefixed_path(&key) {
            errs.add(xl, format!("{xf}.key"), why);
        }
        if key != key.to_lowercase() {
            errs.add(xl, format!("{xf}.key"), "must be lowercase");
        }
        if is_kubernetes_domain(&key) {
            errs.add(
                xl,
                format!("{xf}.key"),
                "k8s.io, kubernetes.io and their subdomains are reserved for Kubernetes use",
            );
        }
        if !seen.insert(key.clone()) {
            errs.add(xl, format!("{xf}.key"), format!("Duplicate value: {key:?}"));
            continue;
        }
        let expr = text(&x.value.value_expression);
        if expr.is_empty() {
            errs.add(xl, format!("{xf}.valueExpression"), "Required value");
            continue;
        }
        if let Some(e) = compile(errs, xl, &format!("{xf}.valueExpression"), expr, Variable::Claims) {
            uses_email_verified |= e.reads_claim("email_verified");
            extra.push(ExtraMapping { key, expr: e });
        }
    }

    let Some(Some(username)) = username else {
        return None;
    };
    if let Prefixed::Expression(e) = &username {
        uses_email_verified |= e.reads_claim("email_verified");
        if e.reads_claim("email") && !uses_email_verified {
            errs.add(
                ml,
                format!("{f}.username.expression"),
                "claims.email_verified must be used in claimMappings.username.expression or \
                 claimMappings.extra[*].valueExpression or claimValidationRules[*].expression when \
                 claims.email is used in claimMappings.username.expression",
            );
        }
    }
    Some((username, groups?, uid?, extra))
}

/// `Some(Some(_))` a mapping, `Some(None)` none given (allowed for groups), `None` an error.
fn prefixed(
    errs: &mut Errors,
    f: &str,
    fallback_line: u64,
    p: Option<Spanned<PrefixedClaimOrExpression>>,
    required: bool,
) -> Option<Option<Prefixed>> {
    let Some(p) = p else {
        if required {
            errs.add(fallback_line, f, "claim or expression is required");
            return None;
        }
        return Some(None);
    };
    let pl = p.referenced.line();
    let p = p.value;
    let (claim, expr) = (text(&p.claim), text(&p.expression));
    match (claim.is_empty(), expr.is_empty()) {
        (false, false) => {
            errs.add(pl, f, "claim and expression can't both be set");
            None
        }
        (true, true) if required => {
            errs.add(pl, f, "claim or expression is required");
            None
        }
        (true, true) => Some(None),
        (true, false) => {
            if let Some(prefix) = &p.prefix {
                errs.add(
                    prefix.referenced.line(),
                    format!("{f}.prefix"),
                    "may not be specified when expression is set",
                );
            }
            compile(
                errs,
                line_of(&p.expression, pl),
                &format!("{f}.expression"),
                expr,
                Variable::Claims,
            )
            .map(|e| Some(Prefixed::Expression(e)))
        }
        (false, true) => match p.prefix {
            None => {
                errs.add(
                    pl,
                    format!("{f}.prefix"),
                    "prefix is required when claim is set. It can be set to an empty string to disable prefixing",
                );
                None
            }
            Some(prefix) => Some(Some(Prefixed::Claim {
                claim: claim.to_string(),
                prefix: prefix.value,
            })),
        },
    }
}

fn user_validation_rules(
    errs: &mut Errors,
    at: &str,
    rules: Option<Vec<Spanned<UserValidationRule>>>,
) -> Vec<UserRule> {
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    for (i, rule) in rules.unwrap_or_default().into_iter().enumerate() {
        let f = format!("{at}.userValidationRules[{i}].expression");
        let rl = rule.referenced.line();
        let expr = text(&rule.value.expression);
        if expr.is_empty() {
            errs.add(rl, f, "Required value");
            continue;
        }
        if !seen.insert(expr.to_string()) {
            errs.add(rl, f, format!("Duplicate value: {expr:?}"));
            continue;
        }
        if let Some(e) = compile(
            errs,
            line_of(&rule.value.expression, rl),
            &f,
            expr,
            Variable::User,
        ) {
            out.push(UserRule {
                expr: e,
                message: text(&rule.value.message).to_string(),
            });
        }
    }
    out
}

/// Re-reads the file every `every` and hands a changed, valid configuration to `apply`. A file
/// that cannot be read or does not validate, or that `apply` cannot use, keeps the
/// configuration in force, with an error naming file, line and field. `initial`: the bytes the
/// caller loaded at start.
pub fn spawn_reloader<F>(
    path: std::path::PathBuf,
    initial: Option<Vec<u8>>,
    every: std::time::Duration,
    cancel: tokio_util::sync::CancellationToken,
    apply: F,
) where
    F: Fn(AuthenticationConfig) -> Result<(), String> + Send + Sync + 'static,
{
    let last = std::sync::Mutex::new(initial);
    super::reload::poll_until_cancelled(every, cancel, move || {
        let mut last = last.lock().unwrap_or_else(|e| e.into_inner());
        if std::fs::read(&path).is_ok_and(|bytes| last.as_ref() == Some(&bytes)) {
            return;
        }
        let bytes = match super::reload::read_settled(&path) {
            Ok(bytes) => bytes,
            Err(e) => {
                tracing::error!(file = %path.display(), error = %e, "authentication config cannot be read; keeping the issuers in force");
                return;
            }
        };
        if last.as_ref() == Some(&bytes) {
            return;
        }
        *last = Some(bytes.clone());
        let result = std::str::from_utf8(&bytes)
            .map_err(|e| format!("{}: not UTF-8: {e}", path.display()))
            .and_then(|text| parse(&path, text).map_err(|e| e.to_string()))
            .and_then(&apply);
        match result {
            Ok(()) => tracing::info!(file = %path.display(), "authentication config reloaded"),
            Err(e) => {
                tracing::error!("authentication config not reloaded, keeping the issuers in force: {e}")
            }
        }
    });
}

/// apimachinery's `IsDomainPrefixedPath`: `domain/path`, the domain a DNS-1123 subdomain.
fn domain_prefixed_path(key: &str) -> Result<(), String> {
    if key.is_empty() {
        return Err("Required value".into());
    }
    let Some((domain, path)) = key.split_once('/') else {
        return Err(format!(
            "Invalid value: {key:?}: must be a domain-prefixed path (such as \"acme.io/foo\")"
        ));
    };
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if domain.is_empty() || domain.len() > 253 || !domain.split('.').all(label_ok) {
        return Err(format!(
            "Invalid value: {domain:?}: a lowercase RFC 1123 subdomain is required"
        ));
    }
    let path_ok = |b: u8| b.is_ascii_alphanumeric() || b"/-._~%!$&'()*+,;=:".contains(&b);
    if path.is_empty() || !path.bytes().all(path_ok) {
        return Err(format!(
            "Invalid value: {path:?}: the path after the domain is missing or holds invalid characters"
        ));
    }
    Ok(())
}

fn is_kubernetes_domain(key: &str) -> bool {
    let domain = key.split_once('/').map_or("", |(d, _)| d);
    domain == "kubernetes.io"
        || domain.ends_with(".kubernetes.io")
        || domain == "k8s.io"
        || domain.ends_with(".k8s.io")
}

#[cfg(test)]
mod tests;
