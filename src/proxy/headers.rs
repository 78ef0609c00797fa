//! Header rules for both directions. Everything that decides what reaches an API server lives
//! here, in one place: credentials and impersonation from the client never pass, hop-by-hop
//! headers are dropped (RFC 9110 §7.6.1), and the proxy's own headers are added only after the
//! client's have been cleaned, so a `Connection:` header can never name them away.

use std::{
    borrow::Cow,
    net::{IpAddr, SocketAddr},
};

use base64::Engine;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Version, header};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

/// kube-apiserver accepts a bearer token inside a WebSocket subprotocol (browsers cannot set
/// headers); it is a credential like `Authorization` and is handled the same way.
const WS_BEARER_PREFIX: &str = "base64url.bearer.authorization.k8s.io.";

/// The hop-by-hop headers (RFC 9110 §7.6.1), as text: the one list [`HOP_BY_HOP`] and the
/// first-byte table [`CLEANED_FIRST`] are both made from.
const HOP_BY_HOP_NAMES: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
];

/// As names, not text: comparing and removing by a `HeaderName` neither parses nor lowercases.
/// A static, not a const: a const array of names is built and dropped again at every use.
static HOP_BY_HOP: [HeaderName; 8] = [
    HeaderName::from_static(HOP_BY_HOP_NAMES[0]),
    HeaderName::from_static(HOP_BY_HOP_NAMES[1]),
    HeaderName::from_static(HOP_BY_HOP_NAMES[2]),
    HeaderName::from_static(HOP_BY_HOP_NAMES[3]),
    HeaderName::from_static(HOP_BY_HOP_NAMES[4]),
    HeaderName::from_static(HOP_BY_HOP_NAMES[5]),
    HeaderName::from_static(HOP_BY_HOP_NAMES[6]),
    HeaderName::from_static(HOP_BY_HOP_NAMES[7]),
];

/// The prefix of the impersonation headers (`Impersonate-User`, `Impersonate-Extra-*`, ...).
const IMPERSONATE_PREFIX: &str = "impersonate-";

/// kube-apiserver's request ID header, sent upstream and answered.
pub const AUDIT_ID: HeaderName = HeaderName::from_static("audit-id");
pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// True for an HTTP/1.1 request asking to switch protocols (SPDY or WebSocket).
pub fn wants_upgrade(version: Version, headers: &HeaderMap) -> bool {
    version == Version::HTTP_11 && headers.contains_key(header::UPGRADE) && connection_has(headers, "upgrade")
}

/// Methods kube-apiserver serves. Anything else (CONNECT, TRACE, made-up methods) is refused
/// before authorization: RBAC would see an empty verb, which only `*` matches.
pub fn method_allowed(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET
            | Method::HEAD
            | Method::POST
            | Method::PUT
            | Method::PATCH
            | Method::DELETE
            | Method::OPTIONS
    )
}

/// The upgrade protocols kubectl and client-go use: WebSocket (exec, attach, port-forward since
/// 1.30, and watches from browsers) and SPDY/3.1. Anything else (`h2c`, a made-up token) would
/// hand the client a raw connection to something the proxy does not understand.
const UPGRADE_TOKENS: [&str; 2] = ["websocket", "spdy/3.1"];

/// True when every protocol an upgrade request offers is one the proxy forwards.
pub fn upgrade_tokens_allowed(headers: &HeaderMap) -> bool {
    let mut any = false;
    for v in headers.get_all(header::UPGRADE) {
        let Ok(v) = v.to_str() else { return false };
        for token in v.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            any = true;
            if !UPGRADE_TOKENS.iter().any(|ok| token.eq_ignore_ascii_case(ok)) {
                return false;
            }
        }
    }
    any
}

