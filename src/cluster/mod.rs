//! The clusters the proxy serves: an immutable table swapped atomically when clusters come or go,
//! so the request path reads it without a lock. Each cluster owns its upstream client and the
//! background task that keeps its RBAC snapshot current.

pub mod rbac;
pub mod upstream;
pub mod watch_cache;

use std::{collections::HashMap, sync::Arc};

use arc_swap::ArcSwap;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::{
    config::clusters::{ClusterEntry, Loaded},
    config::role_file::RoleFile,
};
pub use rbac::ClusterRbac;
pub use upstream::{Upstream, UpstreamError, UpstreamOptions};

pub struct Cluster {
    /// Shared, so metrics and streams can label by it without copying.
    pub name: Arc<str>,
    pub upstream: Upstream,
    pub rbac: Arc<ClusterRbac>,
    /// Stops this cluster's watches when it is removed or replaced.
    stop: CancellationToken,
}

pub struct Registry {
    table: ArcSwap<HashMap<String, Arc<Cluster>>>,
    role_file: watch::Receiver<Arc<RoleFile>>,
    shutdown: CancellationToken,
}

impl Registry {
    pub fn new(role_file: watch::Receiver<Arc<RoleFile>>, shutdown: CancellationToken) -> Self {
        Registry {
            table: ArcSwap::from_pointee(HashMap::new()),
            role_file,
            shutdown,
        }
    }

    pub fn get(&self, name: &str) -> Option<Arc<Cluster>> {
        self.table.load().get(name).cloned()
    }

    pub fn all(&self) -> Vec<Arc<Cluster>> {
        let mut all: Vec<Arc<Cluster>> = self.table.load().values().cloned().collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    pub fn names(&self) -> Vec<String> {
        self.all().iter().map(|c| c.name.to_string()).collect()
    }

    /// Adds or replaces one cluster and starts watching its RBAC.
    pub fn upsert(&self, name: String, upstream: Upstream, client: kube::Client) {
        let stop = self.shutdown.child_token();
        let cluster = Arc::new(Cluster {
            name: Arc::from(name.as_str()),
            upstream,
            rbac: Arc::default(),
            stop: stop.clone(),
        });
        rbac::spawn(
            name.clone(),
            client,
            cluster.rbac.clone(),
            self.role_file.clone(),
            stop,
        );
        let mut replaced = None;
        self.table.rcu(|t| {
            let mut t = HashMap::clone(t);
            replaced = t.insert(name.clone(), cluster.clone());
            t
        });
        if let Some(old) = replaced {
            old.stop.cancel();
        }
    }

    pub fn remove(&self, name: &str) {
        let mut removed = None;
        self.table.rcu(|t| {
            let mut t = HashMap::clone(t);
            removed = t.remove(name);
            t
        });
        if let Some(old) = removed {
            old.stop.cancel();
        }
    }

    /// Builds every cluster of the clusters file concurrently. Entries that fail are reported
    /// (file, line, cluster, reason) and skipped: one broken kubeconfig never stops the others.
    pub async fn load_static(&self, file: &std::path::Path, loaded: Loaded, opts: UpstreamOptions) {
        for skipped in &loaded.skipped {
            tracing::error!("skipping cluster entry: {skipped}");
        }
        let builds = loaded.clusters.into_iter().map(|entry: ClusterEntry| async move {
            let result = Upstream::from_kubeconfig_file(&entry.kubeconfig, opts).await;
            (entry, result)
        });
        for (entry, result) in futures_util::future::join_all(builds).await {
            match result {
                Ok((upstream, client)) => {
                    tracing::info!(cluster = %entry.name, server = %upstream.server, "added cluster");
                    self.upsert(entry.name, upstream, client);
                }
                Err(e) => tracing::error!(
                    "skipping cluster {:?} ({}:{}): kubeconfig {}: {e}",
                    entry.name,
                    file.display(),
                    entry.line,
                    entry.kubeconfig.display()
                ),
            }
        }
    }
}
