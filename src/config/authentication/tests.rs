//! Table tests after kube-apiserver's own validation tests for `AuthenticationConfiguration`
//! (`apis/apiserver/validation`): each bad file names the field and kube's message.

use serde_json::json;

use super::*;

fn p() -> &'static Path {
    Path::new("authn.yaml")
}

/// One `jwt` entry (indented for the list) wrapped in a v1 file.
fn file(entry: &str) -> String {
    format!("apiVersion: apiserver.config.k8s.io/v1\nkind: AuthenticationConfiguration\njwt:\n{entry}")
}

const ISSUER: &str = "- issuer:\n    url: https://kc.example.com/realms/people\n    audiences: [kube]\n";

fn mapped(extra: &str) -> String {
    file(&format!(
        "{ISSUER}  claimMappings:\n    username:\n      claim: sub\n      prefix: \"oidc:\"\n{extra}"
    ))
}

fn errors(text: &str) -> Vec<String> {
    match parse(p(), text) {
        Ok(_) => Vec::new(),
        Err(e) => e.0.iter().map(|e| e.to_string()).collect(),
    }
}

#[track_caller]
fn refused(text: &str, field: &str, message: &str) {
    let errs = errors(text);
    assert!(
        errs.iter()
            .any(|e| e.contains(&format!(": {field}: ")) && e.contains(message)),
        "want {field}: {message}\ngot {errs:#?}\nfor\n{text}"
    );
}

#[test]
fn a_full_file_in_each_version_loads() {
    let body = "jwt:
- issuer:
    url: https://kc.example.com/realms/people
    discoveryURL: https://kc.internal/realms/people/.well-known/openid-configuration
    audiences: [kube, kubectl]
    audienceMatchPolicy: MatchAny
  claimValidationRules:
  - claim: hd
    requiredValue: example.com
  - expression: 'claims.exp - claims.nbf <= 86400'
    message: total token lifetime must not exceed 24 hours
  claimMappings:
    username:
      expression: 'claims.email_verified ? claims.email : claims.sub'
    groups:
      expression: 'claims.groups.map(g, \"kc:\" + g)'
    uid:
      claim: sub
    extra:
    - key: example.com/tenant
      valueExpression: claims.tenant
  userValidationRules:
  - expression: \"!user.username.startsWith('system:')\"
    message: 'username cannot use the reserved system: prefix'
- issuer:
    url: https://token.actions.githubusercontent.com
    audiences: [kube-oidc-proxy]
  claimMappings:
    username:
      claim: sub
      prefix: 'gha:'
";
    for version in ["v1", "v1beta1", "v1alpha1"] {
        let text = format!(
            "apiVersion: apiserver.config.k8s.io/{version}\nkind: AuthenticationConfiguration\n{body}"
        );
        let cfg = parse(p(), &text).unwrap_or_else(|e| panic!("{version}: {e}"));
        assert_eq!(cfg.jwt.len(), 2);
        let kc = &cfg.jwt[0];
        assert_eq!(kc.audiences, ["kube", "kubectl"]);
        assert_eq!(
            kc.discovery_url.as_deref(),
            Some("https://kc.internal/realms/people/.well-known/openid-configuration")
        );
        assert_eq!(kc.rules.claim_rules.len(), 2);
        assert_eq!(kc.rules.extra.len(), 1);
        assert_eq!(kc.rules.user_rules.len(), 1);
        assert!(cfg.jwt[1].rules.groups.is_none());
    }
}

#[test]
fn an_unchanged_entry_keeps_its_fingerprint() {
    let a = parse(p(), &mapped("")).unwrap();
    let b = parse(p(), &format!("# a comment\n{}", mapped(""))).unwrap();
    let c = parse(
        p(),
        &mapped("    groups:\n      claim: groups\n      prefix: ''\n"),
    )
    .unwrap();
    assert_eq!(a.jwt[0].fingerprint, b.jwt[0].fingerprint);
    assert_ne!(a.jwt[0].fingerprint, c.jwt[0].fingerprint);
}

