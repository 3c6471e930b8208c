//! The artifact server: serves files under the storage root over HTTP, with `Content-Length` and an `ETag`
//! equal to the file's digest. No directory listing, no path traversal, no symlinks.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio_util::io::ReaderStream;

use crate::storage::{DigestAlgo, Storage, digest_file, is_safe_relative};

/// Why a request was refused.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Not a file under the root (missing, a directory, a symlink, or an unsafe path).
    #[error("not found")]
    NotFound,
    /// The file could not be read.
    #[error("failed to read artifact: {0}")]
    Io(#[from] std::io::Error),
}

impl IntoResponse for ServeError {
    fn into_response(self) -> Response {
        let status = match self {
            ServeError::NotFound => StatusCode::NOT_FOUND,
            ServeError::Io(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        (status, format!("{self}\n")).into_response()
    }
}

type DigestCache = Mutex<HashMap<PathBuf, (u64, SystemTime, String)>>;

#[derive(Clone)]
struct ServerState {
    storage: Storage,
    digests: Arc<DigestCache>,
}

/// The artifact router for `storage`.
pub fn router(storage: Storage) -> Router {
    Router::new()
        .route("/{*path}", get(serve))
        .with_state(ServerState {
            storage,
            digests: Arc::new(Mutex::new(HashMap::new())),
        })
}

async fn serve(
    State(state): State<ServerState>,
    UrlPath(path): UrlPath<String>,
) -> Result<Response, ServeError> {
    if !is_safe_relative(&path) {
        return Err(ServeError::NotFound);
    }
    let local = state.storage.local_path(&path);
    let meta = match tokio::fs::symlink_metadata(&local).await {
        Ok(m) if m.is_file() => m,
        Ok(_) => return Err(ServeError::NotFound),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(ServeError::NotFound),
        Err(e) => return Err(e.into()),
    };
    let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
    let cached = state.digests.lock().ok().and_then(|c| {
        c.get(&local)
            .filter(|(len, m, _)| *len == meta.len() && *m == modified)
            .map(|(_, _, d)| d.clone())
    });
    let digest = match cached {
        Some(d) => d,
        None => {
            let algo: DigestAlgo = state.storage.digest_algo;
            let file = local.clone();
            let d = tokio::task::spawn_blocking(move || digest_file(&file, algo))
                .await
                .map_err(std::io::Error::other)??;
            if let Ok(mut c) = state.digests.lock() {
                c.insert(local.clone(), (meta.len(), modified, d.clone()));
            }
            d
        }
    };
    let file = tokio::fs::File::open(&local).await?;
    let mut response = Response::new(Body::from_stream(ReaderStream::new(file)));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(meta.len()));
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-gzip"),
    );
    if let Ok(etag) = HeaderValue::from_str(&format!("\"{digest}\"")) {
        headers.insert(header::ETAG, etag);
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Request;
    use tower::ServiceExt;

    async fn get_path(
        router: Router,
        path: &str,
    ) -> (StatusCode, Option<String>, Option<String>, Vec<u8>) {
        let response = router
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let h = |n| {
            response
                .headers()
                .get(n)
                .map(|v: &HeaderValue| v.to_str().unwrap().to_string())
        };
        let (etag, len) = (h(header::ETAG), h(header::CONTENT_LENGTH));
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, etag, len, body.to_vec())
    }

    #[tokio::test]
    async fn serves_files_with_length_and_digest_etag_and_nothing_else() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let dir = root.path().join("gitrepository/ns/app");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("abc.tar.gz"), b"abc").unwrap();
        std::fs::write(outside.path().join("secret"), b"s").unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink(outside.path().join("secret"), dir.join("link")).unwrap();
        let router = router(Storage::new(root.path(), "localhost"));

        let (status, etag, len, body) =
            get_path(router.clone(), "/gitrepository/ns/app/abc.tar.gz").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, b"abc");
        assert_eq!(len.as_deref(), Some("3"));
        assert_eq!(
            etag.as_deref(),
            Some("\"sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\"")
        );
        for path in [
            "/gitrepository/ns/app",
            "/gitrepository/ns/app/",
            "/gitrepository/ns/app/missing.tar.gz",
            "/gitrepository/ns/app/../../../etc/passwd",
            "/gitrepository/ns/app/%2e%2e/%2e%2e/x",
            "/gitrepository/ns/app/link",
        ] {
            let (status, ..) = get_path(router.clone(), path).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        }
    }
}
