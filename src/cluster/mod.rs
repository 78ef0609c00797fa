//! The clusters the proxy serves: an immutable table swapped atomically when clusters come or go,
//! so the request path reads it without a lock. Each cluster owns its upstream client and the
//! background task that keeps its RBAC snapshot current.

pub mod rbac;
pub mod review_rate;
pub mod shown;
pub mod token_review;
pub mod upstream;
pub mod watch_cache;

use std::{
    collections::{BTreeMap, HashMap},
    hash::{DefaultHasher, Hash, Hasher},
    path::Path,
    sync::{Arc, Mutex},
    time::SystemTime,
};

use arc_swap::ArcSwap;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::{
    authz::capi::CapiPolicy,
    config::clusters::{ClusterEntry, Identity, Loaded},
    config::role_file::RoleFile,
};
pub use rbac::ClusterRbac;
pub use upstream::{Upstream, UpstreamError, UpstreamOptions};

/// Where a cluster's kubeconfig comes from. The clusters file wins over the Secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// `--clusters-config`.
    File,
    /// The kubeconfigs Secret in the management cluster.
    Secret,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::File => "file",
            Source::Secret => "secret",
        }
    }
}

pub struct Cluster {
    /// Shared, so metrics and streams can label by it without copying.
    pub name: Arc<str>,
    pub source: Source,
    /// Whose identity requests carry to this cluster.
    pub identity: Identity,
    pub upstream: Upstream,
    pub rbac: Arc<ClusterRbac>,
    /// What the cluster was built from (a hash of its kubeconfig): an unchanged entry is not
    /// rebuilt.
    fingerprint: u64,
    /// Stops this cluster's watches when it is removed or replaced.
    stop: CancellationToken,
    /// Fired when this version stops serving (removed from its source, or replaced by a new
    /// kubeconfig or identity), not at shutdown: every stream opened through it ends then, so
    /// no exec, watch or log follow outlives the credentials it was opened with.
    pub retired: CancellationToken,
}

/// The last thing that happened to a cluster name, for the status endpoint: a cluster that
/// failed to build has no [`Cluster`] but still has a status.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Change {
    pub source: Source,
    /// The last error building it from its source; `None` once it built.
    pub error: Option<String>,
    /// When the cluster (or its error) last changed, as seconds since the Unix epoch.
    pub at: u64,
}

/// How long a replacement may take to sync its RBAC before that is reported as an error (the
/// previous version keeps serving meanwhile, and the replacement keeps trying).
pub const HANDOVER_REPORT: std::time::Duration = std::time::Duration::from_secs(30);

/// Looked up once per request. The names come from configuration, so a per-process seed is
/// enough, and foldhash costs a fraction of SipHash on a short name.
type Clusters = HashMap<String, Arc<Cluster>, foldhash::fast::RandomState>;
type Table = ArcSwap<Clusters>;

pub struct Registry {
    table: Arc<Table>,
    /// Replacements of serving clusters, built and syncing their RBAC: each takes over from
    /// the version in the table once its first snapshot is in place, so a changed kubeconfig
    /// never turns a serving cluster into 503s, and one that cannot sync never replaces it.
    pending: Arc<Mutex<HashMap<String, Arc<Cluster>>>>,
    role_file: watch::Receiver<Arc<RoleFile>>,
    capi: watch::Receiver<Arc<CapiPolicy>>,
    opts: UpstreamOptions,
    /// The identity mode of clusters whose entry does not choose one (from the flags).
    default_identity: Identity,
    /// Whether a Secret cluster may be `passthrough-user-token`: whoever writes the Secret
    /// chooses the server, and so would receive users' tokens.
    secret_user_tokens: bool,
    /// Serializes the file and Secret syncs (each is a diff against the table).
    sync: tokio::sync::Mutex<Sources>,
    changes: Arc<Mutex<BTreeMap<String, Change>>>,
    shutdown: CancellationToken,
}

/// The last entries each source asked for, so one source can be re-applied when the other
/// changes (a name the file drops falls back to the Secret's entry).
#[derive(Default)]
struct Sources {
    file: BTreeMap<String, FileEntry>,
    secret: BTreeMap<String, SecretEntry>,
}