/// Headers that an API server (or an authenticating front proxy before it) reads as the
/// requester's identity, beyond `Authorization` and `Impersonate-*`: kube-apiserver's
/// request-header authenticator trusts `X-Remote-User`, `X-Remote-Group`, `X-Remote-Uid` and
/// `X-Remote-Extra-*` from a client certificate of its front-proxy CA, which may be exactly the
/// credential the proxy holds. They never pass, whoever sends them.
#[derive(Debug, Clone)]
pub struct IdentityHeaders {
    /// Lowercase header names removed outright.
    names: Vec<HeaderName>,
    /// Lowercase prefixes: every header starting with one is removed.
    prefixes: Vec<String>,
    /// The first bytes of the names and prefixes: every header of every request is looked at,
    /// and most are told apart by their first byte alone.
    first: [bool; 256],
}

impl Default for IdentityHeaders {
    fn default() -> Self {
        IdentityHeaders::of(
            ["x-remote-user", "x-remote-group", "x-remote-uid"]
                .into_iter()
                .map(HeaderName::from_static)
                .collect(),
            vec!["x-remote-extra-".into()],
        )
    }
}

impl IdentityHeaders {
    /// The defaults plus the names and prefixes configured for the clusters' request-header
    /// authenticators (kube-apiserver's `--requestheader-*-headers` and
    /// `--requestheader-extra-headers-prefix`).
    pub fn with(names: &[String], prefixes: &[String]) -> Result<Self, String> {
        let IdentityHeaders {
            names: mut all_names,
            prefixes: mut all_prefixes,
            ..
        } = Self::default();
        for n in names.iter().map(|n| n.trim()).filter(|n| !n.is_empty()) {
            let name = HeaderName::from_bytes(n.to_ascii_lowercase().as_bytes())
                .map_err(|_| format!("invalid header name {n:?}"))?;
            if !all_names.contains(&name) {
                all_names.push(name);
            }
        }
        for p in prefixes.iter().map(|p| p.trim()).filter(|p| !p.is_empty()) {
            HeaderName::from_bytes(p.to_ascii_lowercase().as_bytes())
                .map_err(|_| format!("invalid header prefix {p:?}"))?;
            let p = p.to_ascii_lowercase();
            if !all_prefixes.contains(&p) {
                all_prefixes.push(p);
            }
        }
        Ok(Self::of(all_names, all_prefixes))
    }

    fn of(names: Vec<HeaderName>, prefixes: Vec<String>) -> Self {
        let mut first = [false; 256];
        let texts = names
            .iter()
            .map(HeaderName::as_str)
            .chain(prefixes.iter().map(String::as_str));
        for b in texts.filter_map(|t| t.as_bytes().first()) {
            first[usize::from(*b)] = true;
        }
        IdentityHeaders {
            names,
            prefixes,
            first,
        }
    }

    fn matches(&self, name: &HeaderName) -> bool {
        self.first[first_byte(name)]
            && (self.names.contains(name)
                || self
                    .prefixes
                    .iter()
                    .any(|p| name.as_str().starts_with(p.as_str())))
    }

    /// Every name and prefix (`X-Remote-Extra-*`), for the start-up log.
    pub fn describe(&self) -> Vec<String> {
        let mut all: Vec<String> = self.names.iter().map(|n| n.as_str().to_string()).collect();
        all.extend(self.prefixes.iter().map(|p| format!("{p}*")));
        all
    }
}

fn connection_has(headers: &HeaderMap, token: &str) -> bool {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Visible ASCII only (no space, tab or control byte). It runs over every token of every request:
/// a fold with no early exit becomes a vector loop, a tenth of the instructions of `all` (or of
/// `to_str` and then a search for a space, each a walk of its own).
fn visible_ascii(token: &[u8]) -> bool {
    token
        .iter()
        .fold(0u8, |bad, &b| bad | u8::from(b.wrapping_sub(0x21) > 0x7e - 0x21))
        == 0
}

/// The bearer token of a request: `Authorization: Bearer <t>` (scheme case-insensitive), or the
/// WebSocket bearer subprotocol. Always text (visible ASCII, or the subprotocol's UTF-8), given
/// as bytes: a connection's repeated token is matched as bytes, and read as `str` only when it
/// has to be verified.
pub fn bearer_token(headers: &HeaderMap) -> Option<Cow<'_, [u8]>> {
    if let Some(v) = headers.get(header::AUTHORIZATION) {
        let v = v.as_bytes().trim_ascii();
        let at = v.iter().position(|&b| b == b' ')?;
        let (scheme, token) = (&v[..at], v[at..].trim_ascii());
        if !scheme.eq_ignore_ascii_case(b"bearer") || token.is_empty() || !visible_ascii(token) {
            return None;
        }
        return Some(Cow::Borrowed(token));
    }
    for v in headers.get_all(header::SEC_WEBSOCKET_PROTOCOL).iter() {
        let Ok(v) = v.to_str() else { continue };
        for proto in v.split(',').map(str::trim) {
            if let Some(enc) = proto.strip_prefix(WS_BEARER_PREFIX) {
                let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(enc.trim_end_matches('='))
                    .ok()?;
                let token = String::from_utf8(raw).ok()?;
                return (!token.is_empty()).then_some(Cow::Owned(token.into_bytes()));
            }
        }
    }
    None
}

