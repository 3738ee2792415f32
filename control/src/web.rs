//! The admin web UI: one HTML page, its stylesheet and one ES module (`control/web/`), embedded
//! in the binary so the service needs no files beside it and no build step. The page talks only
//! to this service's own API (`/api/v1/...`) with the session cookie; it has no inline script or
//! style, so it is served under a Content-Security-Policy that allows nothing but this origin.

use axum::Router;
use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;

const INDEX_HTML: &str = include_str!("../web/index.html");
const APP_JS: &str = include_str!("../web/app.js");
const STYLE_CSS: &str = include_str!("../web/style.css");

/// What the page may load and do: its own script, styles and API, nothing inline, no plugins,
/// no framing by other sites, no forms posted elsewhere.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; object-src 'none'; \
     base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// Headers on every page and asset: the policy, no type sniffing, no referrer, and a fresh copy
/// after an upgrade.
const HEADERS: [(header::HeaderName, &str); 4] = [
    (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (header::REFERRER_POLICY, "no-referrer"),
    (header::CACHE_CONTROL, "no-cache"),
];

/// The page at `/` and `/admin` (the screens are chosen in the fragment: `#courses`, …), and its
/// two assets under `/admin/`.
pub fn router() -> Router {
    Router::new()
        .route("/", get(index))
        .route("/admin", get(index))
        .route("/admin/{file}", get(asset))
}

async fn index() -> Response {
    (HEADERS, Html(INDEX_HTML)).into_response()
}

async fn asset(Path(file): Path<String>) -> Response {
    let (body, content_type) = match file.as_str() {
        "app.js" => (APP_JS, "text/javascript; charset=utf-8"),
        "style.css" => (STYLE_CSS, "text/css; charset=utf-8"),
        _ => return (StatusCode::NOT_FOUND, HEADERS, "no such file\n").into_response(),
    };
    (HEADERS, [(header::CONTENT_TYPE, content_type)], body).into_response()
}
