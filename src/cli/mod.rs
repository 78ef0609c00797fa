//! Command-line flags. Names and defaults follow the Go kube-oidc-proxy and kube-apiserver so
//! existing deployments keep their command lines; every flag can also come from the environment.

pub mod goflags;
pub mod kubeconfig;

use std::{net::IpAddr, path::PathBuf, time::Duration};

use clap::{ArgAction, Parser};

use goflags::{parse_bool, parse_duration, parse_key_value};

/// kube-oidc-proxy: one HTTPS endpoint in front of many Kubernetes clusters that authenticates
/// OIDC tokens, authorizes with RBAC held inside the proxy and forwards with each cluster's own
/// credentials.
#[derive(Parser, Debug, Clone)]
#[command(name = "kube-oidc-proxy", version, about, long_about = None)]
pub struct Args {
    // ---- clusters and roles
    /// YAML file listing the clusters: `clusters: [{name, kubeconfig}]`.
    #[arg(long, env = "KOP_CLUSTERS_CONFIG", help_heading = "Kube-OIDC-Proxy")]
    pub clusters_config: Option<PathBuf>,

    /// Multi-document YAML of Roles, ClusterRoles and bindings (with metadata.clusterName).
    #[arg(long, env = "KOP_ROLE_CONFIG", help_heading = "Kube-OIDC-Proxy")]
    pub role_config: Option<PathBuf>,

    /// How often --role-config is checked for changes.
    #[arg(long, default_value = "10s", value_parser = parse_duration, help_heading = "Kube-OIDC-Proxy")]
    pub config_reload_interval: Duration,

    /// How long /ready waits for a cluster's first RBAC snapshot before it stops holding the
    /// others back (the cluster still answers 503 until it loads).
    #[arg(long, default_value = "30s", value_parser = parse_duration, help_heading = "Kube-OIDC-Proxy")]
    pub cluster_ready_timeout: Duration,