#[test]
fn file_level_problems() {
    refused(
        "apiVersion: v1\nkind: AuthenticationConfiguration\n",
        "apiVersion",
        "must be one of",
    );
    refused(
        "apiVersion: apiserver.config.k8s.io/v1\nkind: Config\n",
        "kind",
        "AuthenticationConfiguration",
    );
    refused(
        "apiVersion: apiserver.config.k8s.io/v1\nkind: AuthenticationConfiguration\nanonymous:\n  enabled: true\n",
        "anonymous",
        "not supported",
    );
    let many = (0..65)
        .map(|i| format!("- issuer:\n    url: https://i{i}.example.com\n    audiences: [a]\n  claimMappings:\n    username:\n      claim: sub\n      prefix: ''\n"))
        .collect::<String>();
    refused(&file(&many), "jwt", "at most 64");
    // Unknown fields are errors with a line, as a typo must not silently drop a rule.
    let errs = errors(&mapped("    usernam:\n      claim: x\n"));
    assert!(errs[0].starts_with("authn.yaml:"), "{errs:?}");
    assert!(errs[0].contains("usernam"), "{errs:?}");
}

#[test]
fn issuer_rules() {
    let with_issuer = |issuer: &str| {
        file(&format!(
            "- issuer:\n{issuer}  claimMappings:\n    username:\n      claim: sub\n      prefix: ''\n"
        ))
    };
    refused(
        &with_issuer("    audiences: [a]\n"),
        "jwt[0].issuer.url",
        "Required value",
    );
    refused(
        &with_issuer("    url: http://kc.example.com\n    audiences: [a]\n"),
        "jwt[0].issuer.url",
        "URL scheme must be https",
    );
    refused(
        &with_issuer("    url: https://u:p@kc.example.com\n    audiences: [a]\n"),
        "jwt[0].issuer.url",
        "must not contain a username or password",
    );
    refused(
        &with_issuer("    url: https://kc.example.com?x=1\n    audiences: [a]\n"),
        "jwt[0].issuer.url",
        "must not contain a query",
    );
    refused(
        &with_issuer("    url: https://kc.example.com#x\n    audiences: [a]\n"),
        "jwt[0].issuer.url",
        "must not contain a fragment",
    );
    refused(
        &with_issuer(
            "    url: https://kc.example.com\n    discoveryURL: https://kc.example.com/\n    audiences: [a]\n",
        ),
        "jwt[0].issuer.discoveryURL",
        "discoveryURL must be different from URL",
    );
    refused(
        &with_issuer("    url: https://kc.example.com\n"),
        "jwt[0].issuer.audiences",
        "at least one jwt[0].issuer.audiences is required",
    );
    refused(
        &with_issuer(
            "    url: https://kc.example.com\n    audiences: [a, '']\n    audienceMatchPolicy: MatchAny\n",
        ),
        "jwt[0].issuer.audiences[1]",
        "Required value",
    );
    refused(
        &with_issuer(
            "    url: https://kc.example.com\n    audiences: [a, a]\n    audienceMatchPolicy: MatchAny\n",
        ),
        "jwt[0].issuer.audiences[1]",
        "Duplicate value",
    );
    refused(
        &with_issuer("    url: https://kc.example.com\n    audiences: [a, b]\n"),
        "jwt[0].issuer.audienceMatchPolicy",
        "audienceMatchPolicy must be MatchAny for multiple audiences",
    );
    refused(
        &with_issuer(
            "    url: https://kc.example.com\n    audiences: [a]\n    audienceMatchPolicy: MatchAll\n",
        ),
        "jwt[0].issuer.audienceMatchPolicy",
        "audienceMatchPolicy must be empty or MatchAny for single audience",
    );
    refused(
        &with_issuer(
            "    url: https://kc.example.com\n    audiences: [a]\n    certificateAuthority: not a pem\n",
        ),
        "jwt[0].issuer.certificateAuthority",
        "no PEM certificate",
    );
    refused(
        &with_issuer(
            "    url: https://kc.example.com\n    audiences: [a]\n    egressSelectorType: cluster\n",
        ),
        "jwt[0].issuer.egressSelectorType",
        "not supported",
    );
    let twice = format!(
        "{}{}",
        ISSUER_ENTRY,
        ISSUER_ENTRY.replace("https://kc.internal/d", "https://kc.internal/e")
    );
    refused(&file(&twice), "jwt[1].issuer.url", "Duplicate value");
    let same_discovery = format!(
        "{}{}",
        ISSUER_ENTRY,
        ISSUER_ENTRY.replace("realms/people", "realms/robots")
    );
    refused(
        &file(&same_discovery),
        "jwt[1].issuer.discoveryURL",
        "Duplicate value",
    );
}

