//! Writes whose effect depends on who asks (RBAC escalation, create through PUT or apply,
//! signers, admission parameters: see [`crate::authz::requester`]) are tried first as a dry run
//! with the proxy's credentials, and the object kube-apiserver says they would produce is
//! checked for the real user. Only then is the same request sent for real.
//!
//! The dry run sees everything kube-apiserver would do to the object (defaulting, mutating
//! admission, the patch applied to the current object), in whatever encoding the client used,
//! so the proxy never re-implements patch semantics. The window between the dry run and the
//! write is the one race: a concurrent writer of the same object can change what a patch or
//! apply produces in between (the README states it; `--impersonate-upstream` has none).

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, StatusCode, Uri, header, request::Parts};
use http_body_util::{BodyExt, Either, Full, Limited};
use hyper::body::Incoming;

use crate::cluster::{Cluster, UpstreamError};

/// kube-apiserver's default `--max-request-body-bytes` (3 MiB) is the most a write it accepts
/// can carry; a dry-run answer is the object, of about the same size.
pub const MAX_INSPECTED_BODY: usize = 3 << 20;

/// Why a body the proxy had to read could not be.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("the request body is larger than {0} bytes")]
    TooLarge(usize),
    #[error("the request body did not arrive within {}s", .0.as_secs())]
    Timeout(Duration),
    #[error("the request body could not be read")]
    Failed,
}

/// Reads a whole body, at most `limit` bytes and within `deadline`.
pub async fn read_body(body: Incoming, limit: usize, deadline: Duration) -> Result<Bytes, BodyError> {
    let collect = Limited::new(body, limit).collect();
    match tokio::time::timeout(deadline, collect).await {
        Err(_) => Err(BodyError::Timeout(deadline)),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(BodyError::TooLarge(limit)),
        Ok(Err(_)) => Err(BodyError::Failed),
    }
}

/// What the dry run answered.
pub struct DryRun {
    pub status: StatusCode,
    pub content_type: Option<HeaderValue>,
    pub body: Bytes,
}

#[derive(Debug, thiserror::Error)]
pub enum DryRunError {
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    #[error("the dry run's answer: {0}")]
    Body(#[from] BodyError),
}

/// Sends `parts` + `body` (already rewritten for upstream: the proxy's headers, the upstream
/// URI) with `dryRun=All`, asking for JSON.
pub async fn dry_run(
    cluster: &Cluster,
    parts: &Parts,
    body: Bytes,
    deadline: Duration,
) -> Result<DryRun, DryRunError> {
    let uri = with_dry_run(&parts.uri).map_err(|_| UpstreamError::Failed("invalid upstream URI".into()))?;
    let mut req = Request::new(Either::Right(Full::new(body)));
    *req.method_mut() = parts.method.clone();
    *req.uri_mut() = uri;
    *req.version_mut() = http::Version::HTTP_11;
    *req.headers_mut() = parts.headers.clone();
    let h = req.headers_mut();
    h.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
    // The answer is read here: no compression to undo.
    h.remove(header::ACCEPT_ENCODING);
    let resp = cluster.upstream.send(req).await?;
    let status = resp.status();
    let content_type = resp.headers().get(header::CONTENT_TYPE).cloned();
    let body = read_body(resp.into_body(), MAX_INSPECTED_BODY, deadline).await?;
    Ok(DryRun {
        status,
        content_type,
        body,
    })
}

/// The same URI with `dryRun=All` added to its query.
fn with_dry_run(uri: &Uri) -> Result<Uri, http::Error> {
    let path = uri.path();
    let pq = match uri.query() {
        Some(q) if !q.is_empty() => format!("{path}?{q}&dryRun=All"),
        _ => format!("{path}?dryRun=All"),
    };
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(pq.parse()?);
    Ok(Uri::from_parts(parts)?)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dry_run_is_added_to_the_query() {
        let u: Uri = "https://a:6443/p/apis/x/v1/namespaces/d/roles?fieldManager=k"
            .parse()
            .unwrap();
        assert_eq!(
            with_dry_run(&u).unwrap().to_string(),
            "https://a:6443/p/apis/x/v1/namespaces/d/roles?fieldManager=k&dryRun=All"
        );
        let u: Uri = "https://a/apis/x/v1/roles".parse().unwrap();
        assert_eq!(
            with_dry_run(&u).unwrap().to_string(),
            "https://a/apis/x/v1/roles?dryRun=All"
        );
    }

    #[test]
    fn methods() {
        assert!(method_allowed(&Method::PATCH));
        assert!(!method_allowed(&Method::CONNECT));
        assert!(!method_allowed(&Method::TRACE));
        assert!(!method_allowed(&Method::from_bytes(b"PROPFIND").unwrap()));
    }
}
