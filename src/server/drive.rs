//! Open client connections and the two ways they end at shutdown: drained (asked to finish what
//! they serve, then close) and dropped (at the deadline).
//!
//! hyper-util's graceful watcher polls a watch channel, and a `select!` beside it a cancellation
//! token, every time a connection's task wakes: about 800 instructions per small GET, for signals
//! that fire once in the life of the process. [`drive`] registers the task with both signals'
//! tokens once and afterwards reads each signal's flag (one atomic load; a token's own check
//! takes its lock); a signal still wakes the task through that registration.

use std::{
    future::poll_fn,
    pin::pin,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    task::{Poll, Waker},
};

use hyper_util::server::graceful::GracefulConnection;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

/// A signal that fires once: a flag for the tasks that look at it on every wake, and a token
/// that wakes the ones waiting on it. The flag is set before the token is cancelled, so a task
/// woken by the token always sees it.
#[derive(Clone, Default)]
pub struct Signal {
    fired: Arc<AtomicBool>,
    token: CancellationToken,
}

impl Signal {
    pub fn fire(&self) {
        self.fired.store(true, Ordering::Release);
        self.token.cancel();
    }

    pub fn is_fired(&self) -> bool {
        self.fired.load(Ordering::Acquire)
    }
}

/// The open connections: their tasks, the signal that drains them and the one that drops them.
#[derive(Clone, Default)]
pub struct Connections {
    tracker: TaskTracker,
    drain: Signal,
    hard: Signal,
}

impl Connections {
    /// Runs a connection's task, counted until it ends.
    pub fn spawn<F>(&self, task: F) -> tokio::task::JoinHandle<()>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.tracker.spawn(task)
    }

    /// The signals a connection is driven with (see [`drive`]): drain, then drop.
    pub fn signals(&self) -> (Signal, Signal) {
        (self.drain.clone(), self.hard.clone())
    }

    /// Asks every connection to finish what it is serving and close (idle ones close at once),
    /// and waits until all have.
    pub async fn shutdown(&self) {
        self.drain.fire();
        self.tracker.close();
        self.tracker.wait().await;
    }

    /// Drops every connection still open (the shutdown deadline has passed).
    pub fn drop_all(&self) {
        self.hard.fire();
    }
}

/// Drives `conn` to its end: asked to shut down gracefully once `drain` fires, dropped (and
/// `Ok`) once `hard` does.
pub async fn drive<C: GracefulConnection>(conn: C, drain: &Signal, hard: &Signal) -> Result<(), C::Error> {
    let mut conn = pin!(conn);
    let mut drained = pin!(drain.token.cancelled());
    let mut dropped = pin!(hard.token.cancelled());
    // The waker the tokens hold; polled again only if the task's waker changes (a tokio task's
    // does not), since a registered token wakes the task when it is cancelled.
    let mut registered: Option<Waker> = None;
    let mut draining = false;
    poll_fn(|cx| {
        if registered.as_ref().is_none_or(|w| !w.will_wake(cx.waker())) {
            let _ = dropped.as_mut().poll(cx);
            let _ = drained.as_mut().poll(cx);
            registered = Some(cx.waker().clone());
        }
        if hard.is_fired() {
            return Poll::Ready(Ok(()));
        }
        if !draining && drain.is_fired() {
            draining = true;
            conn.as_mut().graceful_shutdown();
        }
        conn.as_mut().poll(cx)
    })
    .await
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// A hyper HTTP/1.1 connection over an in-memory pipe (GracefulConnection is sealed, so
    /// no fake can stand in), answering `/slow` after a minute and anything else at once.
    async fn served(conns: &Connections) -> (tokio::task::JoinHandle<()>, tokio::io::DuplexStream) {
        let (client, server) = tokio::io::duplex(4096);
        let builder =
            hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new()).http1_only();
        let (drain, hard) = conns.signals();
        let task = conns.spawn(async move {
            let svc = hyper::service::service_fn(|req: hyper::Request<hyper::body::Incoming>| async move {
                if req.uri().path() == "/slow" {
                    tokio::time::sleep(Duration::from_secs(60)).await;
                }
                Ok::<_, std::convert::Infallible>(hyper::Response::new(
                    http_body_util::Empty::<bytes::Bytes>::new(),
                ))
            });
            let conn = builder.serve_connection_with_upgrades(hyper_util::rt::TokioIo::new(server), svc);
            let _ = drive(conn.into_owned(), &drain, &hard).await;
        });
        (task, client)
    }

    #[tokio::test]
    async fn draining_closes_an_idle_connection_and_hard_drops_a_busy_one() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let conns = Connections::default();
        // An idle keep-alive connection, after one request.
        let (idle, mut client) = served(&conns).await;
        client
            .write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .expect("write");
        let mut buf = [0u8; 256];
        let n = client.read(&mut buf).await.expect("answer");
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
        // A connection serving a slow request: draining waits for it.
        let (busy, mut busy_client) = served(&conns).await;
        busy_client
            .write_all(b"GET /slow HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .expect("write");
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!idle.is_finished() && !busy.is_finished());

        let shutdown = tokio::spawn({
            let conns = conns.clone();
            async move { conns.shutdown().await }
        });
        tokio::time::timeout(Duration::from_secs(5), idle)
            .await
            .expect("the idle connection closes once draining starts")
            .expect("task");
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!shutdown.is_finished(), "waits for the busy connection");
        conns.drop_all();
        tokio::time::timeout(Duration::from_secs(5), busy)
            .await
            .expect("dropped at once when hard fires")
            .expect("task");
        tokio::time::timeout(Duration::from_secs(5), shutdown)
            .await
            .expect("shutdown ends when every connection has")
            .expect("task");
        drop(busy_client);
    }
}