const ISSUER_ENTRY: &str = "- issuer:\n    url: https://kc.example.com/realms/people\n    discoveryURL: https://kc.internal/d\n    audiences: [kube]\n  claimMappings:\n    username:\n      claim: sub\n      prefix: ''\n";

#[test]
fn claim_validation_rule_rules() {
    let rules = |r: &str| {
        mapped("").replace(
            "  claimMappings:",
            &format!("  claimValidationRules:\n{r}  claimMappings:"),
        )
    };
    let f = "jwt[0].claimValidationRules[0]";
    refused(
        &rules("  - claim: hd\n    expression: 'true'\n"),
        f,
        "claim and expression can't both be set",
    );
    refused(&rules("  - message: hi\n"), f, "claim or expression is required");
    refused(
        &rules("  - claim: hd\n    message: hi\n"),
        &format!("{f}.message"),
        "may not be specified when claim is set",
    );
    refused(
        &rules("  - expression: 'true'\n    requiredValue: x\n"),
        &format!("{f}.requiredValue"),
        "may not be specified when expression is set",
    );
    refused(
        &rules("  - claim: hd\n    requiredValue: a\n  - claim: hd\n    requiredValue: b\n"),
        "jwt[0].claimValidationRules[1].claim",
        "Duplicate value",
    );
    refused(
        &rules("  - expression: claims.a\n  - expression: claims.a\n"),
        "jwt[0].claimValidationRules[1].expression",
        "Duplicate value",
    );
    refused(
        &rules("  - expression: 'claims.'\n"),
        &format!("{f}.expression"),
        "compilation failed",
    );
    refused(
        &rules("  - expression: user.username == ''\n"),
        &format!("{f}.expression"),
        "undeclared reference to 'user'",
    );
}

#[test]
fn claim_mapping_rules() {
    let mappings = |m: &str| file(&format!("{ISSUER}  claimMappings:\n{m}"));
    let f = "jwt[0].claimMappings";
    refused(
        &file(ISSUER),
        &format!("{f}.username"),
        "claim or expression is required",
    );
    refused(
        &mappings("    username:\n      claim: sub\n"),
        &format!("{f}.username.prefix"),
        "prefix is required when claim is set. It can be set to an empty string to disable prefixing",
    );
    refused(
        &mappings("    username:\n      claim: sub\n      expression: claims.sub\n      prefix: ''\n"),
        &format!("{f}.username"),
        "claim and expression can't both be set",
    );
    refused(
        &mappings("    username:\n      expression: claims.sub\n      prefix: x\n"),
        &format!("{f}.username.prefix"),
        "may not be specified when expression is set",
    );
    refused(
        &mappings("    username:\n      expression: claims.email\n"),
        &format!("{f}.username.expression"),
        "claims.email_verified must be used in claimMappings.username.expression",
    );
    refused(
        &mappings("    username:\n      claim: sub\n      prefix: ''\n    groups:\n      claim: groups\n"),
        &format!("{f}.groups.prefix"),
        "prefix is required when claim is set",
    );
    refused(
        &mappings(
            "    username:\n      claim: sub\n      prefix: ''\n    uid:\n      claim: sub\n      expression: claims.sub\n",
        ),
        &format!("{f}.uid"),
        "claim and expression can't both be set",
    );
    let extra = |x: &str| mapped(&format!("    extra:\n{x}"));
    refused(
        &extra("    - key: tenant\n      valueExpression: claims.t\n"),
        &format!("{f}.extra[0].key"),
        "domain-prefixed path",
    );
    refused(
        &extra("    - key: Example.com/Tenant\n      valueExpression: claims.t\n"),
        &format!("{f}.extra[0].key"),
        "must be lowercase",
    );
    refused(
        &extra("    - key: kubernetes.io/tenant\n      valueExpression: claims.t\n"),
        &format!("{f}.extra[0].key"),
        "k8s.io, kubernetes.io and their subdomains are reserved",
    );
    refused(
        &extra("    - key: x.k8s.io/tenant\n      valueExpression: claims.t\n"),
        &format!("{f}.extra[0].key"),
        "reserved for Kubernetes use",
    );
    refused(
        &extra(
            "    - key: example.com/t\n      valueExpression: claims.t\n    - key: example.com/t\n      valueExpression: claims.u\n",
        ),
        &format!("{f}.extra[1].key"),
        "Duplicate value",
    );
    refused(
        &extra("    - key: example.com/t\n"),
        &format!("{f}.extra[0].valueExpression"),
        "Required value",
    );
    // The email rule is met by email_verified anywhere kube-apiserver looks for it.
    for ok in [
        "    username:\n      expression: 'claims.email_verified ? claims.email : \"\"'\n",
        "    username:\n      expression: claims.email\n    extra:\n    - key: example.com/v\n      valueExpression: 'string(claims.email_verified)'\n",
    ] {
        assert!(parse(p(), &mappings(ok)).is_ok(), "{ok}");
    }
    let in_rules = mappings("    username:\n      expression: claims.email\n").replace(
        "  claimMappings:",
        "  claimValidationRules:\n  - expression: claims.email_verified\n  claimMappings:",
    );
    assert!(parse(p(), &in_rules).is_ok());
}