/// The annotation that chooses the identity mode of one Secret key's cluster:
/// `identity.kube-oidc-proxy.io/<key>: credentials | impersonate | passthrough-user-token`.
pub const IDENTITY_ANNOTATION_PREFIX: &str = "identity.kube-oidc-proxy.io/";

/// One key of the kubeconfigs Secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretEntry {
    pub kubeconfig: Vec<u8>,
    /// The `identity.kube-oidc-proxy.io/<key>` annotation, unparsed; `None`: the flags decide.
    pub identity: Option<String>,
}

impl SecretEntry {
    /// An entry without an identity annotation.
    pub fn kubeconfig(bytes: impl Into<Vec<u8>>) -> Self {
        SecretEntry {
            kubeconfig: bytes.into(),
            identity: None,
        }
    }
}

#[derive(Clone)]
struct FileEntry {
    entry: ClusterEntry,
    file: std::path::PathBuf,
}

fn note(changes: &Mutex<BTreeMap<String, Change>>, name: &str, source: Source, error: Option<String>) {
    if let Ok(mut changes) = changes.lock() {
        let at = now_secs();
        changes.insert(name.to_owned(), Change { source, error, at });
    }
}

/// Puts `cluster` in the table under `name`; the version it replaces stops its watches, and its
/// connections close once the requests still using it end.
fn swap_in(table: &Table, name: &str, cluster: Arc<Cluster>) {
    let mut replaced = None;
    table.rcu(|t| {
        let mut t = Clusters::clone(t);
        replaced = t.insert(name.to_owned(), cluster.clone());
        t
    });
    if let Some(old) = replaced {
        old.stop.cancel();
        old.retired.cancel();
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// What a cluster is built from: its kubeconfig and its identity mode (a new mode rebuilds the
/// cluster as a new kubeconfig would).
fn fingerprint(bytes: &[u8], identity: Option<Identity>) -> u64 {
    let mut h = DefaultHasher::new();
    bytes.hash(&mut h);
    identity.hash(&mut h);
    h.finish()
}

impl Registry {
    pub fn new(
        role_file: watch::Receiver<Arc<RoleFile>>,
        capi: watch::Receiver<Arc<CapiPolicy>>,
        opts: UpstreamOptions,
        shutdown: CancellationToken,
    ) -> Self {
        Registry {
            table: Arc::new(ArcSwap::from_pointee(Clusters::default())),
            pending: Arc::default(),
            role_file,
            capi,
            opts,
            default_identity: Identity::Credentials,
            secret_user_tokens: false,
            sync: tokio::sync::Mutex::new(Sources::default()),
            changes: Arc::default(),
            shutdown,
        }
    }

    /// The identity mode of clusters whose entry names none.
    pub fn with_default_identity(mut self, identity: Identity) -> Self {
        self.default_identity = identity;
        self
    }

    /// Lets Secret clusters be `passthrough-user-token` (`--allow-user-tokens-to-secret-clusters`).
    pub fn with_secret_user_tokens(mut self, allowed: bool) -> Self {
        self.secret_user_tokens = allowed;
        self
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

    /// What last happened to each cluster name (built, failed, removed names are dropped).
    pub fn changes(&self) -> BTreeMap<String, Change> {
        self.changes.lock().map(|c| c.clone()).unwrap_or_default()
    }

    fn note(&self, name: &str, source: Source, error: Option<String>) {
        note(&self.changes, name, source, error);
    }

    /// The source and fingerprint a name is being served from, or is about to be (a pending
    /// replacement counts: it is not built again while it syncs).
    fn built_from(&self, name: &str) -> Option<(Source, u64)> {
        let pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        pending
            .get(name)
            .cloned()
            .or_else(|| self.get(name))
            .map(|c| (c.source, c.fingerprint))
    }

    fn forget(&self, name: &str) {
        if let Ok(mut changes) = self.changes.lock() {
            changes.remove(name);
        }
    }

    /// Adds or replaces one cluster and starts watching its RBAC; the replaced cluster's watches
    /// stop, and its connections close once the requests still using it end.
    fn upsert(
        &self,
        name: &str,
        (source, identity): (Source, Identity),
        fingerprint: u64,
        upstream: Upstream,
        client: kube::Client,
    ) {
        let stop = self.shutdown.child_token();
        let cluster = Arc::new(Cluster {
            name: Arc::from(name),
            source,
            identity,
            upstream,
            rbac: Arc::default(),
            fingerprint,
            stop: stop.clone(),
            retired: CancellationToken::new(),
        });
        rbac::spawn(
            name.to_owned(),
            client,
            cluster.rbac.clone(),
            self.role_file.clone(),
            self.capi.clone(),
            stop,
        );
        let superseded = (self.pending.lock().unwrap_or_else(|e| e.into_inner())).remove(name);
        if let Some(p) = superseded {
            p.stop.cancel();
        }
        // A serving version of the same source hands over once the new one has synced; anything
        // else (a new name, a version that never synced, the file taking a name from the
        // Secret) is replaced at once.
        let handover = self
            .get(name)
            .is_some_and(|old| old.source == source && old.rbac.is_ready());
        if !handover {
            swap_in(&self.table, name, cluster);
            self.note(name, source, None);
            return;
        }
        (self.pending.lock().unwrap_or_else(|e| e.into_inner())).insert(name.to_owned(), cluster.clone());
        let (table, pending, changes) = (self.table.clone(), self.pending.clone(), self.changes.clone());
        let name = name.to_owned();
        tokio::spawn(async move {
            let started = tokio::time::Instant::now();
            let mut reported = false;
            while !cluster.rbac.is_ready() {
                if cluster.stop.is_cancelled() {
                    return; // superseded, removed, or shutting down
                }
                if !reported && started.elapsed() >= HANDOVER_REPORT {
                    reported = true;
                    let why = cluster
                        .rbac
                        .last_error()
                        .unwrap_or_else(|| "not synced yet".into());
                    let message = format!(
                        "the new kubeconfig's RBAC has not synced after {}s ({why}); the previous version keeps serving",
                        HANDOVER_REPORT.as_secs()
                    );
                    tracing::error!(cluster = %name, "{message}");
                    note(&changes, &name, source, Some(message));
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            let mine = {
                let mut p = pending.lock().unwrap_or_else(|e| e.into_inner());
                let mine = p.get(&name).is_some_and(|c| Arc::ptr_eq(c, &cluster));
                if mine {
                    p.remove(&name);
                }
                mine
            };
            if mine && !cluster.stop.is_cancelled() {
                tracing::info!(cluster = %name, "the rebuilt cluster has synced and now serves");
                swap_in(&table, &name, cluster);
                note(&changes, &name, source, None);
            }
        });
    }

    fn remove(&self, name: &str) {
        let pending = (self.pending.lock().unwrap_or_else(|e| e.into_inner())).remove(name);
        if let Some(p) = pending {
            p.stop.cancel();
        }
        let mut removed = None;
        self.table.rcu(|t| {
            let mut t = Clusters::clone(t);
            removed = t.remove(name);
            t
        });
        if let Some(old) = removed {
            old.stop.cancel();
            old.retired.cancel();
        }
        self.forget(name);
    }

    /// Makes the file's clusters what `loaded` says: new and changed entries are built
    /// concurrently (a changed kubeconfig file counts), entries gone from the file are removed,
    /// and a name the Secret also has goes back to the Secret's kubeconfig when the file drops
    /// it. An entry that fails is reported (file, line, cluster, reason) and skipped: one broken
    /// kubeconfig never stops the others.
    pub async fn sync_file(&self, file: &Path, loaded: Loaded) {
        for skipped in &loaded.skipped {
            tracing::error!("skipping cluster entry: {skipped}");
        }
        let mut sources = self.sync.lock().await;
        sources.file = loaded
            .clusters
            .into_iter()
            .map(|entry| {
                let fe = FileEntry {
                    entry: entry.clone(),
                    file: file.to_path_buf(),
                };
                (entry.name, fe)
            })
            .collect();
        self.apply(&sources).await;
    }

    /// Re-reads the clusters file every `every`, and syncs when it or a kubeconfig it names has
    /// changed. A file that no longer parses keeps the clusters as they are and says why.
    /// `initial` is [`clusters_file_print`] taken before the file was loaded, so a change made
    /// in between is seen at the first check.
    pub fn watch_file(
        self: &Arc<Self>,
        path: std::path::PathBuf,
        initial: Option<u64>,
        every: std::time::Duration,
        cancel: CancellationToken,
    ) {
        let registry = self.clone();
        let last = Mutex::new(initial);
        let empty = crate::config::reload::EmptyGate::default();
        let handle = tokio::runtime::Handle::current();
        crate::config::reload::poll_until_cancelled(every, cancel, move || {
            let unchanged = |print: u64| *last.lock().unwrap_or_else(|e| e.into_inner()) == Some(print);
            if matches!(read_clusters_file(&path, false), Ok((print, ..)) if unchanged(print)) {
                return;
            }
            let (print, loaded, emptied) = match read_clusters_file(&path, true) {
                Ok(read) => read,
                Err(e) => {
                    tracing::warn!(file = %path.display(), error = %e, "clusters file cannot be read; keeping the clusters as they are");
                    return;
                }
            };
            if !empty.pass(&path, if emptied { b"" } else { b"-" }) {
                return;
            }
            let mut last = last.lock().unwrap_or_else(|e| e.into_inner());
            if *last == Some(print) {
                return;
            }
            *last = Some(print);
            match loaded {
                Ok(loaded) => {
                    tracing::info!(file = %path.display(), "clusters file changed; syncing");
                    handle.block_on(registry.sync_file(&path, loaded));
                }
                Err(e) => {
                    tracing::error!("clusters file not reloaded, keeping the clusters as they are: {e}")
                }
            }
        });
    }

    /// Makes the Secret's clusters what `data` says (key: cluster name, value: kubeconfig).
    pub async fn sync_secret(&self, data: BTreeMap<String, SecretEntry>) {
        let mut sources = self.sync.lock().await;
        sources.secret = data;
        self.apply(&sources).await;
    }

    async fn apply(&self, sources: &Sources) {
        let current = self.table.load_full();
        let current = &current;
        // Removed from their source (and not provided by the other one).
        for (name, cluster) in current.iter() {
            let wanted = sources.file.contains_key(name)
                || (sources.secret.contains_key(name) && crate::config::cluster_name_problem(name).is_none());
            if !wanted {
                tracing::info!(cluster = %name, source = cluster.source.as_str(), "removed cluster");
                self.remove(name);
            }
        }
        if let Ok(mut changes) = self.changes.lock() {
            changes.retain(|name, _| sources.file.contains_key(name) || sources.secret.contains_key(name));
        }
        // The file's entries, built concurrently.
        let file_builds = sources.file.values().map(|fe| async move {
            let bytes = tokio::fs::read(&fe.entry.kubeconfig).await;
            let identity = fe.entry.identity.unwrap_or(self.default_identity);
            let print = bytes
                .as_ref()
                .map(|b| fingerprint(b, Some(identity)))
                .unwrap_or(0);
            if self.built_from(&fe.entry.name) == Some((Source::File, print)) && bytes.is_ok() {
                return None;
            }
            let result = match bytes {
                Ok(_) => Upstream::from_kubeconfig_file(&fe.entry.kubeconfig, self.opts).await,
                Err(e) => Err(UpstreamError::Kubeconfig(format!("cannot read: {e}"))),
            };
            Some((fe, identity, print, result))
        });
        for (fe, identity, print, result) in futures_util::future::join_all(file_builds)
            .await
            .into_iter()
            .flatten()
        {
            let entry = &fe.entry;
            match result {
                Ok((upstream, client)) => {
                    tracing::info!(cluster = %entry.name, source = "file", server = %upstream.server, "added cluster");
                    self.upsert(&entry.name, (Source::File, identity), print, upstream, client);
                }
                Err(e) => {
                    let message = format!(
                        "{}:{}: kubeconfig {}: {e}",
                        fe.file.display(),
                        entry.line,
                        entry.kubeconfig.display()
                    );
                    // Only the file's own previous version keeps serving: a cluster the Secret
                    // served under this name is the Secret's no more (the file wins).
                    if self.get(&entry.name).is_some_and(|c| c.source != Source::File) {
                        self.remove(&entry.name);
                    }
                    let serving = self.get(&entry.name).is_some();
                    tracing::error!(
                        cluster = %entry.name,
                        "{} cluster {:?} ({message})",
                        if serving { "cannot rebuild; the previous version keeps serving" } else { "skipping" },
                        entry.name,
                    );
                    self.note(&entry.name, Source::File, Some(message));
                }
            }
        }
        // The Secret's entries.
        for (name, entry) in &sources.secret {
            if sources.file.contains_key(name) {
                let message = format!(
                    "cluster {name:?} in the kubeconfigs Secret is also in the clusters file; the file's entry is served"
                );
                tracing::error!(cluster = %name, "{message}");
                continue;
            }
            if let Some(problem) = crate::config::cluster_name_problem(name) {
                tracing::error!(cluster = %name, "skipping key {name:?} of the kubeconfigs Secret: {problem}");
                self.note(name, Source::Secret, Some(problem));
                continue;
            }
            let identity = match entry.identity.as_deref().map(|v| (v, Identity::parse(v))) {
                None => Ok(self.default_identity),
                Some((_, Some(identity))) => Ok(identity),
                Some((v, None)) => Err(format!(
                    "annotation {}{name}: unknown identity {v:?} (credentials, impersonate or passthrough-user-token)",
                    IDENTITY_ANNOTATION_PREFIX
                )),
            }
            .and_then(|identity| {
                if identity == Identity::PassthroughUserToken && !self.secret_user_tokens {
                    Err("identity passthrough-user-token would hand users' tokens to whoever writes the \
                         Secret (they choose the server); allow it with --allow-user-tokens-to-secret-clusters"
                        .to_string())
                } else {
                    Ok(identity)
                }
            });
            let print = fingerprint(&entry.kubeconfig, identity.as_ref().ok().copied());
            if self.built_from(name) == Some((Source::Secret, print)) {
                continue;
            }
            let built = match (
                identity,
                crate::config::secret_kubeconfig::kubeconfig(&entry.kubeconfig),
            ) {
                (Ok(identity), Ok(k)) => Upstream::from_kubeconfig(k, self.opts)
                    .await
                    .map(|(u, c)| (identity, u, c))
                    .map_err(|e| e.to_string()),
                (Err(e), _) | (_, Err(e)) => Err(e),
            };
            match built {
                Ok((identity, upstream, client)) => {
                    tracing::info!(cluster = %name, source = "secret", server = %upstream.server,
                        identity = identity.as_str(), "added cluster");
                    self.upsert(name, (Source::Secret, identity), print, upstream, client);
                }
                Err(e) => {
                    // Only the Secret's own previous version keeps serving: a cluster the file
                    // dropped does not live on with the file's credentials.
                    if self.get(name).is_some_and(|c| c.source != Source::Secret) {
                        self.remove(name);
                    }
                    let serving = self.get(name).is_some();
                    tracing::error!(
                        cluster = %name,
                        "{} cluster {name:?} from the kubeconfigs Secret: {e}",
                        if serving { "cannot rebuild; the previous version keeps serving" } else { "skipping" },
                    );
                    self.note(name, Source::Secret, Some(e));
                }
            }
        }
    }
}

/// The clusters file's fingerprint (with the kubeconfigs it names), what it parses to, and
/// whether it is empty.
type FileRead = (u64, Result<Loaded, crate::config::ConfigError>, bool);

/// The fingerprint [`Registry::watch_file`] starts from; take it before loading the file.
pub fn clusters_file_print(path: &Path) -> Option<u64> {
    read_clusters_file(path, false).ok().map(|(print, ..)| print)
}

/// Reads the clusters file and the kubeconfigs it names. `settled`: only once they have stopped
/// changing (see `read_settled`); the cheap read is enough to see that nothing changed.
fn read_clusters_file(path: &Path, settled: bool) -> std::io::Result<FileRead> {
    let bytes = if settled {
        crate::config::reload::read_settled(path)?
    } else {
        std::fs::read(path)?
    };
    let loaded = crate::config::clusters::parse(path, &String::from_utf8_lossy(&bytes));
    let emptied = bytes.iter().all(u8::is_ascii_whitespace);
    let mut all = bytes;
    if let Ok(l) = &loaded {
        for entry in &l.clusters {
            let kubeconfig = if settled {
                crate::config::reload::read_settled(&entry.kubeconfig)
            } else {
                std::fs::read(&entry.kubeconfig)
            };
            all.extend(kubeconfig.unwrap_or_default());
            all.push(0);
        }
    }
    Ok((fingerprint(&all, None), loaded, emptied))
}