    /// Plain-HTTP port for /ready and /live (0 picks a free port).
    #[arg(
        short = 'P',
        long,
        default_value_t = 8080,
        env = "KOP_READINESS_PROBE_PORT",
        help_heading = "Kube-OIDC-Proxy"
    )]
    pub readiness_probe_port: u16,

    /// Accepted for compatibility; responses are always flushed frame by frame, so watches and
    /// log follows are never delayed whatever this says.
    #[arg(long, default_value = "50ms", value_parser = parse_duration, help_heading = "Kube-OIDC-Proxy")]
    pub flush_interval: Duration,

    /// When OIDC authentication fails, ask the target cluster to review the token (TokenReview)
    /// and forward it unchanged if the cluster accepts it.
    #[arg(long, default_value = "false", value_parser = parse_bool, num_args = 0..=1,
          require_equals = true, default_missing_value = "true", action = ArgAction::Set,
          help_heading = "Kube-OIDC-Proxy")]
    pub token_passthrough: bool,

    /// Audiences sent in passthrough TokenReviews (empty: the API server's own).
    #[arg(long, value_delimiter = ',', help_heading = "Kube-OIDC-Proxy")]
    pub token_passthrough_audiences: Vec<String>,

    /// TokenReviews `--token-passthrough` may send per second in all (bursts of twice as many);
    /// a request that would need one more gets 429. Answers from the review cache do not count.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..),
          help_heading = "Kube-OIDC-Proxy")]
    pub token_passthrough_reviews_per_second: u32,

    /// TokenReviews `--token-passthrough` may send per second for one client address (the
    /// peer, or the last `X-Forwarded-For` entry from `--trusted-proxies`), bursts of twice as many.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..),
          help_heading = "Kube-OIDC-Proxy")]
    pub token_passthrough_reviews_per_client: u32,

    /// Send the user's own bearer token upstream and none of the proxy's credentials (default
    /// identity passthrough-user-token), for clusters that trust the same issuer.
    #[arg(long, default_value = "false", value_parser = parse_bool, num_args = 0..=1,
          require_equals = true, default_missing_value = "true", action = ArgAction::Set,
          help_heading = "Kube-OIDC-Proxy")]
    pub disable_impersonation: bool,

    /// Forward as the authenticated user with Impersonate-User/-Group/-Uid/-Extra-* headers
    /// (the cluster identity must be allowed to impersonate).
    #[arg(long, default_value = "false", value_parser = parse_bool, num_args = 0..=1,
          require_equals = true, default_missing_value = "true", action = ArgAction::Set,
          help_heading = "Kube-OIDC-Proxy")]
    pub impersonate_upstream: bool,

    /// With the proxy's own credentials (identity `credentials`), let users create
    /// CertificateSigningRequests, which kube-apiserver then records with the proxy as their
    /// requester (`spec.username`), so an approver sees the proxy where a person asked. Off by
    /// default: such writes are refused with 403; `--impersonate-upstream` records the person.
    #[arg(long, default_value = "false", value_parser = parse_bool, num_args = 0..=1,
          require_equals = true, default_missing_value = "true", action = ArgAction::Set,
          help_heading = "Kube-OIDC-Proxy")]
    pub allow_csr_as_proxy: bool,

    /// Extra user info `key=value` (repeatable, comma separated) added as Impersonate-Extra-*
    /// when impersonating upstream.
    #[arg(long, value_delimiter = ',', value_parser = parse_key_value, help_heading = "Kube-OIDC-Proxy")]
    pub extra_user_headers: Vec<(String, String)>,

    /// Add the client IP as extra user info `Remote-Client-IP` when impersonating upstream.
    #[arg(long, default_value = "false", value_parser = parse_bool, num_args = 0..=1,
          require_equals = true, default_missing_value = "true", action = ArgAction::Set,
          help_heading = "Kube-OIDC-Proxy")]
    pub extra_user_header_client_ip: bool,

    /// Let clusters from the kubeconfigs Secret use passthrough-user-token (annotation, or
    /// --disable-impersonation): whoever writes the Secret then receives users' tokens.
    #[arg(long, default_value = "false", value_parser = parse_bool, num_args = 0..=1,
          require_equals = true, default_missing_value = "true", action = ArgAction::Set,
          help_heading = "Kube-OIDC-Proxy")]
    pub allow_user_tokens_to_secret_clusters: bool,

    /// Kubeconfig of the management cluster (the kubeconfigs Secret and the role resources).
    /// Without it: KUBECONFIG, else the in-cluster service account, else none. Empty: none.
    #[arg(long, help_heading = "Kube-OIDC-Proxy")]
    pub management_kubeconfig: Option<String>,

    /// Namespace of the Secret holding dynamic cluster kubeconfigs (default: the proxy's own
    /// namespace in-cluster, else kube-oidc-proxy).
    #[arg(long, default_value = "", help_heading = "Kube-OIDC-Proxy")]
    pub secret_namespace: String,

    /// Name of the Secret holding dynamic cluster kubeconfigs (one data key per cluster).
    #[arg(
        long,
        default_value = "kube-oidc-proxy-kubeconfigs",
        help_heading = "Kube-OIDC-Proxy"
    )]
    pub secret_name: String,

    // ---- OIDC
    /// kube-apiserver's AuthenticationConfiguration file (apiserver.config.k8s.io/v1): several
    /// JWT issuers with claim rules, mappings and user rules in CEL. Re-read when it changes
    /// (a broken edit keeps the last good version). Excludes the --oidc-* issuer and claim flags.
    #[arg(long, env = "KOP_AUTHENTICATION_CONFIG", help_heading = "OIDC")]
    pub authentication_config: Option<PathBuf>,

    /// Issuer URL (https); discovery is read from <url>/.well-known/openid-configuration.
    #[arg(long, env = "KOP_OIDC_ISSUER_URL", help_heading = "OIDC")]
    pub oidc_issuer_url: Option<String>,

    /// Client ID; tokens must carry it in `aud`.
    #[arg(long, env = "KOP_OIDC_CLIENT_ID", help_heading = "OIDC")]
    pub oidc_client_id: Option<String>,

    /// PEM bundle trusted for the issuer (default: the system roots).
    #[arg(long, env = "KOP_OIDC_CA_FILE", help_heading = "OIDC")]
    pub oidc_ca_file: Option<PathBuf>,

    /// Allowed signing algorithms (RS256/384/512, ES256/384, PS256/384/512).
    #[arg(long, value_delimiter = ',', default_value = "RS256", help_heading = "OIDC")]
    pub oidc_signing_algs: Vec<String>,

    /// Claim holding the user name.
    #[arg(long, default_value = "sub", help_heading = "OIDC")]
    pub oidc_username_claim: String,

    /// Prefix put in front of user names; empty or `-` means none.
    #[arg(long, default_value = "", help_heading = "OIDC")]
    pub oidc_username_prefix: String,

    /// Claim holding the groups (a string or a list of strings).
    #[arg(long, default_value = "groups", help_heading = "OIDC")]
    pub oidc_groups_claim: String,

    /// Prefix put in front of every group.
    #[arg(long, default_value = "", help_heading = "OIDC")]
    pub oidc_groups_prefix: String,

    /// `key=value` that every token must carry as a string claim (repeatable).
    #[arg(long, value_parser = parse_key_value, action = ArgAction::Append, help_heading = "OIDC")]
    pub oidc_required_claim: Vec<(String, String)>,

    /// How often the issuer's keys are re-read even without an unknown `kid`.
    #[arg(long, default_value = "1h", value_parser = parse_duration, help_heading = "OIDC")]
    pub oidc_jwks_refresh_interval: Duration,

    /// Shortest time between two key fetches caused by tokens with an unknown `kid`.
    #[arg(long, default_value = "10s", value_parser = parse_duration, help_heading = "OIDC")]
    pub oidc_jwks_min_refetch_interval: Duration,

    /// Verified tokens kept in memory (0 disables the cache).
    #[arg(long, default_value_t = 10_000, help_heading = "OIDC")]
    pub token_cache_size: usize,

    // ---- Secure serving
    /// Address to serve HTTPS on.
    #[arg(long, default_value = "0.0.0.0", help_heading = "Secure Serving")]
    pub bind_address: IpAddr,

    /// HTTPS port (0 picks a free port).
    #[arg(long, default_value_t = 6443, help_heading = "Secure Serving")]
    pub secure_port: u16,

    /// Serving certificate (PEM, may include the chain); re-read when it changes.
    #[arg(long, env = "KOP_TLS_CERT_FILE", help_heading = "Secure Serving")]
    pub tls_cert_file: Option<PathBuf>,

    /// Serving private key (PEM); re-read when it changes.
    #[arg(long, env = "KOP_TLS_PRIVATE_KEY_FILE", help_heading = "Secure Serving")]
    pub tls_private_key_file: Option<PathBuf>,

    /// Minimum TLS version: VersionTLS12 or VersionTLS13.
    #[arg(long, default_value = "VersionTLS12", value_parser = parse_tls_version, help_heading = "Secure Serving")]
    pub tls_min_version: crate::server::tls::TlsVersion,

    /// Comma-separated cipher suites (Go/IANA names) allowed for TLS 1.2; default: all secure ones.
    #[arg(long, value_delimiter = ',', help_heading = "Secure Serving")]
    pub tls_cipher_suites: Vec<String>,

    /// How often the serving certificate files are checked for changes.
    #[arg(long, default_value = "10s", value_parser = parse_duration, help_heading = "Secure Serving")]
    pub tls_reload_interval: Duration,

    /// Concurrent HTTP/2 streams per client connection (0: 1000, so many watches fit).
    #[arg(long, default_value_t = 0, help_heading = "Secure Serving")]
    pub http2_max_streams_per_connection: u32,

    /// Time a client has to send its request headers (0: no limit).
    #[arg(long, default_value = "30s", value_parser = parse_duration, help_heading = "Secure Serving")]
    pub request_header_timeout: Duration,

    /// On SIGTERM, how long in-flight requests may finish before streams are closed.
    #[arg(long, default_value = "60s", value_parser = parse_duration, help_heading = "Secure Serving")]
    pub shutdown_grace_period: Duration,

    /// Peers (IPs or CIDRs, comma separated) whose X-Forwarded-For is believed.
    #[arg(long, value_delimiter = ',', help_heading = "Secure Serving")]
    pub trusted_proxies: Vec<String>,

    /// Most requests one user may have in flight (0: no limit); long-running ones are counted
    /// apart. Beyond it: 429 with Retry-After.
    #[arg(long, default_value_t = 200, help_heading = "Secure Serving")]
    pub max_requests_inflight_per_user: u32,

    /// Most long-running requests (watch, logs, exec, attach, port-forward, proxy) one user may
    /// have open (0: no limit).
    #[arg(long, default_value_t = 1000, help_heading = "Secure Serving")]
    pub max_long_running_requests_per_user: u32,

    /// The longest the proxy waits for a request body it has to read itself (audit, checked
    /// writes, self-reviews).
    #[arg(long, default_value = "30s", value_parser = parse_duration, help_heading = "Secure Serving")]
    pub request_body_timeout: Duration,

    /// Largest body of a write (create, update, patch, delete) the proxy forwards, as
    /// kube-apiserver's flag of the same name: one that declares more is refused with 413
    /// before any of it is read, and one the proxy reads itself stops at this size.
    #[arg(long, default_value_t = 3 << 20, value_parser = clap::value_parser!(u64).range(1024..=(1 << 30)), help_heading = "Secure Serving")]
    pub max_request_body_bytes: u64,

    /// Also route by host name: a request to `<cluster><suffix>` (suffix `.proxy.example.com`:
    /// `https://k8s.proxy.example.com/api/...`) goes to that cluster with no path prefix, for
    /// tools that drop the server URL's path. The serving certificate must cover the names
    /// (a wildcard `*.proxy.example.com`, or one name per cluster).
    #[arg(long, help_heading = "Secure Serving", value_parser = parse_host_suffix)]
    pub cluster_host_suffix: Option<String>,

    /// More user-name headers to strip from every request, as configured on the clusters'
    /// request-header authenticators (X-Remote-User is always stripped).
    #[arg(long, value_delimiter = ',', help_heading = "Secure Serving")]
    pub requestheader_username_headers: Vec<String>,

    /// More group headers to strip (X-Remote-Group is always stripped).
    #[arg(long, value_delimiter = ',', help_heading = "Secure Serving")]
    pub requestheader_group_headers: Vec<String>,

    /// More UID headers to strip (X-Remote-Uid is always stripped).
    #[arg(long, value_delimiter = ',', help_heading = "Secure Serving")]
    pub requestheader_uid_headers: Vec<String>,

    /// More extra-header prefixes to strip (X-Remote-Extra- is always stripped).
    #[arg(long, value_delimiter = ',', help_heading = "Secure Serving")]
    pub requestheader_extra_headers_prefix: Vec<String>,

    // ---- Upstream
    /// TCP connect timeout towards cluster API servers.
    #[arg(long, default_value = "10s", value_parser = parse_duration, help_heading = "Upstream")]
    pub upstream_connect_timeout: Duration,

    /// TLS handshake timeout towards cluster API servers.
    #[arg(long, default_value = "10s", value_parser = parse_duration, help_heading = "Upstream")]
    pub upstream_tls_handshake_timeout: Duration,

    /// Longest wait for an API server's response headers (0: none). Streams are never timed
    /// out once their headers arrived.
    #[arg(long, default_value = "60s", value_parser = parse_duration, help_heading = "Upstream")]
    pub upstream_response_header_timeout: Duration,

    // ---- Audit
    /// Base URL of the audit webhook (events go to <url>/api/v1/k8s-audit-log/webhook).
    #[arg(long, env = "KOP_AUDIT_WEBHOOK_SERVER", help_heading = "Audit")]
    pub audit_webhook_server: Option<String>,

    /// CA bundle trusted for an https audit webhook (default: system roots).
    #[arg(long, help_heading = "Audit")]
    pub audit_webhook_ca_file: Option<PathBuf>,

    /// Client certificate (PEM) presented to the audit webhook.
    #[arg(long, help_heading = "Audit")]
    pub audit_webhook_client_cert_file: Option<PathBuf>,

    /// Key of --audit-webhook-client-cert-file.
    #[arg(long, help_heading = "Audit")]
    pub audit_webhook_client_key_file: Option<PathBuf>,

    /// File holding a bearer token for the audit webhook (re-read every minute).
    #[arg(long, help_heading = "Audit")]
    pub audit_webhook_token_file: Option<PathBuf>,

    /// Events held while the webhook is slow or down; beyond this they are dropped and counted.
    #[arg(long, default_value_t = 4096, help_heading = "Audit")]
    pub audit_webhook_queue_size: usize,

    /// Events per POST to the audit webhook. 1: each event is one JSON object, as the Go proxy
    /// sent it. Above 1: each POST is a JSON array of up to this many events (whatever is queued
    /// when a delivery slot frees, and what comes within --audit-webhook-batch-max-wait), for
    /// receivers that accept arrays.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=1024), help_heading = "Audit")]
    pub audit_webhook_batch_max: u64,

    /// With --audit-webhook-batch-max above 1: how long a batch that is not full may wait for
    /// more events before it is posted (at most 10s). 0s: a batch is what is queued.
    #[arg(long, default_value = "0s", value_parser = parse_duration, help_heading = "Audit")]
    pub audit_webhook_batch_max_wait: std::time::Duration,

    /// Largest JSON request body copied into an audit event (larger ones are marked omitted).
    #[arg(long, default_value_t = 16384, help_heading = "Audit")]
    pub audit_max_body_bytes: usize,

    // ---- Misc
    /// Log format for access lines and operational logs: text or json.
    #[arg(long, value_enum, default_value = "text", help_heading = "Misc")]
    pub log_format: crate::audit::access_log::Format,

    /// Log verbosity (klog style): 0 info, 2 debug for the proxy, 4 debug for everything, 6 trace.
    #[arg(short = 'v', long = "v", default_value_t = 0, help_heading = "Misc")]
    pub verbosity: u8,

    #[command(subcommand)]
    pub command: Option<Command>,
}

