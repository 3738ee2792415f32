//! The browser client, embedded in the binary so a node needs no files beside it.

use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};

const INDEX_HTML: &str = include_str!("../web/index.html");
const CLASSROOM_HTML: &str = include_str!("../web/classroom.html");
const APP_JS: &str = include_str!("../web/app.js");
const STYLE_CSS: &str = include_str!("../web/style.css");

use crate::http::AppState;

/// What the pages may load: only this node's own script, styles, media and connections (the
/// client has no inline script or style), slide images from the node or made in the page, and no
/// plugins or framing by other sites.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self' data: blob:; media-src 'self' blob:; connect-src 'self'; frame-src 'self'; \
     object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The policy of a page served by an edge of a cluster: as [`CONTENT_SECURITY_POLICY`], and the
/// other edges' origins (each checked by `placement::parse_origin`) for connections, slide
/// images and PDFs, so that the page can time them and move to one when its own edge is gone.
/// Scripts still come only from this edge.
pub fn content_security_policy(origins: &[String]) -> String {
    if origins.is_empty() {
        return CONTENT_SECURITY_POLICY.to_owned();
    }
    let web = origins.join(" ");
    let sockets: Vec<String> = origins
        .iter()
        .filter_map(|origin| {
            let (scheme, rest) = origin.split_once("://")?;
            Some(format!(
                "{}://{rest}",
                if scheme == "https" { "wss" } else { "ws" }
            ))
        })
        .collect();
    let sockets = sockets.join(" ");
    format!(
        "default-src 'self'; script-src 'self'; style-src 'self'; \
         img-src 'self' data: blob: {web}; media-src 'self' blob:; \
         connect-src 'self' {web} {sockets}; frame-src 'self' {web}; \
         object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    )
}

/// Pages hold tokens in their fragment: tell browsers not to leak the URL to other sites.
const PAGE_HEADERS: [(header::HeaderName, &str); 3] = [
    (header::REFERRER_POLICY, "no-referrer"),
    (header::CACHE_CONTROL, "no-cache"),
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
];

fn page(state: &AppState, html: &'static str) -> Response {
    let policy = HeaderValue::from_str(&content_security_policy(&crate::http::cluster_origins(
        state,
    )))
    .unwrap_or_else(|_| HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    let mut response = (PAGE_HEADERS, Html(html)).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_SECURITY_POLICY, policy);
    response
}

pub async fn index(State(state): State<AppState>) -> Response {
    page(&state, INDEX_HTML)
}

pub async fn classroom(State(state): State<AppState>, Path(_session): Path<String>) -> Response {
    page(&state, CLASSROOM_HTML)
}

pub async fn asset(Path(file): Path<String>) -> Response {
    let (body, content_type) = match file.as_str() {
        "app.js" => (APP_JS, "text/javascript; charset=utf-8"),
        "style.css" => (STYLE_CSS, "text/css; charset=utf-8"),
        _ => return (StatusCode::NOT_FOUND, "no such asset\n").into_response(),
    };
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}
