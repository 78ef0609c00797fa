//! The management cluster: where platform teams add clusters (the kubeconfigs Secret) and grant
//! access (the role resources) without restarting the proxy.
//!
//! Access comes from `--management-kubeconfig`, else `KUBECONFIG`, else the in-cluster service
//! account; with none the proxy serves the clusters file alone. Nothing here ever blocks
//! start-up: the watches start in the background, retry with backoff while the management
//! cluster is unreachable, and report through [`Status`] (the probe port's `/clusters`) and the
//! log.

use std::{
    collections::BTreeMap,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::Duration,
};

use futures_util::{StreamExt, stream::BoxStream};
use k8s_openapi::api::core::v1::Secret;
use kube::{
    Api,
    api::{ApiResource, DynamicObject},
    config::{KubeConfigOptions, Kubeconfig},
    runtime::watcher,
};
use serde::de::DeserializeOwned;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::authz::capi::{self, BindingSpec, CapiKind, CapiPolicy, Named, RoleSpec};
use crate::cluster::{
    IDENTITY_ANNOTATION_PREFIX, Registry, SecretEntry,
    upstream::error_chain,
    watch_cache::{self, Event, KindCache},
};

/// Where the in-cluster service account's namespace is written.
const NAMESPACE_FILE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";

/// Changes arriving within this window are folded into one policy update.
const COALESCE: Duration = Duration::from_millis(50);

/// What the flags say about the management cluster.
#[derive(Debug, Clone)]
pub struct Settings {
    pub kubeconfig: Option<PathBuf>,
    pub secret_name: String,
    /// Empty: the service account's namespace in-cluster, else `kube-oidc-proxy`.
    pub secret_namespace: String,
}

/// A connected management cluster: its client and where its configuration came from.
pub struct Management {
    pub client: kube::Client,
    pub source: String,
    pub secret_namespace: String,
    pub secret_name: String,
    pub status: Arc<Status>,
}

/// What the management watches last saw, for `/clusters`.
#[derive(Debug, Default)]
pub struct Status {
    inner: Mutex<StatusInner>,
}

#[derive(Debug, Default, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusInner {
    /// `--management-kubeconfig FILE`, `KUBECONFIG`, `in-cluster`.
    pub source: String,
    /// `namespace/name` of the kubeconfigs Secret.
    pub secret: String,
    /// The Secret has been listed (present or not) since the last error.
    pub secret_synced: bool,
    pub secret_error: Option<String>,
    /// Per role resource kind: `synced`, `not installed` or `pending`.
    pub role_resources: BTreeMap<&'static str, &'static str>,
    pub role_resources_error: Option<String>,
}

impl Status {
    pub fn snapshot(&self) -> StatusInner {
        self.inner.lock().map(|s| s.clone()).unwrap_or_default()
    }

    fn update(&self, f: impl FnOnce(&mut StatusInner)) {
        if let Ok(mut s) = self.inner.lock() {
            f(&mut s);
        }
    }
}

