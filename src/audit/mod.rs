//! What the proxy records about each decision.

pub mod access_log;
pub mod line_writer;
pub mod webhook;
