//! Helpers shared by the integration tests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(dead_code)]

use std::future::Future;
use std::time::Duration;

use kube::Client;
use serde_json::Value;

/// Poll `f` until it returns `Some`, or fail after `secs` seconds.
pub async fn eventually<T, F, Fut>(secs: u64, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A raw request; returns (status code, JSON body).
pub async fn raw(
    client: &Client,
    method: &str,
    path: &str,
    body: Option<(&str, Value)>,
) -> (u16, Value) {
    let mut b = http::Request::builder().method(method).uri(path);
    let bytes = match body {
        Some((ct, v)) => {
            b = b.header("content-type", ct);
            v.to_string().into_bytes()
        }
        None => Vec::new(),
    };
    let req = b.body(bytes).unwrap();
    let resp = client
        .send(req.map(kube::client::Body::from))
        .await
        .unwrap();
    let code = resp.status().as_u16();
    let body = resp.into_body().collect_bytes().await.unwrap();
    let v = serde_json::from_slice(&body).unwrap_or(Value::Null);
    (code, v)
}

/// The status of a kube error.
pub fn api_err(e: kube::Error) -> Box<kube::core::Status> {
    match e {
        kube::Error::Api(s) => s,
        other => panic!("expected an API error, got {other:?}"),
    }
}