/// The first bytes of the names cleaning looks for besides the identity headers: the hop-by-hop
/// names, `Upgrade`, `Sec-WebSocket-Protocol` and `Impersonate-*`. Every header of every message
/// is looked at; one whose name starts with none of these is passed over after one look-up,
/// where comparing it with each name costs about fifty instructions.
const CLEANED_FIRST: [bool; 256] = first_bytes(
    &HOP_BY_HOP_NAMES,
    &["upgrade", "sec-websocket-protocol", IMPERSONATE_PREFIX],
);

const fn first_bytes(names: &[&str], more: &[&str]) -> [bool; 256] {
    let mut table = [false; 256];
    let mut i = 0;
    while i < names.len() + more.len() {
        let name = if i < names.len() {
            names[i]
        } else {
            more[i - names.len()]
        };
        table[name.as_bytes()[0] as usize] = true;
        i += 1;
    }
    table
}

/// A header name's first byte (names are lowercase and never empty).
fn first_byte(name: &HeaderName) -> usize {
    name.as_str().as_bytes().first().map_or(0, |b| usize::from(*b))
}

/// `Impersonate-*`: a client's are read by [`super::impersonation`] and never sent on as they
/// came; the proxy writes its own after cleaning.
fn is_impersonation(name: &HeaderName) -> bool {
    name.as_str().starts_with(IMPERSONATE_PREFIX)
}

/// Cleans a client request's headers before it goes upstream. `upgrade` keeps `Connection:
/// Upgrade` and `Upgrade`, which the API server needs to switch protocols.
pub fn clean_request(headers: &mut HeaderMap, upgrade: bool, identity: &IdentityHeaders) {
    // One walk over the names finds whether any header that needs more than a removal by name
    // is there; most requests carry none, and then the lookups and collections below (a
    // thousand instructions) are all no-ops.
    let rare = headers.keys().any(|k| {
        (CLEANED_FIRST[first_byte(k)]
            && (k == header::UPGRADE
                || k == header::SEC_WEBSOCKET_PROTOCOL
                || HOP_BY_HOP.contains(k)
                || is_impersonation(k)))
            || identity.matches(k)
    });
    headers.remove(header::AUTHORIZATION);
    headers.remove(header::HOST);
    if !rare && !upgrade {
        return;
    }
    remove_connection_named(headers);
    remove_hop_by_hop(headers);
    if upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    } else {
        headers.remove(header::UPGRADE);
    }
    // Collected first (an empty Vec does not allocate): a HeaderMap cannot be edited while its
    // keys are walked.
    let identity: Vec<HeaderName> = headers
        .keys()
        .filter(|k| is_impersonation(k) || identity.matches(k))
        .cloned()
        .collect();
    for name in identity {
        headers.remove(name);
    }
    strip_ws_bearer(headers);
}

/// Cleans an upstream response's headers before it goes back to the client.
pub fn clean_response(headers: &mut HeaderMap, upgrade: bool) {
    // As for a request: most answers carry none of these, found in one walk.
    let rare =
        |k: &HeaderName| CLEANED_FIRST[first_byte(k)] && (k == header::UPGRADE || HOP_BY_HOP.contains(k));
    if !upgrade && !headers.keys().any(rare) {
        return;
    }
    remove_connection_named(headers);
    remove_hop_by_hop(headers);
    if upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    } else {
        headers.remove(header::UPGRADE);
    }
}

