//! Building the proxy from flags and running it until shutdown.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use tokio::{net::TcpListener, sync::watch};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::{
    audit::{
        access_log::Sink,
        line_writer::BufferedWriter,
        webhook::{AuditError, AuditHandle, AuditSender, AuditStats, WebhookConfig},
    },
    authn::{
        ALL_SIGNING_ALGS, Authenticator, ClaimMapping, Issuers, Mapping, OidcConfig, parse_signing_algs,
    },
    authz::capi::CapiPolicy,
    cli::{Args, IssuersFrom},
    cluster::{Registry, UpstreamOptions},
    cluster::{review_rate::ReviewRates, token_review::TokenReviewer},
    config::clusters::{self, Identity},
    config::role_file::{self, RoleFile},
    management,
    metrics::Metrics,
    proxy::{
        Proxy, ProxyOptions, Recorder,
        headers::{IdentityHeaders, TrustedProxies},
        limits::UserLimits,
        upgrade::Streams,
    },
    server::{self, ServeOptions, probe, tls::ServingCert},
};

/// Why the proxy could not start. Each names the flag or file at fault.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Flags(String),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Authn(#[from] crate::authn::AuthnError),
    #[error(transparent)]
    AuthnConfig(#[from] crate::config::authentication::ConfigErrors),
    #[error("audit webhook: {0}")]
    Audit(#[from] AuditError),
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// A started proxy. Dropping it does not stop it; call [`Running::shutdown`].
pub struct Running {
    pub addr: SocketAddr,
    pub probe_addr: SocketAddr,
    pub authn: Arc<Issuers>,
    pub clusters: Arc<Registry>,
    pub metrics: Arc<Metrics>,
    pub audit_stats: Arc<AuditStats>,
    /// Where access lines go; flushed at the end of a shutdown.
    pub access_log: Arc<dyn Sink>,
    stop: CancellationToken,
    done: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Starts a graceful shutdown (as SIGTERM does) without waiting for it.
    pub fn begin_shutdown(&self) {
        self.stop.cancel();
    }

    /// Shuts down gracefully and waits until everything is closed.
    pub async fn shutdown(self) {
        self.stop.cancel();
        let _ = self.done.await;
    }

    /// Waits for a shutdown started elsewhere to finish.
    pub async fn wait(self) {
        let _ = self.done.await;
    }
}

/// Validates flags, loads files, binds the ports and starts serving. Access lines go to stdout.
pub async fn start(args: Args) -> Result<Running, StartError> {
    let writer =
        BufferedWriter::stdout().map_err(|e| StartError::Flags(format!("access log writer: {e}")))?;
    start_with_sink(args, Arc::new(writer)).await
}

pub async fn start_with_sink(args: Args, access_log: Arc<dyn Sink>) -> Result<Running, StartError> {
    let required = args.validate().map_err(StartError::Flags)?;
    let opts = proxy_options(&args)?;
    let mut authn_bytes = None;
    let authn = issuers(&args, &required.issuers, &mut authn_bytes)?;

    let cert = ServingCert::load(&required.cert_file, &required.key_file)?;
    let tls_config = server::tls::server_config(
        cert.resolver.clone(),
        args.tls_min_version,
        &args.tls_cipher_suites,
    )?;

    let upstream_opts = UpstreamOptions {
        connect_timeout: args.upstream_connect_timeout,
        tls_handshake_timeout: args.upstream_tls_handshake_timeout,
        response_header_timeout: args.upstream_response_header_timeout,
    };
    let stop = CancellationToken::new();
    let background = CancellationToken::new();

    let role_file = start_role_file(&args, &background)?;
    let (registry, management) = start_clusters(&args, role_file, upstream_opts, &background).await?;
    let ((listener, addr), (probe_listener, probe_addr)) = bind(&args).await?;

    authn.start(background.clone());
    if let IssuersFrom::File(path) = &required.issuers {
        spawn_authentication_reloader(
            &args,
            path.clone(),
            authn_bytes,
            authn.clone(),
            background.clone(),
        );
    }
    cert.spawn_reloader(args.tls_reload_interval, background.clone());

    let metrics = Arc::new(Metrics::new());
    let audit_stats = Arc::new(AuditStats::default());
    let audit = start_audit(&args, &audit_stats)?;

    let streams = Streams::default();
    let reviewer = args.token_passthrough.then(|| {
        let rates = ReviewRates {
            total: args.token_passthrough_reviews_per_second,
            per_client: args.token_passthrough_reviews_per_client,
        };
        TokenReviewer::new(
            args.token_passthrough_audiences.clone(),
            TOKEN_REVIEW_CACHE,
            rates,
        )
    });
    let proxy = Arc::new(Proxy {
        authn: authn.clone(),
        reviewer,
        clusters: registry.clone(),
        recorder: Recorder {
            access_log: access_log.clone(),
            audit: audit.clone(),
            metrics: metrics.clone(),
            format: args.log_format,
        },
        opts,
        streams: streams.clone(),
    });
    let shutting_down = Arc::new(AtomicBool::new(false));
    let render_metrics = probe::metrics_renderer(
        metrics.clone(),
        authn.clone(),
        registry.clone(),
        audit_stats.clone(),
    );
    let ready = probe::readiness(
        authn.clone(),
        registry.clone(),
        Instant::now(),
        args.cluster_ready_timeout,
        shutting_down.clone(),
    );
    let endpoints = probe::Endpoints {
        ready,
        metrics: render_metrics,
        clusters: probe::cluster_status(registry.clone(), management),
    };
    tokio::spawn(probe::serve(probe_listener, endpoints, background.clone()));

    let serve_opts = ServeOptions {
        http2_max_streams: args.http2_max_streams_per_connection,
        header_read_timeout: args.request_header_timeout,
        handshake_timeout: Duration::from_secs(10),
        upstream_header_timeout: args.upstream_response_header_timeout,
    };
    let server = tokio::spawn(server::serve(
        listener,
        TlsAcceptor::from(Arc::new(tls_config)),
        proxy,
        serve_opts,
        stop.clone(),
    ));
    tracing::info!(%addr, %probe_addr, clusters = ?registry.names(), "serving");

    let done = tokio::spawn(shutdown_sequence(Shutdown {
        stop: stop.clone(),
        shutting_down,
        server,
        streams,
        grace: args.shutdown_grace_period,
        audit,
        background,
        access_log: access_log.clone(),
    }));

    Ok(Running {
        addr,
        probe_addr,
        authn,
        clusters: registry,
        metrics,
        audit_stats,
        access_log,
        stop,
        done,
    })
}

/// Reviewed tokens remembered at once (`--token-passthrough`).
const TOKEN_REVIEW_CACHE: usize = 10_000;

/// The identity mode of clusters whose entry does not choose one.
fn default_identity(args: &Args) -> Identity {
    if args.impersonate_upstream {
        Identity::Impersonate
    } else if args.disable_impersonation {
        Identity::PassthroughUserToken
    } else {
        Identity::Credentials
    }
}

/// Loads the role file (empty without `--role-config`) and keeps it current.
fn start_role_file(
    args: &Args,
    background: &CancellationToken,
) -> Result<watch::Receiver<Arc<RoleFile>>, StartError> {
    let Some(path) = &args.role_config else {
        return Ok(watch::channel(Arc::new(RoleFile::default())).1);
    };
    let (loaded, bytes) = role_file::load_with_bytes(path).map_err(crate::config::ConfigError::from)?;
    let (tx, rx) = watch::channel(Arc::new(loaded));
    role_file::spawn_reloader(
        path.clone(),
        bytes,
        args.config_reload_interval,
        tx,
        background.clone(),
    );
    Ok(rx)
}

/// The clusters the proxy serves: the clusters file's (re-read when it or a kubeconfig it
/// names changes), then the management cluster's Secret and role resources, which never hold
/// start-up back.
async fn start_clusters(
    args: &Args,
    role_file: watch::Receiver<Arc<RoleFile>>,
    upstream_opts: UpstreamOptions,
    background: &CancellationToken,
) -> Result<(Arc<Registry>, Option<Arc<management::Status>>), StartError> {
    let (policy_tx, policy_rx) = watch::channel(Arc::new(CapiPolicy::default()));
    let registry = Arc::new(
        Registry::new(role_file, policy_rx, upstream_opts, background.clone())
            .with_default_identity(default_identity(args))
            .with_secret_user_tokens(args.allow_user_tokens_to_secret_clusters),
    );
    if let Some(path) = &args.clusters_config {
        // Taken before the load: a change made in between is seen at the first check.
        let initial = crate::cluster::clusters_file_print(path);
        let loaded = clusters::load(path)?;
        registry.sync_file(path, loaded).await;
        registry.watch_file(
            path.clone(),
            initial,
            args.config_reload_interval,
            background.clone(),
        );
    }
    let settings = management::Settings {
        kubeconfig: args.management_kubeconfig.as_ref().map(std::path::PathBuf::from),
        secret_name: args.secret_name.clone(),
        secret_namespace: args.secret_namespace.clone(),
    };
    let management = management::connect(&settings).await.map_err(StartError::Flags)?;
    if let Some(m) = &management {
        m.spawn(registry.clone(), policy_tx, background.clone());
    } else if registry.names().is_empty() {
        tracing::warn!("no clusters are configured; every request will get 404");
    }
    Ok((registry, management.map(|m| m.status)))
}

type Bound = (TcpListener, SocketAddr);

/// Binds the serving port and the probe port (either may be 0: the bound address says which).
async fn bind(args: &Args) -> Result<(Bound, Bound), StartError> {
    let listen = |addr: SocketAddr| async move {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| StartError::Listen { addr, source })?;
        let bound = listener
            .local_addr()
            .map_err(|source| StartError::Listen { addr, source })?;
        Ok::<_, StartError>((listener, bound))
    };
    let serving = listen(SocketAddr::new(args.bind_address, args.secure_port)).await?;
    let probes = listen(SocketAddr::new(args.bind_address, args.readiness_probe_port)).await?;
    Ok((serving, probes))
}

/// What the shutdown sequence stops, in order.
struct Shutdown {
    stop: CancellationToken,
    shutting_down: Arc<AtomicBool>,
    server: tokio::task::JoinHandle<server::Connections>,
    streams: Streams,
    grace: Duration,
    audit: Option<AuditHandle>,
    background: CancellationToken,
    access_log: Arc<dyn Sink>,
}

/// On `stop`: readiness turns 503, the listener closes, in-flight requests and streams get
/// `grace` to finish, then streams are closed; queued audit events get 5 s; background tasks
/// stop; the last access lines are flushed.
async fn shutdown_sequence(s: Shutdown) {
    s.stop.cancelled().await;
    s.shutting_down.store(true, Ordering::Release);
    let connections = match s.server.await {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "listener task failed");
            return;
        }
    };
    tracing::info!(grace = ?s.grace, "shutting down: finishing in-flight requests");
    s.streams.tracker.close();
    let drained = tokio::time::timeout(s.grace, async {
        connections.shutdown().await;
        s.streams.tracker.wait().await;
    })
    .await;
    if drained.is_err() {
        tracing::info!("shutdown deadline reached: closing remaining streams");
        s.streams.close.cancel();
        connections.drop_all();
        let _ = tokio::time::timeout(Duration::from_secs(2), s.streams.tracker.wait()).await;
    }
    if let Some(audit) = s.audit {
        let unsent = audit.shutdown(Duration::from_secs(5)).await;
        if unsent > 0 {
            tracing::warn!(unsent, "audit events could not be delivered before exit");
        }
    }
    s.background.cancel();
    // The last access lines are out before the process exits.
    let log = s.access_log;
    let _ = tokio::task::spawn_blocking(move || log.flush()).await;
    tracing::info!("stopped");
}

