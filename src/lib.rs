//! kube-oidc-proxy: one HTTPS endpoint in front of many Kubernetes clusters. See README.md for
//! the request path; `app::start` is where everything is put together.
#![forbid(unsafe_code)]

pub mod app;
pub mod audit;
pub mod authn;
pub mod authz;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod logging;
pub mod management;
pub mod metrics;
pub mod proxy;
pub mod server;
pub mod text;
pub mod tls;

pub use app::{Running, StartError, start, start_with_sink};