/// Removes the hop-by-hop headers. Most messages carry none, so one walk over the names comes
/// first: removing by a name given as text parses and hashes it, eight times per message.
fn remove_hop_by_hop(headers: &mut HeaderMap) {
    if headers.keys().any(|k| HOP_BY_HOP.contains(k)) {
        for name in &HOP_BY_HOP {
            headers.remove(name);
        }
    }
}

/// Removes the headers a `Connection` header lists, except ones that must survive an upgrade.
fn remove_connection_named(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .filter(|n| n != header::UPGRADE)
        .collect();
    for name in named {
        headers.remove(name);
    }
}

fn strip_ws_bearer(headers: &mut HeaderMap) {
    let values: Vec<HeaderValue> = headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .cloned()
        .collect();
    if values.is_empty() {
        return;
    }
    let kept: Vec<String> = values
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|p| !p.is_empty() && !p.starts_with(WS_BEARER_PREFIX))
        .map(str::to_string)
        .collect();
    headers.remove(header::SEC_WEBSOCKET_PROTOCOL);
    if !kept.is_empty()
        && let Ok(v) = HeaderValue::from_str(&kept.join(", "))
    {
        headers.insert(header::SEC_WEBSOCKET_PROTOCOL, v);
    }
}

/// Peers whose `X-Forwarded-For` is believed (`--trusted-proxies`).
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<(IpAddr, u8)>);

impl TrustedProxies {
    /// Parses IPs and CIDRs (`10.0.0.0/8`, `::1`).
    pub fn parse(items: &[String]) -> Result<Self, String> {
        let mut nets = Vec::new();
        for item in items.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
            let (ip, bits) = match item.split_once('/') {
                Some((ip, bits)) => (ip, Some(bits)),
                None => (item, None),
            };
            let ip: IpAddr = ip
                .parse()
                .map_err(|_| format!("invalid trusted proxy {item:?}"))?;
            let max = if ip.is_ipv4() { 32 } else { 128 };
            let bits = match bits {
                Some(b) => b
                    .parse::<u8>()
                    .ok()
                    .filter(|b| *b <= max)
                    .ok_or(format!("invalid prefix in {item:?}"))?,
                None => max,
            };
            nets.push((ip, bits));
        }
        Ok(TrustedProxies(nets))
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.0.iter().any(|(net, bits)| match (canonical(*net), ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => prefix_eq(&n.octets(), &a.octets(), *bits),
            (IpAddr::V6(n), IpAddr::V6(a)) => prefix_eq(&n.octets(), &a.octets(), *bits),
            _ => false,
        })
    }
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

fn prefix_eq(a: &[u8], b: &[u8], bits: u8) -> bool {
    let full = (bits / 8) as usize;
    if a[..full] != b[..full] {
        return false;
    }
    let rem = bits % 8;
    rem == 0 || (a[full] ^ b[full]) >> (8 - rem) == 0
}

/// A client connection's peer, its address written as text once: the access line and
/// `X-Forwarded-For` write it for every request on the connection.
#[derive(Debug)]
pub struct Peer {
    pub addr: SocketAddr,
    /// The address as its `Display` writes it: the access line's `src`.
    pub text: String,
    /// The peer alone as an `X-Forwarded-For` value (an IPv4-mapped address as IPv4).
    forwarded: Option<HeaderValue>,
}

impl Peer {
    pub fn new(addr: SocketAddr) -> Peer {
        let mut text = String::new();
        crate::text::push_ip(&mut text, addr.ip());
        let mut forwarded = String::new();
        crate::text::push_ip(&mut forwarded, canonical(addr.ip()));
        Peer {
            addr,
            text,
            forwarded: HeaderValue::from_str(&forwarded).ok(),
        }
    }
}

