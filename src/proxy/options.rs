//! Behaviour switches of the request path, from flags, and the limits it enforces.

use std::{sync::Arc, time::Duration};

use super::{
    headers::{IdentityHeaders, TrustedProxies},
    limits::UserLimits,
};

/// Checked writes held at once: each holds up to a 3 MiB body, a 3 MiB answer and its parse.
pub const MAX_CHECKED_WRITES: usize = 16;
/// Checked writes one user may have in flight.
pub const MAX_CHECKED_WRITES_PER_USER: u32 = 2;

#[derive(Clone)]
pub struct ProxyOptions {
    pub trusted_proxies: TrustedProxies,
    pub extra_user_headers: Vec<(String, String)>,
    pub extra_user_header_client_ip: bool,
    /// Largest JSON body copied into an audit event.
    pub audit_max_body: usize,
    /// Identity headers a client may never send upstream (front-proxy `X-Remote-*` and more).
    pub identity_headers: IdentityHeaders,
    /// Per-user in-flight limits.
    pub limits: UserLimits,
    /// The longest the proxy waits for a request body it reads itself.
    pub body_timeout: Duration,
    /// `--max-request-body-bytes`: the largest body of a write, as kube-apiserver's.
    pub max_request_body: usize,
    /// `--cluster-host-suffix`: a request to `<cluster><suffix>` goes to that cluster.
    pub cluster_host_suffix: Option<String>,
    /// Checked writes in flight at once, across all users: each holds its body, the dry run's
    /// answer and its parsed form.
    pub checked_writes: Arc<tokio::sync::Semaphore>,
    /// Checked writes one user may have in flight, so no one user holds every global place.
    pub checked_writes_per_user: UserLimits,
    /// `--allow-csr-as-proxy`: CSRs may be created with the proxy's credentials (recorded as
    /// the proxy's).
    pub allow_csr_as_proxy: bool,
}

impl Default for ProxyOptions {
    fn default() -> Self {
        ProxyOptions {
            trusted_proxies: TrustedProxies::default(),
            extra_user_headers: Vec::new(),
            extra_user_header_client_ip: false,
            audit_max_body: 0,
            identity_headers: IdentityHeaders::default(),
            limits: UserLimits::default(),
            body_timeout: Duration::from_secs(30),
            max_request_body: super::inspect::MAX_INSPECTED_BODY,
            cluster_host_suffix: None,
            checked_writes: Arc::new(tokio::sync::Semaphore::new(MAX_CHECKED_WRITES)),
            checked_writes_per_user: UserLimits::new(MAX_CHECKED_WRITES_PER_USER, 0),
            allow_csr_as_proxy: false,
        }
    }
}
