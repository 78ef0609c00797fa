//! The clusters the proxy serves: an immutable table swapped atomically when clusters come or go,
//! so the request path reads it without a lock.

pub mod upstream;

use std::{collections::HashMap, sync::Arc};

use arc_swap::ArcSwap;

use crate::config::clusters::{ClusterEntry, Loaded};
pub use upstream::{Upstream, UpstreamError, UpstreamOptions};

pub struct Cluster {
    pub name: String,
    pub upstream: Upstream,
}

#[derive(Default)]
pub struct Registry {
    table: ArcSwap<HashMap<String, Arc<Cluster>>>,
}

impl Registry {
    pub fn get(&self, name: &str) -> Option<Arc<Cluster>> {
        self.table.load().get(name).cloned()
    }

    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.table.load().keys().cloned().collect();
        names.sort();
        names
    }

    /// Adds or replaces one cluster.
    pub fn upsert(&self, cluster: Cluster) {
        let cluster = Arc::new(cluster);
        self.table.rcu(|t| {
            let mut t = HashMap::clone(t);
            t.insert(cluster.name.clone(), cluster.clone());
            t
        });
    }

    pub fn remove(&self, name: &str) {
        self.table.rcu(|t| {
            let mut t = HashMap::clone(t);
            t.remove(name);
            t
        });
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
                Ok(upstream) => {
                    tracing::info!(cluster = %entry.name, server = %upstream.server, "added cluster");
                    self.upsert(Cluster {
                        name: entry.name,
                        upstream,
                    });
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