/// `--tls-min-version`: Go's names; empty means the default, as in the Go proxy (a template with
/// an empty value must keep working).
fn parse_tls_version(s: &str) -> Result<crate::server::tls::TlsVersion, String> {
    use clap::ValueEnum;
    if s.is_empty() {
        return Ok(crate::server::tls::TlsVersion::Tls12);
    }
    crate::server::tls::TlsVersion::from_str(s, false)
        .map_err(|_| format!("{s:?} is not one of VersionTLS12, VersionTLS13"))
}

/// Tools that print something and exit instead of serving.
#[derive(clap::Subcommand, Debug, Clone)]
pub enum Command {
    /// Print, for one cluster, ClusterRoles and bindings that grant in the cluster what the
    /// built-in roles grant through the proxy: apply them to a cluster served with
    /// --impersonate-upstream, where kube-apiserver decides for the real user.
    PrintRbac {
        /// The cluster's name in the proxy (the `C` of groups `C:R` and `C:R:N`).
        #[arg(long)]
        cluster: String,
        /// Namespaces whose `C:R:N` groups get RoleBindings (repeatable or comma-separated).
        #[arg(long = "namespace", value_delimiter = ',')]
        namespaces: Vec<String>,
    },
    /// Print a kubeconfig for users: one cluster and context per served cluster at
    /// https://<proxy>/<cluster>, the proxy's CA, and a kubelogin user for the issuer.
    Kubeconfig(kubeconfig::KubeconfigArgs),
}