/// The `X-Forwarded-For` to send upstream: the client's chain when the peer is a trusted proxy,
/// followed by the peer itself.
pub fn forwarded_for(
    incoming: Option<&HeaderValue>,
    peer: &Peer,
    trusted: &TrustedProxies,
) -> Option<HeaderValue> {
    let ip = canonical(peer.addr.ip());
    let chain = incoming
        .and_then(|v| v.to_str().ok())
        .filter(|_| trusted.contains(ip))
        .map(str::trim)
        .filter(|c| !c.is_empty());
    let Some(chain) = chain else {
        return peer.forwarded.clone();
    };
    let mut value = String::with_capacity(chain.len() + 48);
    value.push_str(chain);
    value.push_str(", ");
    crate::text::push_ip(&mut value, ip);
    HeaderValue::from_str(&value).ok()
}

/// Impersonate-User/-Group/-Uid/-Extra-* for the authenticated user (`--impersonate-upstream`),
/// plus the configured extra user info and, when asked, the client IP.
pub fn add_impersonation(
    h: &mut HeaderMap,
    user: &crate::authn::User,
    extra_user_headers: &[(String, String)],
    client_ip: Option<IpAddr>,
) -> Result<(), &'static str> {
    const BAD: &str = "user information cannot be sent as headers";
    let value = |s: &str| HeaderValue::from_str(s).map_err(|_| BAD);
    h.insert(HeaderName::from_static("impersonate-user"), value(&user.name)?);
    for g in &user.groups {
        h.append(HeaderName::from_static("impersonate-group"), value(g)?);
    }
    if !user.uid.is_empty() {
        h.insert(HeaderName::from_static("impersonate-uid"), value(&user.uid)?);
    }
    let mut extras: Vec<(&str, String)> = user
        .extra
        .iter()
        .flat_map(|(k, vs)| vs.iter().map(move |v| (k.as_str(), v.clone())))
        .collect();
    extras.extend(extra_user_headers.iter().map(|(k, v)| (k.as_str(), v.clone())));
    if let Some(ip) = client_ip {
        extras.push(("Remote-Client-IP", ip.to_string()));
    }
    for (k, v) in extras {
        let name = format!("impersonate-extra-{}", utf8_percent_encode(k, EXTRA_KEY));
        let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| BAD)?;
        h.append(name, value(&v)?);
    }
    Ok(())
}

/// Extra keys that name the person behind a `kubectl --as` when the proxy impersonates the
/// target upstream: the cluster's audit log shows both.
pub const ORIGINAL_USERNAME: &str = "authentication.kubernetes.io/original-username";
pub const ORIGINAL_UID: &str = "authentication.kubernetes.io/original-uid";
pub const ORIGINAL_GROUPS: &str = "authentication.kubernetes.io/original-groups";

/// The extras (key, value) that carry `original` upstream.
pub fn original_user_extras(original: &crate::authn::User) -> Vec<(String, String)> {
    let mut out = vec![(ORIGINAL_USERNAME.to_string(), original.name.clone())];
    if !original.uid.is_empty() {
        out.push((ORIGINAL_UID.to_string(), original.uid.clone()));
    }
    out.extend(
        original
            .token_groups()
            .map(|g| (ORIGINAL_GROUPS.to_string(), g.to_string())),
    );
    out
}

