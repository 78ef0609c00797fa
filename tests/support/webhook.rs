//! An audit webhook receiver (plain HTTP on loopback) that records every event and can be
//! told to stall or to fail.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::Value;

use super::{Body, bind_local, full};

#[derive(Default)]
struct State {
    events: Mutex<Vec<(String, Option<String>, Value)>>,
    stall: AtomicBool,
    fail_next: AtomicUsize,
}

pub struct Receiver {
    pub url: String,
    state: Arc<State>,
}

pub async fn receiver() -> Receiver {
    let listener = bind_local().await;
    let url = format!("http://{}", listener.local_addr().unwrap());
    let state = Arc::new(State::default());
    let st = state.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let st = st.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<Incoming>| {
                    let st = st.clone();
                    async move { Ok::<_, std::convert::Infallible>(handle(st, req).await) }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    Receiver { url, state }
}

async fn handle(st: Arc<State>, req: Request<Incoming>) -> Response<Body> {
    while st.stall.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let path = req.uri().path().to_string();
    let auth = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    if st.fail_next.load(Ordering::SeqCst) > 0 {
        st.fail_next.fetch_sub(1, Ordering::SeqCst);
        return Response::builder().status(500).body(full("boom")).unwrap();
    }
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    st.events.lock().unwrap().push((path, auth, v));
    Response::builder().status(200).body(full("ok")).unwrap()
}

impl Receiver {
    /// (path, authorization header, event) of every event received.
    pub fn events(&self) -> Vec<(String, Option<String>, Value)> {
        self.state.events.lock().unwrap().clone()
    }
    pub fn stall(&self, on: bool) {
        self.state.stall.store(on, Ordering::SeqCst);
    }
    pub fn fail_next(&self, n: usize) {
        self.state.fail_next.store(n, Ordering::SeqCst);
    }
}