/// The flags start-up cannot do without, once [`Args::validate`] has checked them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Required {
    pub issuers: IssuersFrom,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

/// Where the trusted issuers come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IssuersFrom {
    /// `--oidc-issuer-url` and `--oidc-client-id` (and the other `--oidc-*` flags).
    Flags { issuer_url: String, client_id: String },
    /// `--authentication-config`.
    File(PathBuf),
}

impl Args {
    /// Checks what clap cannot: required flags given and non-empty, no contradicting flags.
    /// The message names the flags at fault.
    pub fn validate(&self) -> Result<Required, String> {
        let given = |v: &Option<String>| v.clone().filter(|s| !s.is_empty());
        let issuers = match &self.authentication_config {
            Some(path) if !path.as_os_str().is_empty() => {
                let set = self.oidc_flags_set();
                if !set.is_empty() {
                    return Err(format!(
                        "--authentication-config and the --oidc-* flags are mutually exclusive (given: {})",
                        set.join(", ")
                    ));
                }
                IssuersFrom::File(path.clone())
            }
            _ => {
                let (Some(issuer_url), Some(client_id)) =
                    (given(&self.oidc_issuer_url), given(&self.oidc_client_id))
                else {
                    return Err(
                        "--oidc-issuer-url and --oidc-client-id are required (or --authentication-config)"
                            .into(),
                    );
                };
                IssuersFrom::Flags {
                    issuer_url,
                    client_id,
                }
            }
        };
        let (Some(cert_file), Some(key_file)) = (&self.tls_cert_file, &self.tls_private_key_file) else {
            return Err("--tls-cert-file and --tls-private-key-file are required".into());
        };
        if self.impersonate_upstream && self.disable_impersonation {
            return Err("--impersonate-upstream and --disable-impersonation contradict each other: \
                 the first sends the proxy's credentials impersonating the user, the second the user's own token"
                .into());
        }
        if self.disable_impersonation
            && (self.extra_user_header_client_ip || !self.extra_user_headers.is_empty())
        {
            return Err(
                "--extra-user-headers and --extra-user-header-client-ip need impersonation: with \
                 --disable-impersonation the user's own token goes upstream and nothing can be added to it"
                    .into(),
            );
        }
        if self.secure_port != 0 && self.secure_port == self.readiness_probe_port {
            return Err(format!(
                "--secure-port {} is also the readiness probe port",
                self.secure_port
            ));
        }
        Ok(Required {
            issuers,
            cert_file: cert_file.clone(),
            key_file: key_file.clone(),
        })
    }

