//! The two HTTP servers: event intake (`--events-addr`) and webhook receivers (`--receiverAddr`), with Flux's
//! limits: 3 MiB bodies, 256 KiB headers, 10s to read the headers, 30s to read the whole request.

pub mod dispatch;
pub mod events;
pub mod matching;
pub mod ratelimit;
pub mod receiver;

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use bytes::Bytes;
use http::HeaderMap;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;

/// The largest request body accepted (Flux: 3 MiB).
pub const MAX_REQUEST_SIZE_BYTES: usize = 3 * 1024 * 1024;
/// The largest request head accepted (Flux: 256 KiB); larger heads get 431.
pub const MAX_HEADER_BYTES: usize = 256 * 1024;
/// How long a client may take to send the request head.
pub const READ_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client may take to send the whole request.
pub const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// The body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// Over [`MAX_REQUEST_SIZE_BYTES`].
    #[error("request body exceeds the maximum size of {MAX_REQUEST_SIZE_BYTES} bytes")]
    TooLarge,
    /// The connection failed while reading.
    #[error("reading the request body failed: {0}")]
    Read(String),
    /// The client was too slow.
    #[error("reading the request body timed out")]
    Timeout,
}

/// Reads a body of at most [`MAX_REQUEST_SIZE_BYTES`] within [`READ_TIMEOUT`]; a declared `Content-Length` over
/// the cap is refused before reading.
pub async fn read_body(headers: &HeaderMap, body: Body) -> Result<Bytes, BodyError> {
    let declared = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_REQUEST_SIZE_BYTES as u64) {
        return Err(BodyError::TooLarge);
    }
    let limited = Limited::new(body, MAX_REQUEST_SIZE_BYTES);
    match tokio::time::timeout(READ_TIMEOUT, limited.collect()).await {
        Err(_) => Err(BodyError::Timeout),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(err)) if err.downcast_ref::<LengthLimitError>().is_some() => {
            Err(BodyError::TooLarge)
        }
        Ok(Err(err)) => Err(BodyError::Read(err.to_string())),
    }
}

/// Binds `addr`.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Serves `router` on `listener` over HTTP/1.1 with the header cap and header timeout, until `shutdown`; open
/// connections then get 5s to finish.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send,
) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(error) => {
                        // EMFILE and friends: back off a little instead of spinning.
                        tracing::warn!(%error, "accepting a connection failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let service = TowerToHyperService::new(router.clone());
                let mut builder = hyper::server::conn::http1::Builder::new();
                builder
                    .timer(TokioTimer::new())
                    .header_read_timeout(READ_HEADER_TIMEOUT)
                    .max_buf_size(MAX_HEADER_BYTES);
                let connection = builder.serve_connection(TokioIo::new(stream), service);
                let connection = graceful.watch(connection);
                tokio::spawn(async move {
                    if let Err(error) = connection.await {
                        tracing::debug!(%error, "connection ended with an error");
                    }
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    if tokio::time::timeout(Duration::from_secs(5), graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("server graceful shutdown timed out");
    }
}