/// The trusted issuers: the `--oidc-*` flags' one, or every `jwt` entry of
/// `--authentication-config`.
/// `loaded`: the authentication config's bytes as parsed, for its reloader.
fn issuers(
    args: &Args,
    from: &IssuersFrom,
    loaded: &mut Option<Vec<u8>>,
) -> Result<Arc<Issuers>, StartError> {
    let list = match from {
        IssuersFrom::Flags {
            issuer_url,
            client_id,
        } => {
            vec![authenticator(args, issuer_url.clone(), client_id.clone())?]
        }
        IssuersFrom::File(path) => {
            let (cfg, bytes) = crate::config::authentication::load_with_bytes(path)?;
            *loaded = Some(bytes);
            if cfg.jwt.is_empty() {
                tracing::warn!(file = %path.display(), "the authentication config names no issuer: every token is refused until one is added");
            }
            file_issuers(args, &cfg)?
        }
    };
    let route_by_iss = matches!(from, IssuersFrom::File(_));
    Ok(Issuers::new(list, args.token_cache_size, route_by_iss))
}

/// One authenticator per `jwt` entry of an authentication config.
fn file_issuers(
    args: &Args,
    cfg: &crate::config::authentication::AuthenticationConfig,
) -> Result<Vec<Arc<Authenticator>>, crate::authn::AuthnError> {
    cfg.jwt
        .iter()
        .map(|j| {
            Authenticator::new(OidcConfig {
                issuer_url: j.url.clone(),
                discovery_url: j.discovery_url.clone(),
                audiences: j.audiences.clone(),
                ca_pem: j.ca_pem.clone(),
                signing_algs: ALL_SIGNING_ALGS.to_vec(),
                mapping: Mapping::Rules(j.rules.clone()),
                refresh_interval: args.oidc_jwks_refresh_interval.max(Duration::from_secs(1)),
                min_refetch_interval: args.oidc_jwks_min_refetch_interval,
                fingerprint: j.fingerprint,
            })
        })
        .collect()
}