    /// Every identity header name and prefix to strip, beyond the built-in `X-Remote-*`.
    pub fn identity_headers(&self) -> (Vec<String>, Vec<String>) {
        let names = [
            &self.requestheader_username_headers,
            &self.requestheader_group_headers,
            &self.requestheader_uid_headers,
        ]
        .into_iter()
        .flatten()
        .cloned()
        .collect();
        (names, self.requestheader_extra_headers_prefix.clone())
    }

    /// The `--oidc-*` flags that describe an issuer or its claims and were given a value other
    /// than their default: kube-apiserver refuses them next to an authentication config.
    fn oidc_flags_set(&self) -> Vec<&'static str> {
        let mut set = Vec::new();
        let mut check = |name, given: bool| {
            if given {
                set.push(name);
            }
        };
        check(
            "--oidc-issuer-url",
            self.oidc_issuer_url.as_ref().is_some_and(|s| !s.is_empty()),
        );
        check(
            "--oidc-client-id",
            self.oidc_client_id.as_ref().is_some_and(|s| !s.is_empty()),
        );
        check("--oidc-ca-file", self.oidc_ca_file.is_some());
        check("--oidc-signing-algs", self.oidc_signing_algs != ["RS256"]);
        check("--oidc-username-claim", self.oidc_username_claim != "sub");
        check("--oidc-username-prefix", !self.oidc_username_prefix.is_empty());
        check("--oidc-groups-claim", self.oidc_groups_claim != "groups");
        check("--oidc-groups-prefix", !self.oidc_groups_prefix.is_empty());
        check("--oidc-required-claim", !self.oidc_required_claim.is_empty());
        set
    }

    /// True when the username prefix flag means "no prefix".
    pub fn username_prefix(&self) -> &str {
        match self.oidc_username_prefix.as_str() {
            "-" => "",
            p => p,
        }
    }
}