/// Builds the management cluster client, if any is configured. A `--management-kubeconfig`
/// that cannot be used is an error (the operator asked for it); an unusable `KUBECONFIG` or
/// in-cluster configuration is logged and the proxy goes on without.
pub async fn connect(settings: &Settings) -> Result<Option<Management>, String> {
    let (config, source) = if settings
        .kubeconfig
        .as_ref()
        .is_some_and(|p| p.as_os_str().is_empty())
    {
        tracing::info!(
            "no management cluster (--management-kubeconfig is empty): serving the clusters file only"
        );
        return Ok(None);
    } else if let Some(path) = &settings.kubeconfig {
        let kubeconfig = Kubeconfig::read_from(path)
            .map_err(|e| format!("--management-kubeconfig {}: {}", path.display(), error_chain(&e)))?;
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .map_err(|e| format!("--management-kubeconfig {}: {}", path.display(), error_chain(&e)))?;
        (config, format!("--management-kubeconfig {}", path.display()))
    } else if std::env::var_os("KUBECONFIG").is_some_and(|v| !v.is_empty()) {
        match kube::Config::from_kubeconfig(&KubeConfigOptions::default()).await {
            Ok(config) => (config, "KUBECONFIG".to_string()),
            Err(e) => {
                tracing::error!(error = %error_chain(&e), "KUBECONFIG is set but cannot be used; serving the clusters file only");
                return Ok(None);
            }
        }
    } else if std::env::var_os("KUBERNETES_SERVICE_HOST").is_some() {
        match kube::Config::incluster() {
            Ok(config) => (config, "in-cluster".to_string()),
            Err(e) => {
                tracing::error!(error = %error_chain(&e), "in-cluster service account cannot be used; serving the clusters file only");
                return Ok(None);
            }
        }
    } else {
        tracing::info!(
            "no management cluster (no --management-kubeconfig, KUBECONFIG or in-cluster service account): serving the clusters file only"
        );
        return Ok(None);
    };
    let client = kube::Client::try_from(config)
        .map_err(|e| format!("management cluster client: {}", error_chain(&e)))?;
    let secret_namespace = match settings.secret_namespace.as_str() {
        "" => std::fs::read_to_string(NAMESPACE_FILE)
            .ok()
            .map(|ns| ns.trim().to_string())
            .filter(|ns| !ns.is_empty())
            .unwrap_or_else(|| "kube-oidc-proxy".into()),
        ns => ns.to_string(),
    };
    let status = Arc::new(Status::default());
    status.update(|s| {
        s.source = source.clone();
        s.secret = format!("{secret_namespace}/{}", settings.secret_name);
        for kind in CapiKind::ALL {
            s.role_resources.insert(kind.kind(), "pending");
        }
    });
    tracing::info!(%source, secret = %format!("{secret_namespace}/{}", settings.secret_name), "watching the management cluster");
    Ok(Some(Management {
        client,
        source,
        secret_namespace,
        secret_name: settings.secret_name.clone(),
        status,
    }))
}

impl Management {
    /// Starts the Secret watch (clusters) and the role resource watches (grants, published on
    /// `policy`), until `cancel`.
    pub fn spawn(
        &self,
        registry: Arc<Registry>,
        policy: watch::Sender<Arc<CapiPolicy>>,
        cancel: CancellationToken,
    ) {
        tokio::spawn(watch_secret(
            self.client.clone(),
            self.secret_namespace.clone(),
            self.secret_name.clone(),
            registry,
            self.status.clone(),
            cancel.clone(),
        ));
        tokio::spawn(watch_role_resources(
            self.client.clone(),
            policy,
            self.status.clone(),
            cancel,
        ));
    }
}

fn secret_data(s: &Secret) -> Option<BTreeMap<String, SecretEntry>> {
    let annotations = s.metadata.annotations.clone().unwrap_or_default();
    Some(
        s.data
            .as_ref()
            .map(|d| {
                d.iter()
                    .map(|(k, v)| {
                        let identity = annotations
                            .get(&format!("{IDENTITY_ANNOTATION_PREFIX}{k}"))
                            .cloned();
                        (
                            k.clone(),
                            SecretEntry {
                                kubeconfig: v.0.clone(),
                                identity,
                            },
                        )
                    })
                    .collect()
            })
            .unwrap_or_default(),
    )
}

/// Watches the one Secret (a field selector, so no other Secret of the namespace is read or
/// cached) and makes the registry's Secret clusters follow it. Deleting the Secret removes them.
async fn watch_secret(
    client: kube::Client,
    namespace: String,
    name: String,
    registry: Arc<Registry>,
    status: Arc<Status>,
    cancel: CancellationToken,
) {
    let api: Api<Secret> = Api::namespaced(client, &namespace);
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut events = Box::pin(watch_cache::watch(api, config, secret_data));
    let mut cache: KindCache<BTreeMap<String, SecretEntry>> = KindCache::default();
    let mut failing = false;
    loop {
        let event = tokio::select! {
            _ = cancel.cancelled() => return,
            e = events.next() => match e {
                Some(e) => e,
                None => return,
            },
        };
        match event {
            Ok(event) => {
                if cache.apply(event) {
                    let data = cache.values().next().cloned().unwrap_or_default();
                    tracing::debug!(keys = data.len(), "kubeconfigs Secret changed");
                    registry.sync_secret(data).await;
                }
                if failing && cache.listed() {
                    failing = false;
                    tracing::info!(secret = %format!("{namespace}/{name}"), "kubeconfigs Secret watch recovered");
                }
                status.update(|s| {
                    s.secret_synced = cache.listed();
                    s.secret_error = None;
                });
            }
            Err(e) => {
                if !failing {
                    tracing::warn!(secret = %format!("{namespace}/{name}"), error = %e, "cannot watch the kubeconfigs Secret; retrying with backoff (the clusters already built keep serving)");
                }
                failing = true;
                status.update(|s| {
                    s.secret_synced = false;
                    s.secret_error = Some(e);
                });
            }
        }
    }
}