/// Re-reads `--authentication-config` when it changes; a broken edit keeps the issuers in force
/// and says why.
fn spawn_authentication_reloader(
    args: &Args,
    path: std::path::PathBuf,
    initial: Option<Vec<u8>>,
    authn: Arc<Issuers>,
    cancel: CancellationToken,
) {
    let args = args.clone();
    crate::config::authentication::spawn_reloader(
        path,
        initial,
        args.config_reload_interval,
        cancel,
        move |cfg| {
            file_issuers(&args, &cfg)
                .map(|list| authn.replace(list))
                .map_err(|e| e.to_string())
        },
    );
}

/// OIDC from the `--oidc-*` flags.
fn authenticator(
    args: &Args,
    issuer_url: String,
    client_id: String,
) -> Result<Arc<Authenticator>, StartError> {
    if args.oidc_username_claim != "email" && args.username_prefix().is_empty() {
        tracing::warn!(
            claim = %args.oidc_username_claim,
            "user names come from a claim other than email with no --oidc-username-prefix: a \
             token's name can equal a User subject that a cluster's RBAC meant for another \
             authenticator (a client certificate's CN, a static token). Set a prefix such as \
             --oidc-username-prefix=oidc: and name users with it in RBAC"
        );
    }
    let ca_pem = match &args.oidc_ca_file {
        Some(p) => Some(
            std::fs::read(p)
                .map_err(|e| StartError::Flags(format!("--oidc-ca-file {}: {e}", p.display())))?,
        ),
        None => None,
    };
    Ok(Authenticator::new(OidcConfig {
        issuer_url,
        discovery_url: None,
        audiences: vec![client_id],
        ca_pem,
        signing_algs: parse_signing_algs(&args.oidc_signing_algs)?,
        mapping: Mapping::Flags(ClaimMapping {
            username_claim: args.oidc_username_claim.clone(),
            username_prefix: args.username_prefix().to_string(),
            groups_claim: args.oidc_groups_claim.clone(),
            groups_prefix: args.oidc_groups_prefix.clone(),
            required_claims: args.oidc_required_claim.clone(),
        }),
        refresh_interval: args.oidc_jwks_refresh_interval.max(Duration::from_secs(1)),
        min_refetch_interval: args.oidc_jwks_min_refetch_interval,
        fingerprint: 0,
    })?)
}

