//! Protocol upgrades (SPDY and WebSocket for exec, attach, port-forward, proxy, watch): which
//! requests may ask for one and what they need ([`upgrade_rule`]), and once both sides have
//! switched, bytes copied both ways until either side closes. The proxy never parses the
//! framing; authorization already happened on the upgrade request.

use std::sync::Arc;

use crate::authz::request_info::RequestInfo;

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

/// Upgraded streams outlive the request that opened them; they are tracked so shutdown can wait
/// for them and, at its deadline, close them.
#[derive(Clone, Default)]
pub struct Streams {
    pub tracker: TaskTracker,
    /// Fired at the shutdown deadline: every stream still open is closed.
    pub close: CancellationToken,
}

impl Streams {
    /// `guard` (the open-streams gauge, the user's in-flight place) is held for as long as the
    /// stream lives.
    pub fn splice(
        &self,
        client: OnUpgrade,
        server: OnUpgrade,
        cluster: Arc<str>,
        retired: CancellationToken,
        guard: impl Send + 'static,
    ) {
        let close = self.close.clone();
        self.tracker.spawn(async move {
            let _guard = guard;
            let (client, server) = match tokio::try_join!(client, server) {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::debug!(%cluster, error = %e, "upgrade did not complete");
                    return;
                }
            };
            let mut client = TokioIo::new(client);
            let mut server = TokioIo::new(server);
            tokio::select! {
                r = tokio::io::copy_bidirectional(&mut client, &mut server) => match r {
                    Ok((up, down)) => tracing::debug!(%cluster, up, down, "upgraded stream closed"),
                    Err(e) => tracing::debug!(%cluster, error = %e, "upgraded stream ended with an error"),
                },
                _ = close.cancelled() => tracing::debug!(%cluster, "upgraded stream closed by shutdown"),
                _ = retired.cancelled() => tracing::info!(%cluster,
                    "upgraded stream closed: the cluster was removed or its credentials changed"),
            }
        });
    }
}

/// What an upgrade request needs besides its own verb.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpgradeRule {
    /// A stream kube-apiserver only ever writes to (a watch, a pod's log, both served over
    /// WebSocket to browsers): its own verb is enough.
    ReadOnlyStream,
    /// Anything else: `create` as well. An upgraded connection carries whatever the far end
    /// speaks (a shell through `nodes/proxy` and the kubelet, a pod's port, a service, an
    /// aggregated API's console), as SPDY's POST always did. Requiring the request's own verb
    /// too means an `Upgrade` header kube-apiserver ignores (on a list, say) gains nothing.
    Create,
}

/// `None` when the request may not upgrade at all: only GET (WebSocket) and POST (SPDY) on API
/// resources do.
pub fn upgrade_rule(method: &http::Method, info: &RequestInfo) -> Option<UpgradeRule> {
    if (*method != http::Method::GET && *method != http::Method::POST) || !info.is_resource_request {
        return None;
    }
    let read_only = *method == http::Method::GET
        && ((info.verb == "watch" && info.subresource.is_empty())
            || (info.resource == "pods" && info.subresource == "log"));
    Some(if read_only {
        UpgradeRule::ReadOnlyStream
    } else {
        UpgradeRule::Create
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn which_upgrades_need_create() {
        let rule = |m: &str, path: &str, q: Option<&str>| {
            let info = RequestInfo::parse(m, path, q, true).unwrap();
            upgrade_rule(&http::Method::from_bytes(m.as_bytes()).unwrap(), &info)
        };
        use UpgradeRule::{Create, ReadOnlyStream};
        assert_eq!(
            rule("GET", "/api/v1/namespaces/d/pods/p/exec", None),
            Some(Create)
        );
        assert_eq!(
            rule("POST", "/api/v1/namespaces/d/pods/p/portforward", None),
            Some(Create)
        );
        assert_eq!(
            rule("GET", "/api/v1/nodes/n/proxy/exec/d/p/c", None),
            Some(Create)
        );
        assert_eq!(
            rule("GET", "/api/v1/namespaces/d/pods", Some("watch=1")),
            Some(ReadOnlyStream)
        );
        assert_eq!(
            rule("GET", "/api/v1/namespaces/d/pods/p/log", None),
            Some(ReadOnlyStream)
        );
        assert_eq!(rule("GET", "/api/v1/namespaces/d/secrets", None), Some(Create));
        assert_eq!(rule("DELETE", "/api/v1/namespaces/d/pods/p/exec", None), None);
        assert_eq!(rule("PATCH", "/api/v1/namespaces/d/configmaps/x", None), None);
        assert_eq!(rule("GET", "/version", None), None);
    }
}
