//! Protocol upgrades (SPDY and WebSocket for exec, attach, port-forward): once both sides have
//! switched, bytes are copied both ways until either side closes. The proxy never parses the
//! framing; authorization already happened on the upgrade request.

use std::sync::Arc;

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

/// Upgraded streams outlive the request that opened them; they are tracked so shutdown can wait
/// for them and, at its deadline, close them.
#[derive(Clone, Default)]
pub struct Streams {
    pub tracker: TaskTracker,
    /// Fired at the shutdown deadline: every stream still open is closed.
    pub close: CancellationToken,
}

impl Streams {
    /// `guard` (the open-streams gauge, the user's in-flight place) is held for as long as the
    /// stream lives.
    pub fn splice(
        &self,
        client: OnUpgrade,
        server: OnUpgrade,
        cluster: Arc<str>,
        guard: impl Send + 'static,
    ) {
        let close = self.close.clone();
        self.tracker.spawn(async move {
            let _guard = guard;
            let (client, server) = match tokio::try_join!(client, server) {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::debug!(%cluster, error = %e, "upgrade did not complete");
                    return;
                }
            };
            let mut client = TokioIo::new(client);
            let mut server = TokioIo::new(server);
            tokio::select! {
                r = tokio::io::copy_bidirectional(&mut client, &mut server) => match r {
                    Ok((up, down)) => tracing::debug!(%cluster, up, down, "upgraded stream closed"),
                    Err(e) => tracing::debug!(%cluster, error = %e, "upgraded stream ended with an error"),
                },
                _ = close.cancelled() => tracing::debug!(%cluster, "upgraded stream closed by shutdown"),
            }
        });
    }
}
