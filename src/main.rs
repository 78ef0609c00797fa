use clap::{CommandFactory, FromArgMatches};
use kube_oidc_proxy::{
    authz::default_roles::mirror_manifests,
    cli::{Args, Command},
    logging,
};

/// `--version`: the crate version, the commit and its date (see build.rs).
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("KOP_GIT_COMMIT"),
    ", build date ",
    env!("KOP_BUILD_DATE"),
    ")"
);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let matches = Args::command().version(VERSION).get_matches();
    let args = Args::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    if let Some(Command::PrintRbac { cluster, namespaces }) = &args.command {
        if let Some(problem) = kube_oidc_proxy::config::cluster_name_problem(cluster) {
            eprintln!("error: --cluster: {problem}");
            std::process::exit(2);
        }
        print!("{}", mirror_manifests(cluster, namespaces));
        return Ok(());
    }
    if let Some(Command::Kubeconfig(k)) = &args.command {
        match kube_oidc_proxy::cli::kubeconfig::render(k) {
            Ok(text) => print!("{text}"),
            Err(e) => {
                eprintln!("error: {e}");
                std::process::exit(2);
            }
        }
        return Ok(());
    }
    logging::init(args.verbosity, args.log_format);
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();

    let running = match kube_oidc_proxy::start(args).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    };

    wait_for_signal().await;
    running.begin_shutdown();
    let access_log = running.access_log.clone();
    // A second signal means "now": skip the grace period.
    tokio::select! {
        _ = running.wait() => {}
        _ = wait_for_signal() => {
            eprintln!("second signal: exiting immediately");
            // Written access lines go out, but a stuck stdout must not hold the exit up.
            let (done, flushed) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                access_log.flush();
                let _ = done.send(());
            });
            let _ = flushed.recv_timeout(std::time::Duration::from_secs(2));
            std::process::exit(1);
        }
    }
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt()))
    else {
        // Without signal handlers the process can only be killed; keep serving.
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("received SIGTERM"),
        _ = int.recv() => tracing::info!("received SIGINT"),
    }
}