/// The request path's switches and limits from flags.
fn proxy_options(args: &Args) -> Result<ProxyOptions, StartError> {
    let trusted_proxies = TrustedProxies::parse(&args.trusted_proxies).map_err(StartError::Flags)?;
    let (identity_names, identity_prefixes) = args.identity_headers();
    let identity_headers = IdentityHeaders::with(&identity_names, &identity_prefixes)
        .map_err(|e| StartError::Flags(format!("--requestheader-*: {e}")))?;
    tracing::debug!(headers = ?identity_headers.describe(), "identity headers stripped from every request");
    Ok(ProxyOptions {
        trusted_proxies,
        extra_user_headers: args.extra_user_headers.clone(),
        extra_user_header_client_ip: args.extra_user_header_client_ip,
        audit_max_body: args.audit_max_body_bytes,
        identity_headers,
        limits: UserLimits::new(
            args.max_requests_inflight_per_user,
            args.max_long_running_requests_per_user,
        ),
        body_timeout: args.request_body_timeout,
        max_request_body: usize::try_from(args.max_request_body_bytes).unwrap_or(usize::MAX),
        cluster_host_suffix: args.cluster_host_suffix.clone(),
        allow_csr_as_proxy: args.allow_csr_as_proxy,
        ..ProxyOptions::default()
    })
}

/// The audit webhook sender, when `--audit-webhook-server` is set.
fn start_audit(args: &Args, stats: &Arc<AuditStats>) -> Result<Option<AuditHandle>, StartError> {
    let Some(url) = args.audit_webhook_server.as_deref().filter(|s| !s.is_empty()) else {
        return Ok(None);
    };
    let mut cfg = WebhookConfig::new(url);
    cfg.ca_file = args.audit_webhook_ca_file.clone();
    cfg.client_cert_file = args.audit_webhook_client_cert_file.clone();
    cfg.client_key_file = args.audit_webhook_client_key_file.clone();
    cfg.bearer_token_file = args.audit_webhook_token_file.clone();
    cfg.queue_size = args.audit_webhook_queue_size;
    cfg.batch_max = usize::try_from(args.audit_webhook_batch_max).unwrap_or(1);
    cfg.batch_wait = args.audit_webhook_batch_max_wait;
    let (handle, _task) = AuditSender::start(cfg, stats.clone())?;
    Ok(Some(handle))
}