/// `--cluster-host-suffix`: a DNS suffix starting with a dot (`.proxy.example.com`).
pub(crate) fn parse_host_suffix(s: &str) -> Result<String, String> {
    let ok = s.len() > 1
        && s.starts_with('.')
        && s[1..]
            .split('.')
            .all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
    if ok {
        Ok(s.to_ascii_lowercase())
    } else {
        Err(format!(
            "{s:?} must start with a dot and be a DNS suffix, like .proxy.example.com"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_host_suffix_is_a_dns_suffix_with_a_leading_dot() {
        assert_eq!(
            parse_host_suffix(".Proxy.example.com").unwrap(),
            ".proxy.example.com"
        );
        for bad in [
            "proxy.example.com",
            ".",
            "..example.com",
            ".a_b.com",
            ".proxy.example.com/x",
            "",
        ] {
            assert!(parse_host_suffix(bad).is_err(), "{bad}");
        }
    }

    fn parse(args: &[&str]) -> Result<Args, clap::Error> {
        Args::try_parse_from(std::iter::once("kube-oidc-proxy").chain(args.iter().copied()))
    }

    #[test]
    fn validation_names_the_flags_at_fault() {
        let base = [
            "--oidc-issuer-url=https://kc/realms/r",
            "--oidc-client-id=kube",
            "--tls-cert-file=c.pem",
            "--tls-private-key-file=k.pem",
        ];
        let ok = parse(&base).expect("parse").validate().expect("valid");
        assert_eq!(
            ok.issuers,
            IssuersFrom::Flags {
                issuer_url: "https://kc/realms/r".into(),
                client_id: "kube".into()
            }
        );
        assert_eq!(ok.key_file, PathBuf::from("k.pem"));
        let with = |extra: &[&str], drop: &str| {
            let args: Vec<&str> = base
                .iter()
                .copied()
                .filter(|a| !a.starts_with(drop) || drop.is_empty())
                .chain(extra.iter().copied())
                .collect();
            parse(&args).expect("parse").validate().expect_err("invalid")
        };
        assert!(with(&["--oidc-client-id="], "--oidc-client-id").contains("--oidc-client-id"));
        assert!(with(&[], "--tls-private-key-file").contains("--tls-private-key-file"));
        let both = with(&["--impersonate-upstream", "--disable-impersonation"], "");
        assert!(both.contains("contradict"), "{both}");
        let extra = with(&["--disable-impersonation", "--extra-user-header-client-ip"], "");
        assert!(extra.contains("--disable-impersonation"), "{extra}");
        let same = with(&["--secure-port=8080"], "");
        assert!(same.contains("--secure-port 8080"), "{same}");
    }

    #[test]
    fn defaults_match_the_go_proxy() {
        let a = parse(&[]).expect("defaults parse");
        assert_eq!(a.secure_port, 6443);
        assert_eq!(a.readiness_probe_port, 8080);
        assert_eq!(a.oidc_signing_algs, vec!["RS256"]);
        assert_eq!(a.oidc_username_claim, "sub");
        assert_eq!(a.oidc_groups_claim, "groups");
        assert_eq!(a.secret_name, "kube-oidc-proxy-kubeconfigs");
        assert_eq!(a.flush_interval, Duration::from_millis(50));
        assert!(!a.token_passthrough);
        assert_eq!(a.bind_address.to_string(), "0.0.0.0");
    }

    #[test]
    fn go_style_values() {
        let a = parse(&[
            "--token-passthrough",
            "--disable-impersonation=false",
            "--extra-user-header-client-ip=true",
            "--flush-interval=1m30s",
            "--oidc-signing-algs=RS256,ES256",
            "--oidc-required-claim=tenant=a=b",
            "--oidc-required-claim",
            "hd=example.com",
            "--extra-user-headers=a=1,b=2,a=3",
            "-v=4",
        ])
        .expect("parse");
        assert!(a.token_passthrough);
        assert!(!a.disable_impersonation);
        assert!(a.extra_user_header_client_ip);
        assert_eq!(a.flush_interval, Duration::from_secs(90));
        assert_eq!(a.oidc_signing_algs, vec!["RS256", "ES256"]);
        assert_eq!(
            a.oidc_required_claim,
            vec![
                ("tenant".into(), "a=b".into()),
                ("hd".into(), "example.com".into())
            ]
        );
        assert_eq!(a.extra_user_headers.len(), 3);
        assert_eq!(a.verbosity, 4);
    }

    #[test]
    fn an_authentication_config_excludes_the_oidc_flags() {
        let base = ["--tls-cert-file=c", "--tls-private-key-file=k"];
        let with = |extra: &[&str]| {
            let args: Vec<&str> = base.iter().chain(extra).copied().collect();
            parse(&args).expect("parse").validate()
        };
        let r = with(&["--authentication-config=authn.yaml"]).expect("valid");
        assert_eq!(r.issuers, IssuersFrom::File("authn.yaml".into()));
        // Proxy-wide settings of every issuer stay allowed.
        assert!(
            with(&[
                "--authentication-config=a",
                "--oidc-jwks-refresh-interval=5m",
                "--token-cache-size=5"
            ])
            .is_ok()
        );
        for flag in [
            "--oidc-issuer-url=https://kc",
            "--oidc-client-id=kube",
            "--oidc-ca-file=ca.pem",
            "--oidc-signing-algs=ES256",
            "--oidc-username-claim=email",
            "--oidc-username-prefix=oidc:",
            "--oidc-groups-claim=roles",
            "--oidc-groups-prefix=kc:",
            "--oidc-required-claim=a=b",
        ] {
            let e = with(&["--authentication-config=a", flag]).unwrap_err();
            let name = flag.split('=').next().unwrap();
            assert!(
                e.contains("mutually exclusive") && e.contains(name),
                "{flag}: {e}"
            );
        }
        let e = with(&[]).unwrap_err();
        assert!(
            e.contains("--oidc-issuer-url") && e.contains("--authentication-config"),
            "{e}"
        );
    }

    #[test]
    fn bad_values_are_refused() {
        assert!(parse(&["--token-passthrough=maybe"]).is_err());
        assert!(parse(&["--flush-interval=5"]).is_err());
        assert!(parse(&["--oidc-required-claim=novalue"]).is_err());
        assert!(parse(&["--secure-port=70000"]).is_err());
    }

    /// Formats and TLS versions are typed at parse time, with Go's names.
    #[test]
    fn value_enums() {
        use crate::{audit::access_log::Format, server::tls::TlsVersion};
        let a = parse(&[]).expect("defaults");
        assert_eq!(a.log_format, Format::Text);
        assert_eq!(a.tls_min_version, TlsVersion::Tls12);
        let a = parse(&["--log-format=json", "--tls-min-version=VersionTLS13"]).expect("parse");
        assert_eq!(a.log_format, Format::Json);
        assert_eq!(a.tls_min_version, TlsVersion::Tls13);
        // Named, so the Go proxy's values parse and are then refused with a reason.
        assert_eq!(
            parse(&["--tls-min-version=VersionTLS10"])
                .expect("parse")
                .tls_min_version,
            TlsVersion::Tls10
        );
        assert_eq!(
            parse(&["--tls-min-version="]).expect("parse").tls_min_version,
            TlsVersion::Tls12
        );
        assert!(parse(&["--log-format=xml"]).is_err());
        assert!(parse(&["--tls-min-version=TLS1.3"]).is_err());
    }

    #[test]
    fn dash_prefix_means_none() {
        let a = parse(&["--oidc-username-prefix=-"]).expect("parse");
        assert_eq!(a.username_prefix(), "");
        let a = parse(&["--oidc-username-prefix=oidc:"]).expect("parse");
        assert_eq!(a.username_prefix(), "oidc:");
    }
}
