//! The office's status page and local API, on `127.0.0.1:<ui_port>` only.
//!
//! - `/` is the status page (Japanese by default, English by a switch; every asset is in the
//!   binary, so it works with no network). It updates itself by polling the API every two
//!   seconds.
//! - `/api/v1/…` is the API care software uses (send, list received files, fetch, mark
//!   imported, receipts, check, directory sync). Every call needs `Authorization: Bearer
//!   <token>`, the token the node keeps in `H/state/api-token` (0600, made at the first start,
//!   written atomically). The page gets it from its login link's fragment (`#token=…`), which a
//!   browser never sends to the server, so the token is in no request line nor log.
//! - `/api/v1/openapi.json` is the OpenAPI 3.1 document, generated from the handlers
//!   (utoipa), served without a token.
//!
//! Requests whose `Host` is not the loopback address and port are refused (a web page from
//! elsewhere cannot reach the API through DNS rebinding); the API takes no cookies, so another
//! site cannot make the browser call it either.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::env::Env;
use crate::home::{Config, Home};
use crate::state::Shared;

pub mod api;

/// A bound listener, with the token its API asks for.
#[derive(Debug)]
pub(crate) struct Bound {
    pub(crate) addr: SocketAddr,
    listener: tokio::net::TcpListener,
    token: String,
}

/// Binds the page and API on 127.0.0.1 at `ui_port` (`None` when it is 0), making the API
/// token first if there is none.
pub(crate) async fn bind(home: &Home, config: &Config, env: &Env) -> anyhow::Result<Option<Bound>> {
    if config.ui_port == 0 {
        return Ok(None);
    }
    let token = ensure_token(home, env)?;
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, config.ui_port))
        .await
        .with_context(|| {
            format!(
                "状態ページと API を 127.0.0.1:{p} で開けません（他のプログラムが使用中の可能性があります）。renkei.toml の ui_port を変えて再起動してください。送受信は続けます / cannot open the status page and API on 127.0.0.1:{p} (another program may use the port): set another ui_port in renkei.toml and restart; sending and receiving go on",
                p = config.ui_port
            )
        })?;
    let addr = listener.local_addr()?;
    Ok(Some(Bound {
        addr,
        listener,
        token,
    }))
}

/// The API token in `H/state/api-token`, made (32 random bytes, hex, 0600, written
/// atomically) when there is none or it is not one.
pub fn ensure_token(home: &Home, env: &Env) -> anyhow::Result<String> {
    let path = home.api_token();
    if let Ok(text) = std::fs::read_to_string(&path) {
        let t = text.trim();
        if t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit()) {
            crate::files::make_private(&path)?;
            return Ok(t.to_string());
        }
    }
    std::fs::create_dir_all(home.state())?;
    let token = hex::encode(env.random_bytes::<32>());
    crate::files::write_atomic(&path, format!("{token}\n").as_bytes(), true)?;
    Ok(token)
}

/// The login link of a page: the token in the fragment, which the browser keeps to itself.
pub fn login_url(addr: SocketAddr, token: &str) -> String {
    format!("http://{addr}/#token={token}")
}

/// Serves the page and API until the node stops.
pub(crate) async fn serve(shared: Arc<Shared>, bound: Bound) {
    let app = router(shared.clone(), bound.token, bound.addr);
    let stop = shared.shutdown.clone();
    let served = axum::serve(bound.listener, app)
        .with_graceful_shutdown(async move {
            stop.cancelled().await;
        })
        .await;
    if let Err(e) = served {
        shared.error(format!(
            "状態ページが止まりました / the status page stopped: {e}"
        ));
    }
}

/// What every handler gets.
#[derive(Clone)]
pub(crate) struct Api {
    pub(crate) shared: Arc<Shared>,
    token: Arc<str>,
    /// The receipt log as last read and verified, with the length and time it had then: the
    /// page asks every two seconds, and a log of many thousand receipts is read again only
    /// when it has grown.
    pub(crate) receipts: Arc<std::sync::Mutex<Option<api::CachedLog>>>,
}

/// The page, the API and the document, with the token and host checks.
fn router(shared: Arc<Shared>, token: String, addr: SocketAddr) -> Router {
    let max_body = usize::try_from(shared.config.max_file_mb.saturating_mul(1 << 20))
        .unwrap_or(usize::MAX)
        .saturating_add(1 << 16);
    let state = Api {
        shared,
        token: token.into(),
        receipts: Default::default(),
    };
    let (api, doc) = api::routes().split_for_parts();
    let doc = Arc::new(doc);
    let api = api
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            require_token,
        ))
        .layer(axum::extract::DefaultBodyLimit::max(max_body))
        .with_state(state);
    let hosts: Arc<[String]> = [
        format!("127.0.0.1:{}", addr.port()),
        format!("localhost:{}", addr.port()),
    ]
    .into();
    Router::new()
        .route("/", axum::routing::get(page_index))
        .route("/app.js", axum::routing::get(page_js))
        .route("/style.css", axum::routing::get(page_css))
        .route(
            "/api/v1/openapi.json",
            axum::routing::get(move || {
                let doc = doc.clone();
                async move { axum::Json((*doc).clone()) }
            }),
        )
        .merge(api)
        .fallback(not_found)
        .layer(axum::middleware::from_fn(
            move |req: Request, next: Next| {
                let hosts = hosts.clone();
                async move { check_host(&hosts, req, next).await }
            },
        ))
}

/// The OpenAPI document of the API (what `/api/v1/openapi.json` serves).
pub fn openapi() -> utoipa::openapi::OpenApi {
    api::routes().split_for_parts().1
}

async fn check_host(hosts: &[String], req: Request, next: Next) -> Response {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    if !hosts.iter().any(|h| h == host) {
        return api::Problem::new(
            StatusCode::FORBIDDEN,
            "BAD_HOST",
            "このアドレスからは開けません。http://127.0.0.1 のリンクを使ってください",
            "not served under this host name: use the http://127.0.0.1 link",
        )
        .into_response();
    }
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'",
        ),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    res
}

async fn require_token(State(api): State<Api>, req: Request, next: Next) -> Response {
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "))
        .unwrap_or("");
    // Compared in full whatever differs first.
    let same = given.len() == api.token.len()
        && given
            .bytes()
            .zip(api.token.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    if !same {
        let mut res = api::Problem::new(
            StatusCode::UNAUTHORIZED,
            "UNAUTHORIZED",
            "API のトークンがないか違います。H/state/api-token の内容を Authorization: Bearer で送ってください",
            "missing or wrong API token: send the content of H/state/api-token as Authorization: Bearer",
        )
        .into_response();
        res.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"renkei\""),
        );
        return res;
    }
    next.run(req).await
}

async fn not_found() -> Response {
    api::Problem::new(
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
        "そのページはありません",
        "no such page",
    )
    .into_response()
}

const INDEX_HTML: &str = include_str!("page/index.html");
const APP_JS: &str = include_str!("page/app.js");
const STYLE_CSS: &str = include_str!("page/style.css");

async fn page_index() -> Response {
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        INDEX_HTML,
    )
        .into_response()
}

async fn page_js() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        APP_JS,
    )
        .into_response()
}

async fn page_css() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        STYLE_CSS,
    )
        .into_response()
}