/// One event of one role resource kind.
enum Change {
    Role(Event<Named<RoleSpec>>),
    ClusterRole(Event<Named<RoleSpec>>),
    RoleBinding(Event<Named<BindingSpec>>),
    ClusterRoleBinding(Event<Named<BindingSpec>>),
    Failed(CapiKind, String),
}

fn resource(kind: CapiKind) -> ApiResource {
    ApiResource {
        group: capi::GROUP.into(),
        version: capi::VERSION.into(),
        api_version: format!("{}/{}", capi::GROUP, capi::VERSION),
        kind: kind.kind().into(),
        plural: kind.plural().into(),
    }
}

fn named<S: DeserializeOwned>(o: &DynamicObject) -> Option<Named<S>> {
    let spec = o.data.get("spec").cloned().unwrap_or(serde_json::Value::Null);
    let spec = if spec.is_null() {
        serde_json::from_value(serde_json::json!({})).ok()?
    } else {
        serde_json::from_value(spec).ok()?
    };
    Some(Named {
        name: o.metadata.name.clone().unwrap_or_default(),
        spec,
    })
}

fn watch_kind<S>(
    client: &kube::Client,
    kind: CapiKind,
    wrap: fn(Event<Named<S>>) -> Change,
) -> BoxStream<'static, Change>
where
    S: DeserializeOwned + Send + 'static,
{
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &resource(kind));
    watch_cache::watch(api, watcher::Config::default(), named::<S>)
        .map(move |e| match e {
            Ok(e) => wrap(e),
            Err(message) => Change::Failed(kind, message),
        })
        .boxed()
}

#[derive(Default)]
struct Caches {
    roles: KindCache<Named<RoleSpec>>,
    cluster_roles: KindCache<Named<RoleSpec>>,
    role_bindings: KindCache<Named<BindingSpec>>,
    cluster_role_bindings: KindCache<Named<BindingSpec>>,
}

impl Caches {
    fn listed(&self, kind: CapiKind) -> bool {
        match kind {
            CapiKind::Role => self.roles.listed(),
            CapiKind::ClusterRole => self.cluster_roles.listed(),
            CapiKind::RoleBinding => self.role_bindings.listed(),
            CapiKind::ClusterRoleBinding => self.cluster_role_bindings.listed(),
        }
    }

    fn policy(&self) -> CapiPolicy {
        fn copy<S: Clone>(c: &KindCache<Named<S>>) -> BTreeMap<String, Named<S>> {
            c.keys()
                .zip(c.values())
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect()
        }
        CapiPolicy {
            roles: copy(&self.roles),
            cluster_roles: copy(&self.cluster_roles),
            role_bindings: copy(&self.role_bindings),
            cluster_role_bindings: copy(&self.cluster_role_bindings),
        }
    }
}

/// Whether a watch error says the resource is not served (its CRD is not installed).
fn not_installed(message: &str) -> bool {
    message.contains("404") || message.contains("NotFound") || message.contains("page not found")
}

/// Says once per change why a resource grants nothing, if it does.
fn warn_if(kind: CapiKind, key: &str, problem: Option<&'static str>) {
    if let Some(why) = problem {
        tracing::warn!(kind = kind.kind(), name = %key, "{} {key} grants nothing: {why}", kind.kind());
    }
}