#[test]
fn user_validation_rule_rules() {
    let rules = |r: &str| format!("{}  userValidationRules:\n{r}", mapped(""));
    let f = "jwt[0].userValidationRules[0].expression";
    refused(&rules("  - message: hi\n"), f, "Required value");
    refused(
        &rules("  - expression: user.uid != ''\n  - expression: user.uid != ''\n"),
        "jwt[0].userValidationRules[1].expression",
        "Duplicate value",
    );
    refused(
        &rules("  - expression: claims.sub != ''\n"),
        f,
        "undeclared reference to 'claims'",
    );
}

#[test]
fn every_error_is_reported_with_its_line() {
    let text = file("- issuer:\n    url: http://a\n  claimMappings:\n    username:\n      claim: sub\n");
    let errs = parse(p(), &text).unwrap_err().0;
    let fields: Vec<_> = errs.iter().map(|e| (e.line, e.field.as_str())).collect();
    assert_eq!(
        fields,
        [
            (5, "jwt[0].issuer.url"),
            (5, "jwt[0].issuer.audiences"),
            (8, "jwt[0].claimMappings.username.prefix"),
        ]
    );
}

/// The mapped user for a token's claims under one entry's rules (kube's oidc_test cases).
fn user_of(mappings_and_rules: &str, claims: serde_json::Value) -> Result<crate::authn::User, String> {
    let cfg = parse(p(), &file(&format!("{ISSUER}{mappings_and_rules}"))).map_err(|e| e.to_string())?;
    let serde_json::Value::Object(claims) = claims else {
        unreachable!("claims are an object")
    };
    cfg.jwt[0].rules.user(&claims).map_err(|e| e.to_string())
}

#[test]
fn claims_map_to_users_as_kube_apiserver_maps_them() {
    let m = "  claimMappings:
    username:
      expression: 'claims.username + \":external-user\"'
    groups:
      expression: 'claims.roles.split(\",\")'
    uid:
      expression: claims.sub
    extra:
    - key: example.com/tenant
      valueExpression: claims.tenant
    - key: example.com/none
      valueExpression: 'has(claims.nope) ? claims.nope : null'
";
    let u = user_of(
        m,
        json!({"sub": "119", "username": "bob", "roles": "admin,dev", "tenant": "t1"}),
    )
    .unwrap();
    assert_eq!(u.name, "bob:external-user");
    assert_eq!(u.uid, "119");
    assert_eq!(u.groups, ["admin", "dev", "system:authenticated"]);
    assert_eq!(u.extra.get("example.com/tenant").unwrap(), &["t1"]);
    assert!(!u.extra.contains_key("example.com/none"));

    let claim = "  claimMappings:\n    username:\n      claim: email\n      prefix: ''\n    groups:\n      claim: groups\n      prefix: 'kc:'\n";
    let u = user_of(
        claim,
        json!({"email": "a@x", "email_verified": true, "groups": ["dev", "system:masters"]}),
    )
    .unwrap();
    assert_eq!(u.name, "a@x");
    // The proxy's own rule: no reserved group from a token, even with an empty prefix. With a
    // prefix the name is no longer reserved.
    assert_eq!(u.groups, ["kc:dev", "kc:system:masters", "system:authenticated"]);
    assert!(user_of(claim, json!({"email": "a@x", "email_verified": false})).is_err());
    assert!(
        user_of(claim, json!({"email": "a@x"})).is_ok(),
        "a missing email_verified is accepted"
    );
    assert!(
        user_of(claim, json!({"sub": "a"})).is_err(),
        "the username claim is required"
    );
    let no_prefix = "  claimMappings:\n    username:\n      claim: sub\n      prefix: ''\n    groups:\n      claim: groups\n      prefix: ''\n";
    let u = user_of(no_prefix, json!({"sub": "a", "groups": "system:masters"})).unwrap();
    assert_eq!(u.groups, ["system:authenticated"]);
    assert!(user_of(no_prefix, json!({"sub": "system:admin"})).is_err());
    assert!(user_of(no_prefix, json!({"sub": "a", "groups": [1]})).is_err());
}

