//! Authorization: what a request asks for ([`request_info`]), Kubernetes RBAC evaluated inside
//! the proxy ([`rbac`]), the built-in roles ([`default_roles`]), the 403 wording
//! ([`forbidden`]), the self-reviews the proxy answers itself ([`reviews`]), and the checks
//! kube-apiserver makes with the requester's identity inside its handlers ([`requester`],
//! [`escalation`]). Everything here is pure: no clocks, no locks, no I/O (the role file that
//! feeds the engine is read by `crate::config::role_file`).

pub mod capi;
pub mod default_roles;
pub mod escalation;
pub mod forbidden;
pub mod rbac;
pub mod request_info;
pub mod requester;
pub mod reviews;
