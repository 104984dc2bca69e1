//! A small plain-HTTP client for the calls the hub and its tools make to metric servers, webhooks
//! and the simulator's control endpoints: one request, one answer, with a deadline.

use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::sync::OnceLock;
use std::time::Duration;

/// What went wrong with a call.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// No answer within the deadline.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The URL cannot be called.
    #[error("bad URL {url:?}: {reason}")]
    Url {
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// The connection or the exchange failed.
    #[error("{0}")]
    Transport(String),
}

/// An answer: the status and the body.
#[derive(Debug, Clone)]
pub struct HttpAnswer {
    /// The HTTP status.
    pub status: u16,
    /// The body, as text.
    pub body: String,
}

fn client() -> &'static Client<HttpConnector, Full<Bytes>> {
    static CLIENT: OnceLock<Client<HttpConnector, Full<Bytes>>> = OnceLock::new();
    CLIENT.get_or_init(|| Client::builder(TokioExecutor::new()).build_http())
}

/// `GET url`, answered within `timeout`.
pub async fn get(url: &str, timeout: Duration) -> Result<HttpAnswer, HttpError> {
    call(http::Method::GET, url, None, timeout).await
}

/// `POST url` with `body` as JSON, answered within `timeout`.
pub async fn post_json(
    url: &str,
    body: &serde_json::Value,
    timeout: Duration,
) -> Result<HttpAnswer, HttpError> {
    call(http::Method::POST, url, Some(body.to_string()), timeout).await
}

async fn call(
    method: http::Method,
    url: &str,
    body: Option<String>,
    timeout: Duration,
) -> Result<HttpAnswer, HttpError> {
    let bad = |reason: String| HttpError::Url {
        url: url.to_owned(),
        reason,
    };
    let uri: http::Uri = url
        .parse()
        .map_err(|e: http::uri::InvalidUri| bad(e.to_string()))?;
    if uri.scheme_str() != Some("http") {
        return Err(bad("only http:// is supported".to_owned()));
    }
    let mut request = http::Request::builder().method(method).uri(uri);
    if body.is_some() {
        request = request.header(http::header::CONTENT_TYPE, "application/json");
    }
    let request = request
        .body(Full::new(Bytes::from(body.unwrap_or_default())))
        .map_err(|e| bad(e.to_string()))?;
    let exchange = async {
        let response = client()
            .request(request)
            .await
            .map_err(|e| HttpError::Transport(crate::error_chain(&e)))?;
        let status = response.status().as_u16();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|e| HttpError::Transport(e.to_string()))?
            .to_bytes();
        Ok(HttpAnswer {
            status,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        })
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| HttpError::Timeout(timeout))?
}

/// `text` percent-encoded for a URL query value.
pub fn encode_query_value(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC).to_string()
}