/// Watches the four role resource kinds and publishes the policy once every kind is listed or
/// known not to be installed, then after every change. A kind that is not installed is
/// reported once and retried with backoff, so installing the CRDs later works without a
/// restart.
async fn watch_role_resources(
    client: kube::Client,
    policy: watch::Sender<Arc<CapiPolicy>>,
    status: Arc<Status>,
    cancel: CancellationToken,
) {
    let mut changes = futures_util::stream::select_all(vec![
        watch_kind::<RoleSpec>(&client, CapiKind::Role, Change::Role),
        watch_kind::<RoleSpec>(&client, CapiKind::ClusterRole, Change::ClusterRole),
        watch_kind::<BindingSpec>(&client, CapiKind::RoleBinding, Change::RoleBinding),
        watch_kind::<BindingSpec>(&client, CapiKind::ClusterRoleBinding, Change::ClusterRoleBinding),
    ]);
    let mut caches = Caches::default();
    let mut absent: BTreeMap<CapiKind, bool> = BTreeMap::new();
    let mut dirty = false;
    loop {
        let flush = watch_cache::settle(dirty, COALESCE);
        tokio::select! {
            _ = cancel.cancelled() => return,
            change = changes.next() => {
                let Some(change) = change else { return };
                let (kind, changed) = match change {
                    Change::Role(e) => {
                        if let Event::Put(k, o) = &e { warn_if(CapiKind::Role, k, capi::role_problem(&o.spec, true)) }
                        (CapiKind::Role, caches.roles.apply(e))
                    }
                    Change::ClusterRole(e) => {
                        if let Event::Put(k, o) = &e { warn_if(CapiKind::ClusterRole, k, capi::role_problem(&o.spec, false)) }
                        (CapiKind::ClusterRole, caches.cluster_roles.apply(e))
                    }
                    Change::RoleBinding(e) => {
                        if let Event::Put(k, o) = &e { warn_if(CapiKind::RoleBinding, k, capi::binding_problem(&o.spec, true)) }
                        (CapiKind::RoleBinding, caches.role_bindings.apply(e))
                    }
                    Change::ClusterRoleBinding(e) => {
                        if let Event::Put(k, o) = &e { warn_if(CapiKind::ClusterRoleBinding, k, capi::binding_problem(&o.spec, false)) }
                        (CapiKind::ClusterRoleBinding, caches.cluster_role_bindings.apply(e))
                    }
                    Change::Failed(kind, message) => {
                        let missing = not_installed(&message);
                        let was = absent.insert(kind, missing);
                        if missing && was != Some(true) {
                            tracing::warn!(kind = kind.kind(), "{}.{} is not installed in the management cluster (apply deploy/crds/); serving without it and checking again with backoff", kind.plural(), capi::GROUP);
                        } else if !missing {
                            tracing::warn!(kind = kind.kind(), error = %message, "cannot watch role resources; retrying with backoff");
                        }
                        status.update(|s| {
                            s.role_resources.insert(kind.kind(), if missing { "not installed" } else { "pending" });
                            if !missing {
                                s.role_resources_error = Some(format!("{}: {message}", kind.kind()));
                            }
                        });
                        // A kind known to be absent no longer holds the others back.
                        dirty |= missing;
                        continue;
                    }
                };
                if caches.listed(kind) {
                    if absent.remove(&kind) == Some(true) {
                        tracing::info!(kind = kind.kind(), "role resources are installed now");
                    }
                    status.update(|s| {
                        s.role_resources.insert(kind.kind(), "synced");
                        s.role_resources_error = None;
                    });
                }
                dirty |= changed;
            }
            _ = flush => {
                dirty = false;
                let ready = CapiKind::ALL
                    .iter()
                    .all(|k| caches.listed(*k) || absent.get(k) == Some(&true));
                if ready {
                    let next = caches.policy();
                    policy.send_if_modified(|current| {
                        if **current == next {
                            false
                        } else {
                            *current = Arc::new(next);
                            true
                        }
                    });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_crd_is_recognised() {
        assert!(not_installed(
            "ApiError: 404 page not found: NotFound (ErrorResponse { status: \"404 Not Found\" ... })"
        ));
        assert!(!not_installed(
            "error trying to connect: tcp connect error: Connection refused"
        ));
    }

    #[test]
    fn a_resource_without_spec_reads_as_empty() {
        let o: DynamicObject = serde_json::from_value(serde_json::json!({
            "apiVersion": "rbac.platformengineers.io/v1", "kind": "CAPIClusterRole",
            "metadata": {"name": "x"}
        }))
        .unwrap();
        let n: Named<RoleSpec> = named(&o).expect("empty spec");
        assert_eq!(n.name, "x");
        assert!(capi::role_problem(&n.spec, false).is_some());
    }
}
