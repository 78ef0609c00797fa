//! What the proxy records about each decision.

pub mod access_log;
pub mod webhook;
