//! The body of a proxied response, passed through frame by frame, with the bookkeeping that must
//! last as long as the stream: the in-flight and watch gauges, and the request's metrics, which
//! are recorded when the stream ends (or the client goes away), not when headers are sent.

use std::{
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::{Duration, Instant},
};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use crate::metrics::{ClusterLabel, Decision, GaugeGuard, Metrics, Verb};

/// Recorded on drop: the request is over however it ended.
pub struct Finish {
    pub metrics: Arc<Metrics>,
    /// `None` for a request never routed to a cluster.
    pub cluster: Option<ClusterLabel>,
    pub verb: Verb,
    pub code: u16,
    pub decision: Decision,
    pub started: Instant,
    pub first_byte: Duration,
    pub guards: Vec<GaugeGuard>,
    /// The user's in-flight place, given back when the response ends.
    pub slot: Option<super::limits::UserSlot>,
}

impl Drop for Finish {
    fn drop(&mut self) {
        self.metrics.request_done(
            self.cluster.as_ref(),
            self.verb,
            self.code,
            self.decision,
            self.first_byte,
            self.started.elapsed(),
        );
    }
}

pub struct Observed {
    inner: Incoming,
    finish: Option<Finish>,
    /// For a long-running response (a watch, a log follow, a proxied stream): fires when the
    /// cluster it came through is removed or its credentials change, and the body then ends,
    /// as when the API server ends a watch (a clean end of the chunked body or HTTP/2 stream).
    ends: Option<Pin<Box<WaitForCancellationFutureOwned>>>,
}

impl Observed {
    pub fn new(inner: Incoming, finish: Finish) -> Self {
        Observed {
            inner,
            finish: Some(finish),
            ends: None,
        }
    }

    /// Ends the body when `token` fires (checked before every frame and woken by it).
    pub fn ending_with(mut self, token: CancellationToken) -> Self {
        self.ends = Some(Box::pin(token.cancelled_owned()));
        self
    }
}

impl Body for Observed {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        if let Some(ends) = self.ends.as_mut()
            && ends.as_mut().poll(cx).is_ready()
        {
            self.finish.take();
            return Poll::Ready(None);
        }
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(None) | Poll::Ready(Some(Err(_))) = &polled {
            self.finish.take();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.finish.is_none() || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
