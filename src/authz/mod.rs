//! Authorization: what a request asks for ([`request_info`]), Kubernetes RBAC evaluated inside
//! the proxy ([`rbac`]), the built-in roles ([`default_roles`]), the 403 wording
//! ([`forbidden`]), the self-reviews the proxy answers itself ([`reviews`]) and the
//! `--role-config` file ([`role_file`]), and the checks kube-apiserver makes with the
//! requester's identity inside its handlers ([`requester`], [`escalation`]). Everything here is
//! pure (no clocks, no locks); the only I/O is [`role_file::load`] reading its file.

pub mod default_roles;
pub mod escalation;
pub mod forbidden;
pub mod rbac;
pub mod request_info;
pub mod requester;
pub mod reviews;
pub mod role_file;
