//! The front half of verifying a compact JWS, with no I/O and no clock of its own: the header
//! checks, the signature against keys at hand, and the registered claims. `Authenticator`
//! feeds it fetched keys and the time; the fuzz targets feed it anything.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, Header};
use serde_json::{Map, Value};

use super::{AuthnError, LEEWAY_SECS, keys::KeySet};

/// A token whose header passed the checks, split for verification.
pub struct Compact<'a> {
    pub header: Header,
    /// `header.payload` exactly as sent: what the signature covers.
    pub message: &'a str,
    pub signature: Vec<u8>,
}

/// Decodes the header and refuses what kube-apiserver refuses before any key is looked at: a
/// malformed token, an algorithm outside `algorithms`, and every JWS extension.
pub fn parse<'a>(token: &'a str, algorithms: &[Algorithm]) -> Result<Compact<'a>, AuthnError> {
    let header = jsonwebtoken::decode_header(token).map_err(|_| AuthnError::Malformed)?;
    // No JWS extension is supported: a `crit` header must be refused (RFC 7515 4.1.11, as
    // go-jose in kube-apiserver does), and so must an unencoded payload (`b64: false`).
    if header.crit.is_some() || !matches!(header.extras.get::<bool>("b64"), Ok(None | Some(true))) {
        return Err(AuthnError::Invalid("unsupported JWS header extension".into()));
    }
    if !algorithms.contains(&header.alg) {
        return Err(AuthnError::Algorithm(format!("{:?}", header.alg)));
    }
    let (message, signature) = token.rsplit_once('.').ok_or(AuthnError::Malformed)?;
    let signature = URL_SAFE_NO_PAD
        .decode(signature)
        .map_err(|_| AuthnError::Malformed)?;
    Ok(Compact {
        header,
        message,
        signature,
    })
}

/// Checks the signature with the keys the header points at, then (and only then) parses the
/// payload.
pub fn verify(keys: &KeySet, jws: &Compact<'_>) -> Result<Map<String, Value>, AuthnError> {
    let alg = jws.header.alg;
    let mut candidates = keys.candidates(jws.header.kid.as_deref(), alg).peekable();
    if candidates.peek().is_none() {
        return Err(AuthnError::UnknownKey);
    }
    if !candidates.any(|k| k.verifies(alg, jws.message.as_bytes(), &jws.signature)) {
        return Err(AuthnError::Invalid("signature does not verify".into()));
    }
    jws.message
        .split_once('.')
        .and_then(|(_, payload)| URL_SAFE_NO_PAD.decode(payload).ok())
        .and_then(|json| serde_json::from_slice::<Map<String, Value>>(&json).ok())
        .ok_or(AuthnError::Malformed)
}

/// `exp`, `nbf`, `iss` and `aud` as kube-apiserver checks them: `exp`, `iss` and `aud` are
/// required, times are JSON numbers compared with [`LEEWAY_SECS`] of clock skew, `aud` is a
/// string or a list of strings that must hold the client ID.
/// `wanted`: the token's `aud` must name at least one (kube's `MatchAny`).
pub fn check_registered_claims<A: AsRef<str>>(
    c: &Map<String, Value>,
    issuer: &str,
    wanted: &[A],
    now: u64,
) -> Result<(), AuthnError> {
    let invalid = |why: &str| Err(AuthnError::Invalid(why.to_string()));
    let now = now as f64;
    let leeway = LEEWAY_SECS as f64;
    match c.get("exp").map(Value::as_f64) {
        None => return invalid("token has no exp claim"),
        Some(None) => return invalid("exp is not a number"),
        Some(Some(exp)) if exp < now - leeway => return invalid("token has expired"),
        Some(Some(_)) => {}
    }
    match c.get("nbf").map(Value::as_f64) {
        Some(None) => return invalid("nbf is not a number"),
        Some(Some(nbf)) if nbf > now + leeway => return invalid("token is not valid yet"),
        _ => {}
    }
    match c.get("iss") {
        Some(Value::String(iss)) if *iss == issuer => {}
        Some(Value::String(_)) => return invalid("token is from another issuer"),
        Some(_) => return invalid("iss is not a string"),
        None => return invalid("token has no iss claim"),
    }
    let audiences: Vec<&str> = match c.get("aud") {
        Some(Value::String(a)) => vec![a.as_str()],
        Some(Value::Array(list)) => {
            let strings: Vec<&str> = list.iter().filter_map(Value::as_str).collect();
            if strings.len() != list.len() {
                return invalid("aud holds something other than strings");
            }
            strings
        }
        Some(_) => return invalid("aud is not a string or a list"),
        None => return invalid("token has no aud claim"),
    };
    if !wanted.iter().any(|w| audiences.contains(&w.as_ref())) {
        return invalid("token is for another audience");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registered_claims_follow_kube_apiserver() {
        let at = 1_800_000_000;
        let now = at as f64;
        let good = serde_json::json!({
            "iss": "https://issuer.example", "aud": "kube", "exp": now + 60.0, "nbf": now - 1.0,
        });
        let with = |k: &str, v: Value| {
            let mut c = good.as_object().unwrap().clone();
            c.insert(k.into(), v);
            c
        };
        let without = |k: &str| {
            let mut c = good.as_object().unwrap().clone();
            c.remove(k);
            c
        };
        let accepted = [
            good.as_object().unwrap().clone(),
            without("nbf"),
            with("aud", serde_json::json!(["other", "kube"])),
            // Within the 30 s of allowed clock skew, either way; fractional times are numbers too.
            with("exp", serde_json::json!(now - 20.0)),
            with("nbf", serde_json::json!(now + 20.5)),
        ];
        for c in accepted {
            assert!(
                check_registered_claims(&c, "https://issuer.example", &["kube"], at).is_ok(),
                "{c:?}"
            );
        }
        let refused = [
            without("exp"),
            without("iss"),
            without("aud"),
            with("exp", serde_json::json!(now - 40.0)),
            with("exp", serde_json::json!("never")),
            with("nbf", serde_json::json!(now + 40.0)),
            with("nbf", serde_json::json!(null)),
            with("iss", serde_json::json!("https://issuer.example/")),
            with("iss", serde_json::json!(["https://issuer.example"])),
            with("aud", serde_json::json!("kube2")),
            with("aud", serde_json::json!(["kube", 1])),
            with("aud", serde_json::json!([])),
            with("aud", serde_json::json!({"kube": true})),
        ];
        for c in refused {
            assert!(
                check_registered_claims(&c, "https://issuer.example", &["kube"], at).is_err(),
                "{c:?}"
            );
        }
    }
}