#[test]
fn claim_and_user_rules_refuse_tokens() {
    let m = "  claimValidationRules:
  - claim: hd
    requiredValue: example.com
  - expression: 'claims.exp - claims.nbf <= 86400'
    message: total token lifetime must not exceed 24 hours
  claimMappings:
    username:
      claim: sub
      prefix: ''
  userValidationRules:
  - expression: \"!user.username.startsWith('ci-')\"
    message: no CI users here
  - expression: 'user.groups.all(g, !g.startsWith(\"system:\"))'
";
    let ok = json!({"sub": "ann", "hd": "example.com", "exp": 1000, "nbf": 0});
    assert!(user_of(m, ok.clone()).is_ok());
    let mut wrong_hd = ok.clone();
    wrong_hd["hd"] = json!("evil.com");
    assert!(
        user_of(m, wrong_hd)
            .unwrap_err()
            .contains("required claim hd value does not match")
    );
    let mut no_hd = ok.clone();
    no_hd.as_object_mut().unwrap().remove("hd");
    assert!(
        user_of(m, no_hd)
            .unwrap_err()
            .contains("required claim hd not present")
    );
    let mut long = ok.clone();
    long["exp"] = json!(90000);
    assert!(
        user_of(m, long)
            .unwrap_err()
            .contains("total token lifetime must not exceed 24 hours")
    );
    let mut ci = ok.clone();
    ci["sub"] = json!("ci-bot");
    assert!(user_of(m, ci).unwrap_err().contains("no CI users here"));
    // The claim a rule reads is missing: an evaluation error refuses the token.
    let mut no_exp = ok;
    no_exp.as_object_mut().unwrap().remove("exp");
    assert!(user_of(m, no_exp).is_err());
    // A rule that is not a bool refuses too.
    let not_bool = "  claimValidationRules:\n  - expression: claims.sub\n  claimMappings:\n    username:\n      claim: sub\n      prefix: ''\n";
    assert!(
        user_of(not_bool, json!({"sub": "a"}))
            .unwrap_err()
            .contains("not a bool")
    );
    // Mappings of the wrong type refuse the token.
    let bad_name = "  claimMappings:\n    username:\n      expression: claims.n\n";
    assert!(
        user_of(bad_name, json!({"n": 5}))
            .unwrap_err()
            .contains("must return a string")
    );
    assert!(user_of(bad_name, json!({"n": ""})).unwrap_err().contains("empty"));
    // A user rule sees kube's user: groups as mapped, without system:authenticated, and the
    // token is refused (as kube-apiserver would) rather than silently trimmed.
    let system_groups = "  claimMappings:\n    username:\n      claim: sub\n      prefix: ''\n    groups:\n      claim: groups\n      prefix: ''\n  userValidationRules:\n  - expression: 'user.groups.all(g, !g.startsWith(\"system:\"))'\n";
    assert!(user_of(system_groups, json!({"sub": "a", "groups": ["dev"]})).is_ok());
    assert!(user_of(system_groups, json!({"sub": "a", "groups": ["system:masters"]})).is_err());
}
