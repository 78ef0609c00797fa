//! Writes whose effect depends on who asks (RBAC escalation, create through PUT or apply,
//! signers, admission parameters: see [`crate::authz::requester`]) are tried first as a dry run
//! with the proxy's credentials, and the object kube-apiserver says they would produce is
//! checked for the real user. Only then is the same request sent for real.
//!
//! The dry run sees everything kube-apiserver would do to the object (defaulting, mutating
//! admission, the patch applied to the current object), in whatever encoding the client used,
//! so the proxy never re-implements patch semantics. The window between the dry run and the
//! write cannot be used: an update or patch of an existing object is sent for real holding the
//! uid and resourceVersion the dry run saw, so kube-apiserver refuses it if the object was
//! deleted, replaced or changed in between ([`super::precondition`]).

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, Uri, header, request::Parts};
use http_body_util::{Either, Full};

use super::{
    ProxyBody,
    precondition::{self, PreconditionError, Seen},
    refusal::Refusal,
    request_body::read_body,
};
use crate::{
    authz::{
        rbac::Snapshot,
        request_info::RequestInfo,
        requester::{self, Requester, WritePlan},
    },
    cluster::{Cluster, UpstreamError},
};

/// kube-apiserver's default `--max-request-body-bytes` (3 MiB) is the most a write it accepts
/// can carry; a dry-run answer is the object, of about the same size.
pub const MAX_INSPECTED_BODY: usize = 3 << 20;

/// What the dry run answered.
struct DryRun {
    status: StatusCode,
    content_type: Option<HeaderValue>,
    body: Bytes,
}

/// Sends `parts` + `body` (already rewritten for upstream: the proxy's headers, the upstream
/// URI) with `dryRun=All`, asking for JSON.
async fn dry_run(
    cluster: &Cluster,
    parts: &Parts,
    body: Bytes,
    deadline: Duration,
) -> Result<DryRun, Refusal> {
    let upstream = |error| Refusal::Upstream {
        cluster: cluster.name.clone(),
        error,
    };
    let uri = with_dry_run(&parts.uri)
        .map_err(|_| upstream(UpstreamError::Failed("invalid upstream URI".into())))?;
    let mut req = Request::new(Either::Right(Full::new(body)));
    *req.method_mut() = parts.method.clone();
    *req.uri_mut() = uri;
    *req.version_mut() = http::Version::HTTP_11;
    *req.headers_mut() = parts.headers.clone();
    let h = req.headers_mut();
    h.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
    // The answer is read here: no compression to undo, and never a switched protocol (an
    // `Upgrade` riding on a write must not turn its dry run into a stream).
    h.remove(header::ACCEPT_ENCODING);
    h.remove(header::CONNECTION);
    h.remove(header::UPGRADE);
    let resp = cluster.upstream.send(req, None).await.map_err(upstream)?;
    let status = resp.status();
    let content_type = resp.headers().get(header::CONTENT_TYPE).cloned();
    let body = read_body(resp.into_body(), MAX_INSPECTED_BODY, deadline)
        .await
        .map_err(|e| upstream(UpstreamError::Failed(format!("the dry run's answer: {e}"))))?;
    Ok(DryRun {
        status,
        content_type,
        body,
    })
}

/// What to do with a checked write.
pub enum Verdict {
    /// Send it for real, holding it to the object the dry run saw when there was one.
    Proceed(Option<Seen>),
    /// The dry run failed (conflict, invalid, not found ...): its answer is the write's.
    Answer(Box<Response<ProxyBody>>),
}

/// Dry-runs a checked write (`parts` already rewritten for upstream) and checks what it would
/// produce for the user.
#[allow(clippy::too_many_arguments)]
pub async fn check_write(
    cluster: &Cluster,
    parts: &Parts,
    whole: Bytes,
    plan: &WritePlan,
    snapshot: &Snapshot,
    info: &RequestInfo,
    who: Requester<'_>,
    deadline: Duration,
) -> Result<Verdict, Refusal> {
    let holds = precondition::held(&info.verb);
    let dry = dry_run(cluster, parts, whole, deadline).await?;
    if !dry.status.is_success() {
        let mut resp = Response::new(Either::Right(Full::new(dry.body)));
        *resp.status_mut() = dry.status;
        if let Some(ct) = dry.content_type {
            resp.headers_mut().insert(header::CONTENT_TYPE, ct);
        }
        return Ok(Verdict::Answer(Box::new(resp)));
    }
    let created = dry.status == StatusCode::CREATED;
    let refused = |refused| Refusal::WriteRefused {
        info: Box::new(info.clone()),
        refused: Box::new(refused),
    };
    // An update or patch of an object that exists is held to it; a create has nothing to hold.
    let hold = holds && !created;
    if plan.content.is_none() && !hold {
        // Only "would it create" was asked: the status says it.
        if plan.refuse_create && created {
            return Err(refused(requester::refuse_create(info, who.name)));
        }
        return Ok(Verdict::Proceed(None));
    }
    let object: serde_json::Value =
        serde_json::from_slice(&dry.body).map_err(|_| Refusal::DryRunUnreadable(cluster.name.clone()))?;
    requester::check(plan, info, created, &object, who, snapshot).map_err(refused)?;
    if !hold {
        return Ok(Verdict::Proceed(None));
    }
    match Seen::of(&object) {
        Ok(seen) => Ok(Verdict::Proceed(Some(seen))),
        Err(PreconditionError::NoVersion) => Err(Refusal::DryRunUnreadable(cluster.name.clone())),
        Err(e) => Err(Refusal::Precondition(e)),
    }
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
}
