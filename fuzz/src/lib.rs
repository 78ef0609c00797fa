//! The fuzz targets' bodies: one module per target, each with `run(input)`. `fuzz_targets/*`
//! hand them libFuzzer's input; the proxy's stable test suite replays `seeds/` (and every crash
//! input kept there) through the same functions (`tests/fuzz_seeds.rs`), so an input that once
//! crashed stays a test.

pub mod jws;
pub mod claims;
pub mod request_info;
pub mod self_review;
pub mod role_file;
pub mod clusters_file;
pub mod access_line;
pub mod headers;
pub mod authn_config;
pub mod h2_guard;