/// Impersonate-Extra-* keys are percent-encoded as kube-apiserver decodes them.
const EXTRA_KEY: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    fn token(t: &str) -> Option<Cow<'_, [u8]>> {
        Some(Cow::Borrowed(t.as_bytes()))
    }

    #[test]
    fn bearer_tokens() {
        assert_eq!(
            bearer_token(&map(&[("authorization", "Bearer abc")])),
            token("abc")
        );
        assert_eq!(
            bearer_token(&map(&[("authorization", "bearer  abc ")])),
            token("abc")
        );
        assert_eq!(bearer_token(&map(&[("authorization", "Basic abc")])), None);
        assert_eq!(bearer_token(&map(&[("authorization", "Bearer ")])), None);
        assert_eq!(bearer_token(&map(&[("authorization", "Bearer a b")])), None);
        assert_eq!(bearer_token(&map(&[("authorization", "Bearer a\tb")])), None);
        assert_eq!(bearer_token(&map(&[("authorization", "Bearer\tab")])), None);
        assert_eq!(
            bearer_token(&map(&[("authorization", "BEARER a.b-c_d~e+f/g=")])),
            token("a.b-c_d~e+f/g=")
        );
        assert_eq!(bearer_token(&map(&[])), None);
        let enc = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode("tok.en");
        let ws = format!("v5.channel.k8s.io, {WS_BEARER_PREFIX}{enc}");
        assert_eq!(
            bearer_token(&map(&[("sec-websocket-protocol", &ws)])),
            token("tok.en")
        );
    }

    #[test]
    fn credentials_and_impersonation_never_pass() {
        let enc = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode("secret");
        let mut h = map(&[
            ("authorization", "Bearer secret"),
            ("impersonate-user", "admin"),
            ("Impersonate-Group", "system:masters"),
            ("impersonate-extra-scopes", "x"),
            ("impersonate-uid", "1"),
            ("host", "proxy:8443"),
            (
                "sec-websocket-protocol",
                &format!("v5.channel.k8s.io, {WS_BEARER_PREFIX}{enc}"),
            ),
            ("accept", "application/json"),
        ]);
        assert!(h.keys().any(is_impersonation));
        clean_request(&mut h, false, &IdentityHeaders::default());
        assert!(!h.keys().any(is_impersonation));
        assert!(h.get("authorization").is_none());
        assert!(h.get("host").is_none());
        assert_eq!(h.get("sec-websocket-protocol").unwrap(), "v5.channel.k8s.io");
        assert_eq!(h.get("accept").unwrap(), "application/json");
    }

    #[test]
    fn front_proxy_identity_headers_never_pass() {
        let mut h = map(&[
            ("X-Remote-User", "admin"),
            ("x-remote-group", "system:masters"),
            ("X-Remote-Uid", "0"),
            ("X-Remote-Extra-Scopes", "all"),
            ("x-remote-extra-", "x"),
            ("X-Auth-User", "admin"),
            ("X-Auth-Extra-Team", "ops"),
            ("x-remote-other", "kept"),
            ("accept", "application/json"),
        ]);
        let rules = IdentityHeaders::with(&["X-Auth-User".into()], &["X-Auth-Extra-".into()]).unwrap();
        clean_request(&mut h, false, &rules);
        let mut names: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        names.sort();
        assert_eq!(names, ["accept", "x-remote-other"]);
        // The defaults alone still strip X-Remote-*; a configured name never replaces them.
        let mut h = map(&[("x-remote-user", "a"), ("x-auth-user", "b")]);
        clean_request(&mut h, false, &IdentityHeaders::default());
        assert_eq!(h.keys().map(|k| k.as_str()).collect::<Vec<_>>(), ["x-auth-user"]);
        assert!(IdentityHeaders::with(&["bad header".into()], &[]).is_err());
        assert_eq!(
            IdentityHeaders::default().describe(),
            [
                "x-remote-user",
                "x-remote-group",
                "x-remote-uid",
                "x-remote-extra-*"
            ]
        );
    }

    #[test]
    fn methods() {
        assert!(method_allowed(&Method::PATCH));
        assert!(!method_allowed(&Method::CONNECT));
        assert!(!method_allowed(&Method::TRACE));
        assert!(!method_allowed(&Method::from_bytes(b"PROPFIND").unwrap()));
    }

    #[test]
    fn only_websocket_and_spdy_upgrades() {
        for ok in [
            "websocket",
            "WebSocket",
            "SPDY/3.1",
            "spdy/3.1",
            "websocket, SPDY/3.1",
        ] {
            assert!(upgrade_tokens_allowed(&map(&[("upgrade", ok)])), "{ok}");
        }
        for bad in ["h2c", "websocket, h2c", "SPDY/3", "TLS/1.2", "", ","] {
            assert!(!upgrade_tokens_allowed(&map(&[("upgrade", bad)])), "{bad:?}");
        }
        assert!(!upgrade_tokens_allowed(&map(&[
            ("upgrade", "websocket"),
            ("upgrade", "h2c")
        ])));
        assert!(!upgrade_tokens_allowed(&map(&[])));
    }

    #[test]
    fn hop_by_hop_and_connection_named_headers() {
        let mut h = map(&[
            ("connection", "keep-alive, x-secret, Authorization"),
            ("x-secret", "1"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("transfer-encoding", "chunked"),
            ("proxy-authorization", "Basic x"),
            ("upgrade", "websocket"),
            ("x-keep", "1"),
        ]);
        clean_request(&mut h, false, &IdentityHeaders::default());
        let names: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["x-keep"]);
    }

    #[test]
    fn each_hop_by_hop_header_alone_is_removed_both_ways() {
        // The removal only runs when a walk over the names finds one: each name must be found
        // on its own, with no Connection header to trigger it (Proxy-Authorization above all,
        // a credential that must never reach the cluster). Listed as text here, as RFC 9110 and
        // the Go proxy name them, so a wrong constant above cannot hide itself.
        for name in [
            "Connection",
            "Keep-Alive",
            "Proxy-Connection",
            "Proxy-Authenticate",
            "Proxy-Authorization",
            "TE",
            "Trailer",
            "Transfer-Encoding",
        ] {
            let mut req = map(&[(name, "x"), ("x-keep", "1")]);
            clean_request(&mut req, false, &IdentityHeaders::default());
            assert_eq!(
                req.keys().map(|k| k.as_str()).collect::<Vec<_>>(),
                ["x-keep"],
                "{name}"
            );
            let mut resp = map(&[(name, "x"), ("x-keep", "1")]);
            clean_response(&mut resp, false);
            assert_eq!(
                resp.keys().map(|k| k.as_str()).collect::<Vec<_>>(),
                ["x-keep"],
                "{name}"
            );
        }
    }

    #[test]
    fn each_header_that_needs_cleaning_is_found_alone() {
        // Requests are cleaned in full only when a walk over the names finds something to
        // clean: each kind must be found on its own, beside ordinary headers only.
        let enc = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode("secret");
        let ws = format!("{WS_BEARER_PREFIX}{enc}");
        let rules = IdentityHeaders::with(&["X-Auth-User".into()], &["X-Auth-Extra-".into()]).unwrap();
        for (name, value) in [
            ("Impersonate-User", "admin"),
            ("impersonate-extra-scopes", "x"),
            ("X-Remote-User", "admin"),
            ("X-Remote-Extra-Team", "ops"),
            ("X-Auth-User", "admin"),
            ("X-Auth-Extra-Team", "ops"),
            ("Upgrade", "websocket"),
            ("Sec-WebSocket-Protocol", ws.as_str()),
        ] {
            let mut req = map(&[
                (name, value),
                ("accept", "*/*"),
                ("authorization", "Bearer t"),
                ("host", "p"),
            ]);
            clean_request(&mut req, false, &rules);
            assert_eq!(
                req.keys().map(|k| k.as_str()).collect::<Vec<_>>(),
                ["accept"],
                "{name}"
            );
        }
        let mut resp = map(&[("upgrade", "websocket"), ("x-keep", "1")]);
        clean_response(&mut resp, false);
        assert_eq!(resp.keys().map(|k| k.as_str()).collect::<Vec<_>>(), ["x-keep"]);
        // Nothing to clean: only the credentials and Host go, every other header stays.
        let mut req = map(&[
            ("host", "proxy:8443"),
            ("user-agent", "kubectl"),
            ("authorization", "Bearer t"),
            ("accept", "application/json"),
            ("x-custom", "1"),
        ]);
        clean_request(&mut req, false, &rules);
        let mut names: Vec<&str> = req.keys().map(|k| k.as_str()).collect();
        names.sort();
        assert_eq!(names, ["accept", "user-agent", "x-custom"]);
    }

    #[test]
    fn upgrades_keep_their_headers() {
        let mut h = map(&[
            ("connection", "Upgrade"),
            ("upgrade", "SPDY/3.1"),
            ("x-stream-protocol-version", "v4"),
        ]);
        assert!(wants_upgrade(Version::HTTP_11, &h));
        assert!(!wants_upgrade(Version::HTTP_2, &h));
        clean_request(&mut h, true, &IdentityHeaders::default());
        assert_eq!(h.get("connection").unwrap(), "Upgrade");
        assert_eq!(h.get("upgrade").unwrap(), "SPDY/3.1");
        assert_eq!(h.get("x-stream-protocol-version").unwrap(), "v4");
        assert!(!wants_upgrade(
            Version::HTTP_11,
            &map(&[("upgrade", "websocket")])
        ));
        assert!(wants_upgrade(
            Version::HTTP_11,
            &map(&[("connection", "keep-alive, upgrade"), ("upgrade", "websocket")])
        ));
    }

    #[test]
    fn impersonation_headers_for_the_user() {
        let user = crate::authn::User {
            name: "ann".into(),
            uid: "u-1".into(),
            groups: vec!["ops".into(), "system:authenticated".into()],
            extra: [("scopes/v1".to_string(), vec!["a".to_string()])]
                .into_iter()
                .collect(),
        };
        let mut h = HeaderMap::new();
        add_impersonation(
            &mut h,
            &user,
            &[("team".into(), "blue".into())],
            Some("::1".parse().unwrap()),
        )
        .unwrap();
        assert_eq!(h.get("impersonate-user").unwrap(), "ann");
        assert_eq!(h.get_all("impersonate-group").iter().count(), 2);
        assert_eq!(h.get("impersonate-uid").unwrap(), "u-1");
        assert_eq!(h.get("impersonate-extra-scopes%2fv1").unwrap(), "a");
        assert_eq!(h.get("impersonate-extra-team").unwrap(), "blue");
        assert_eq!(h.get("impersonate-extra-remote-client-ip").unwrap(), "::1");
        let bad = crate::authn::User {
            name: "a\u{7f}".into(),
            ..Default::default()
        };
        assert!(add_impersonation(&mut HeaderMap::new(), &bad, &[], None).is_err());
    }

    #[test]
    fn forwarded_for_trusts_only_configured_peers() {
        let trusted = TrustedProxies::parse(&["10.0.0.0/8".into(), "::1".into()]).unwrap();
        let xff = HeaderValue::from_static("203.0.113.7");
        let peer = |ip: &str| Peer::new(SocketAddr::new(ip.parse().unwrap(), 40000));
        let from_lb = forwarded_for(Some(&xff), &peer("10.1.2.3"), &trusted).unwrap();
        assert_eq!(from_lb, "203.0.113.7, 10.1.2.3");
        let spoofed = forwarded_for(Some(&xff), &peer("192.0.2.1"), &trusted).unwrap();
        assert_eq!(spoofed, "192.0.2.1");
        let v6 = forwarded_for(Some(&xff), &peer("::1"), &trusted).unwrap();
        assert_eq!(v6, "203.0.113.7, ::1");
        // A trusted peer with nothing (or only spaces) in its chain, and no chain at all.
        let blank = HeaderValue::from_static("  ");
        assert_eq!(
            forwarded_for(Some(&blank), &peer("10.1.2.3"), &trusted).unwrap(),
            "10.1.2.3"
        );
        assert_eq!(
            forwarded_for(None, &peer("10.1.2.3"), &trusted).unwrap(),
            "10.1.2.3"
        );
        // An IPv4-mapped peer is written as IPv4 on its own and after a chain; the access line
        // keeps the address as the socket gave it.
        let mapped = peer("::ffff:10.9.9.9");
        assert_eq!(forwarded_for(None, &mapped, &trusted).unwrap(), "10.9.9.9");
        assert_eq!(
            forwarded_for(Some(&xff), &mapped, &trusted).unwrap(),
            "203.0.113.7, 10.9.9.9"
        );
        assert_eq!(mapped.text, "::ffff:10.9.9.9");
        assert!(trusted.contains("::ffff:10.9.9.9".parse().unwrap()));
        assert!(!trusted.contains("11.0.0.1".parse().unwrap()));
        assert!(TrustedProxies::parse(&["10.0.0.0/33".into()]).is_err());
        assert!(TrustedProxies::parse(&["nope".into()]).is_err());
    }
}
