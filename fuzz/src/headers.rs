//! Header rules on any header block (`name: value` lines): whatever a client sends, the cleaned
//! request carries no credential, no `Impersonate-*`, no `Host` and no hop-by-hop header but
//! the `Connection: Upgrade` the proxy itself writes; a client's impersonation request is never
//! granted by an empty policy; `X-Forwarded-For` is only believed from a trusted peer.

use http::{HeaderMap, HeaderName, HeaderValue, Version, header};
use kube_oidc_proxy::{
    authn::User,
    authz::rbac::Snapshot,
    proxy::{
        headers::{self, IdentityHeaders, TrustedProxies},
        impersonation,
    },
};

pub fn run(data: &[u8]) {
    let mut h = HeaderMap::new();
    for line in data.split(|&b| b == b'\n') {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(&line[..colon]),
            HeaderValue::from_bytes(line[colon + 1..].trim_ascii()),
        ) else {
            continue;
        };
        h.append(name, value);
    }
    let _ = headers::bearer_token(&h);
    let upgrade = headers::wants_upgrade(Version::HTTP_11, &h) && headers::upgrade_tokens_allowed(&h);

    if let Ok(Some(asked)) = impersonation::requested(&h, &[("team".to_string(), "x".to_string())]) {
        assert!(!asked.checks().is_empty());
        let caller = User {
            name: "ann".into(),
            groups: vec!["system:authenticated".into()],
            ..User::default()
        };
        assert!(
            asked.denied(&caller, &Snapshot::empty()).is_some(),
            "an empty policy grants nothing"
        );
        let mut up = HeaderMap::new();
        let _ = headers::add_impersonation(&mut up, &asked.target(), &[], None);
    }

    let mut cleaned = h.clone();
    headers::clean_request(&mut cleaned, upgrade, &IdentityHeaders::default());
    for name in cleaned.keys() {
        let n = name.as_str();
        assert!(!n.starts_with("impersonate-"), "{n}");
        assert!(
            !matches!(
                n,
                "authorization"
                    | "host"
                    | "keep-alive"
                    | "proxy-connection"
                    | "proxy-authorization"
                    | "te"
                    | "trailer"
                    | "transfer-encoding"
            ),
            "{n}"
        );
    }
    if let Some(c) = cleaned.get(header::CONNECTION) {
        assert!(upgrade && c == "Upgrade", "{c:?}");
    }
    assert!(upgrade || !cleaned.contains_key(header::UPGRADE));
    // kube-apiserver takes a token from a subprotocol entry (comma-separated, trimmed) that
    // starts with the bearer prefix; no such entry may go upstream. (The prefix elsewhere in an
    // entry is no token to it: the fuzzer found one, from the client itself.)
    for v in cleaned.get_all(header::SEC_WEBSOCKET_PROTOCOL) {
        let v = String::from_utf8_lossy(v.as_bytes());
        assert!(
            v.split(',')
                .all(|p| !p.trim().starts_with("base64url.bearer.authorization.k8s.io.")),
            "{v}"
        );
    }

    let mut response = h.clone();
    headers::clean_response(&mut response, upgrade);

    let peer = headers::Peer::new(std::net::SocketAddr::new([192, 0, 2, 7].into(), 40000));
    let trusted = TrustedProxies::parse(&["10.0.0.0/8".into()]).expect("a CIDR");
    if let Some(xff) = headers::forwarded_for(h.get("x-forwarded-for"), &peer, &trusted) {
        assert_eq!(xff, "192.0.2.7", "an untrusted peer's chain is dropped");
    }
}
