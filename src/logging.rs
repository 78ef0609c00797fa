//! Operational logs: `tracing` to stderr, level from `-v` (klog style) unless RUST_LOG is set.
//! Access lines are not logs in this sense; they go to stdout (see `audit::access_log`).

use tracing_subscriber::EnvFilter;

pub fn filter_for(verbosity: u8) -> EnvFilter {
    if let Ok(f) = EnvFilter::try_from_env("RUST_LOG") {
        return f;
    }
    let directives = match verbosity {
        0 | 1 => "warn,kube_oidc_proxy=info",
        2 | 3 => "warn,kube_oidc_proxy=debug",
        4 | 5 => "info,kube_oidc_proxy=debug",
        _ => "debug,kube_oidc_proxy=trace",
    };
    EnvFilter::new(directives)
}

/// `json` gives one JSON object per line (for log pipelines); anything else plain text.
pub fn init(verbosity: u8, format: crate::audit::access_log::Format) {
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter_for(verbosity))
        .with_target(false);
    let _ = if format == crate::audit::access_log::Format::Json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init()
    } else {
        builder.try_init()
    };
}
