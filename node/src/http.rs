//! The HTTP edge: WHIP and WHEP signaling, the join endpoint, the classroom WebSocket, health,
//! metrics and the embedded web client.
//!
//! The join endpoint also places the participant (`crate::placement`): on this edge or on a
//! peer whose fresh report and live link make it a candidate, answering with the edge, the
//! reason and, for another edge, where the browser goes next. `GET /api/edges` lists the same
//! candidates for the browser to time.
//!
//! Every request is checked here before anything reaches the media task or presence: token,
//! session, role, content type, size. A refusal is a status code the standards name, with a
//! plain-text (or, for the JSON API, JSON) reason, and is counted in `/metrics`. Tokens are
//! never logged.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ws::{CloseFrame, Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use multistream_proto::wire::{
    CLIENT_MESSAGE_BYTES_MAX, ClientMessage, ParticipantView, ServerMessage, WIRE_VERSION,
};
use multistream_proto::{Claims, ParticipantId, Role, SessionId, Source, TokenKind};
use serde::Deserialize;
use tokio::sync::mpsc;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::assets::{self, DECK_MANIFEST_TYPE};
use crate::log::NodeId;
use crate::media::{MediaHandle, MediaUnavailable, RemoveOutcome};
use crate::placement::{self, EdgeReport, REPORT_FRESH_MAX, RTT_MS_MAX, RTTS_MAX};
use crate::presence::{CLIENT_OUTBOUND_QUEUE_MAX, PresenceHandle, Who};
use crate::sessions::{SessionsHandle, ToClient};
use crate::sfu::{AddPeerError, PeerKind, PeerSpec};
use crate::store::{ASSET_BYTES_MAX, Store};
use crate::token::{Issuer, TokenError, unix_now_secs};
use crate::web;
use multistream_proto::session::{EventBody, Permission};

/// Largest SDP offer accepted, in bytes. A browser offer with simulcast is 5–8 KiB; 64 KiB
/// leaves room for long candidate lists and refuses anything built to waste memory.
pub const SDP_BYTES_MAX: usize = 64 * 1024;

/// Largest JSON body of the join endpoint: a name and little else.
pub const JOIN_BODY_BYTES_MAX: usize = 4 * 1024;

/// Lifetime of an access token minted from an invitation: one school day.
pub const ACCESS_TOKEN_LIFETIME_SECS: u64 = 12 * 3600;

/// A classroom connection must say hello this soon after opening, or it is closed.
pub const HELLO_DEADLINE: Duration = Duration::from_secs(10);

/// Shared state of the handlers. The fields are handles to actors or immutable values.
#[derive(Clone)]
pub struct AppState {
    pub issuer: Arc<Issuer>,
    pub media: MediaHandle,
    pub presence: PresenceHandle,
    pub sessions: SessionsHandle,
    pub store: Arc<Store>,
    pub plugins: crate::plugins::PluginsHandle,
    /// This edge, as clients are told.
    pub edge: multistream_proto::wire::EdgeView,
    /// The peer plane, when this edge has peers.
    pub peers: Option<Arc<crate::peer::PeerPlane>>,
    /// The relay links, which keep each peer's latest report about itself (for placement).
    pub relay_links: Arc<crate::cascade::link::RelayLinks>,
    /// This edge's own report: its URL, campus networks and current load.
    pub edge_report: tokio::sync::watch::Receiver<EdgeReport>,
    pub placements: Arc<PlacementCounters>,
    /// The control plane this edge is enrolled with, if any: check-in figures and the schedule.
    pub control: Option<crate::control::ControlLink>,
    pub refusals: Arc<Refusals>,
    pub next_connection: Arc<AtomicU64>,
}

impl AppState {
    /// Whether the control plane cancelled `session` (by the schedule kept here).
    fn cancelled(&self, session: &SessionId) -> bool {
        self.control
            .as_ref()
            .is_some_and(|c| c.is_cancelled(session.as_str()))
    }
}

/// Counts of refused requests by endpoint and reason, for `/metrics`. Written only on refusals,
/// never on the media path.
#[derive(Default)]
pub struct Refusals {
    counts: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
}

impl Refusals {
    fn count(&self, endpoint: &'static str, reason: &'static str) {
        if let Ok(mut counts) = self.counts.lock() {
            *counts.entry((endpoint, reason)).or_default() += 1;
        }
    }

    pub fn snapshot(&self) -> BTreeMap<(&'static str, &'static str), u64> {
        self.counts
            .lock()
            .map(|counts| counts.clone())
            .unwrap_or_default()
    }
}

/// Why a join was placed where it was, as the metrics label it: the rules of
/// [`placement::Reason`], and the two reasons a join stays here although another edge was
/// preferred (this edge's tokens would not be accepted there).
pub const PLACEMENT_REASONS: [&str; 6] = [
    "campus",
    "nearest",
    "least_loaded",
    "only_choice",
    "no_cluster_issuer",
    "issuer_mismatch",
];

/// Counts of placement decisions by reason, and of joins sent to another edge.
#[derive(Default)]
pub struct PlacementCounters {
    decisions: [AtomicU64; PLACEMENT_REASONS.len()],
    redirects: AtomicU64,
}

impl PlacementCounters {
    fn count(&self, reason: &str, redirected: bool) {
        if let Some(i) = PLACEMENT_REASONS.iter().position(|r| *r == reason) {
            self.decisions[i].fetch_add(1, Ordering::Relaxed);
        }
        if redirected {
            self.redirects.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The two families in Prometheus text.
    pub fn render(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::with_capacity(1024);
        out.push_str(
            "# HELP multistream_placement_decisions_total Joins placed, by the reason for the edge chosen.\n\
             # TYPE multistream_placement_decisions_total counter\n",
        );
        for (reason, count) in PLACEMENT_REASONS.iter().zip(&self.decisions) {
            let _ = writeln!(
                out,
                "multistream_placement_decisions_total{{reason=\"{reason}\"}} {}",
                count.load(Ordering::Relaxed)
            );
        }
        let _ = write!(
            out,
            "# HELP multistream_placement_redirects_total Joins sent on to another edge.\n\
             # TYPE multistream_placement_redirects_total counter\n\
             multistream_placement_redirects_total {}\n",
            self.redirects.load(Ordering::Relaxed)
        );
        out
    }
}

/// An edge a participant could be placed on, as this edge knows it now.
#[derive(Debug, Clone)]
pub struct KnownEdge {
    pub id: NodeId,
    /// Its base URL, checked with [`placement::parse_origin`].
    pub url: String,
    pub report: EdgeReport,
    /// Whether it is this edge.
    pub this: bool,
}

/// This edge, then every peer whose report is fresh (younger than [`REPORT_FRESH_MAX`]), whose
/// peer link is up and whose URL is usable; in a stable order (by node id after this edge).
pub fn known_edges(state: &AppState) -> Vec<KnownEdge> {
    let own = state.edge_report.borrow().clone();
    let mut edges = vec![KnownEdge {
        id: NodeId(state.edge.id.clone()),
        url: placement::parse_origin(&own.url).unwrap_or_default(),
        report: own,
        this: true,
    }];
    let links = state
        .peers
        .as_ref()
        .map(|plane| plane.links())
        .unwrap_or_default();
    let mut peers: Vec<KnownEdge> = state
        .relay_links
        .reports()
        .into_iter()
        .filter(|(peer, _, age)| {
            *age < REPORT_FRESH_MAX && links.iter().any(|link| link.peer == peer.0 && link.up)
        })
        .filter_map(|(id, report, _)| {
            let url = placement::parse_origin(&report.url).ok()?;
            Some(KnownEdge {
                id,
                url,
                report,
                this: false,
            })
        })
        .collect();
    peers.sort_by(|a, b| a.id.cmp(&b.id));
    edges.extend(peers);
    edges
}

/// The origins of every edge of the cluster this edge has heard from (fresh or not), for the
/// pages' Content-Security-Policy: a page may time them, and move its connection to one of them
/// when its own edge is gone.
pub fn cluster_origins(state: &AppState) -> Vec<String> {
    let mut origins: Vec<String> = state
        .relay_links
        .reports()
        .into_iter()
        .filter_map(|(_, report, _)| placement::parse_origin(&report.url).ok())
        .collect();
    if let Ok(own) = placement::parse_origin(&state.edge_report.borrow().url) {
        origins.push(own);
    }
    origins.sort();
    origins.dedup();
    origins
}

/// A refused request: status, a stable reason label and a message for people.
#[derive(Debug)]
struct Refusal {
    status: StatusCode,
    reason: &'static str,
    message: String,
    json: bool,
}

impl Refusal {
    fn new(status: StatusCode, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            reason,
            message: message.into(),
            json: false,
        }
    }

    fn token(error: TokenError) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", error.to_string())
    }

    fn counted(self, state: &AppState, endpoint: &'static str) -> Self {
        state.refusals.count(endpoint, self.reason);
        debug!(
            endpoint,
            reason = self.reason,
            status = self.status.as_u16(),
            "request refused"
        );
        self
    }

    fn as_json(mut self) -> Self {
        self.json = true;
        self
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let mut response = if self.json {
            let body = serde_json::json!({ "error": self.reason, "message": self.message });
            (self.status, axum::Json(body)).into_response()
        } else {
            (
                self.status,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                self.message + "\n",
            )
                .into_response()
        };
        let headers = response.headers_mut();
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"multistream\", error=\"invalid_token\""),
            );
        }
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("2"));
        }
        response
    }
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(web::index))
        .route("/s/{session}", get(web::classroom))
        .route("/assets/{file}", get(web::asset))
        .route("/healthz", get(healthz))
        .route("/api/edges", get(edge_list))
        .route("/metrics", get(metrics))
        .route("/whip/{session}", post(whip_offer).options(whip_options))
        .route(
            "/whip/{session}/{resource}",
            delete(whip_delete).patch(no_trickle).options(whip_options),
        )
        .route("/whep/{session}", post(whep_offer).options(whip_options))
        .route(
            "/whep/{session}/{resource}",
            delete(whep_delete).patch(no_trickle).options(whip_options),
        )
        .route(
            "/api/sessions/{session}/join",
            post(join).options(api_options),
        )
        .route(
            "/api/sessions/{session}/place",
            post(place_arrival).options(api_options),
        )
        .route(
            "/api/sessions/{session}/assets",
            post(upload_asset)
                .layer(axum::extract::DefaultBodyLimit::max(ASSET_BYTES_MAX))
                .options(api_options),
        )
        .route("/api/assets/{address}", get(download_asset))
        .route("/api/plugins", get(plugin_list))
        .route("/ws/{session}", get(classroom_socket))
        .layer(axum::middleware::map_response(cross_origin))
        .with_state(state)
}

/// WHIP and WHEP players may run on other origins (a streaming tool's web page), and a class page
/// served by one edge of a cluster talks to another when its own is gone: allow them to call the
/// endpoints and read the `Location` header. Credentials are bearer tokens, never cookies, so
/// this grants nothing a page could not already do with the token.
async fn cross_origin(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    headers.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("Location"),
    );
    response
}

async fn whip_options() -> Response {
    (
        StatusCode::NO_CONTENT,
        [
            (header::ALLOW, "OPTIONS, POST"),
            (
                header::HeaderName::from_static("accept-post"),
                "application/sdp",
            ),
            (
                header::ACCESS_CONTROL_ALLOW_METHODS,
                "OPTIONS, POST, DELETE, PATCH",
            ),
            (
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                "Authorization, Content-Type",
            ),
        ],
    )
        .into_response()
}

/// The preflight of a cross-origin JSON or upload request with a bearer token.
async fn api_options() -> Response {
    (
        StatusCode::NO_CONTENT,
        [
            (header::ALLOW, "OPTIONS, POST"),
            (header::ACCESS_CONTROL_ALLOW_METHODS, "OPTIONS, POST"),
            (
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                "Authorization, Content-Type",
            ),
        ],
    )
        .into_response()
}

/// Trickle ICE and ICE restarts are not supported: the node is ICE-lite and learns the client's
/// address from its connectivity checks, so the client never needs to send candidates.
async fn no_trickle() -> Response {
    (
        StatusCode::METHOD_NOT_ALLOWED,
        [(header::ALLOW, "DELETE")],
        "trickle ICE is not supported; candidates are not needed with this server\n",
    )
        .into_response()
}

/// Also what browsers time to find their nearest edge: static, never cached, and readable from
/// any origin (the `cross_origin` layer).
async fn healthz() -> Response {
    (
        [(header::CACHE_CONTROL, "no-store")],
        axum::Json(serde_json::json!({ "status": "ok", "version": env!("CARGO_PKG_VERSION") })),
    )
        .into_response()
}

/// The edges a participant could be placed on (this one and every peer with a fresh report and
/// a live link): what a browser needs to time each one's `/healthz` before it joins.
async fn edge_list(State(state): State<AppState>) -> Response {
    let edges: Vec<serde_json::Value> = known_edges(&state)
        .into_iter()
        .map(|edge| {
            serde_json::json!({
                "id": edge.id.0,
                "name": edge.report.name,
                "url": edge.url,
                "this": edge.this,
            })
        })
        .collect();
    (
        [(header::CACHE_CONTROL, "no-store")],
        axum::Json(serde_json::json!({ "edges": edges })),
    )
        .into_response()
}

fn bearer(headers: &HeaderMap) -> Result<&str, TokenError> {
    let value = headers
        .get(header::AUTHORIZATION)
        .ok_or(TokenError::Missing)?;
    let text = value
        .to_str()
        .map_err(|_| TokenError::Malformed("header is not ASCII"))?;
    let token = text
        .strip_prefix("Bearer ")
        .or_else(|| text.strip_prefix("bearer "))
        .ok_or(TokenError::Malformed(
            "expected `Authorization: Bearer <token>`",
        ))?;
    Ok(token.trim())
}

fn parse_session(text: &str) -> Result<SessionId, Refusal> {
    text.parse().map_err(|error| {
        Refusal::new(
            StatusCode::NOT_FOUND,
            "unknown_session",
            format!("no such session: {error}"),
        )
    })
}

/// Checks the bearer token is a valid access token for `session`.
fn authorize(
    state: &AppState,
    headers: &HeaderMap,
    session: &SessionId,
) -> Result<Claims, Refusal> {
    let token = bearer(headers).map_err(Refusal::token)?;
    let claims = state
        .issuer
        .verify_access(token, unix_now_secs())
        .map_err(Refusal::token)?;
    if &claims.sid != session {
        return Err(Refusal::new(
            StatusCode::FORBIDDEN,
            "wrong_session",
            format!(
                "this token is for session {:?}, not {:?}",
                claims.sid.as_str(),
                session.as_str()
            ),
        ));
    }
    if state.cancelled(session) {
        return Err(Refusal::new(
            StatusCode::GONE,
            "session_cancelled",
            "this session was cancelled",
        ));
    }
    Ok(claims)
}

#[derive(Debug, Deserialize)]
struct OfferQuery {
    source: Option<String>,
}

async fn whip_offer(
    State(state): State<AppState>,
    Path(session): Path<String>,
    Query(query): Query<OfferQuery>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    offer(state, PeerKind::Publisher, session, query, headers, body).await
}

async fn whep_offer(
    State(state): State<AppState>,
    Path(session): Path<String>,
    Query(query): Query<OfferQuery>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    offer(state, PeerKind::Subscriber, session, query, headers, body).await
}

async fn offer(
    state: AppState,
    kind: PeerKind,
    session: String,
    query: OfferQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let endpoint = match kind {
        PeerKind::Publisher => "whip",
        PeerKind::Subscriber => "whep",
    };
    match offer_inner(&state, kind, endpoint, session, query, headers, body).await {
        Ok(response) => response,
        Err(refusal) => refusal.counted(&state, endpoint).into_response(),
    }
}

/// Whether the class log says the teacher made this participant a speaker.
async fn may_speak(state: &AppState, session: &SessionId, participant: &ParticipantId) -> bool {
    state
        .sessions
        .state(session.clone())
        .await
        .is_some_and(|class| {
            class.members.get(participant).is_some_and(|m| {
                !m.removed
                    && m.permissions
                        .contains(&multistream_proto::session::Permission::Speak)
            })
        })
}

async fn offer_inner(
    state: &AppState,
    kind: PeerKind,
    endpoint: &'static str,
    session: String,
    query: OfferQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Refusal> {
    let session = parse_session(&session)?;
    let claims = authorize(state, &headers, &session)?;
    let span = info_span!("offer", endpoint, session = %session, participant = %claims.sub);
    async move {
        let allowed = match kind {
            // The token's grant, or the teacher's promotion to speaker in the class log.
            PeerKind::Publisher => {
                claims.grants.publish || may_speak(state, &session, &claims.sub).await
            }
            PeerKind::Subscriber => claims.grants.subscribe,
        };
        if !allowed {
            let what = match kind {
                PeerKind::Publisher => "publish",
                PeerKind::Subscriber => "watch",
            };
            return Err(Refusal::new(
                StatusCode::FORBIDDEN,
                "not_granted",
                format!(
                    "a {} in this session may not {what} unless the teacher allows it",
                    claims.role.as_str()
                ),
            ));
        }
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok());
        if !content_type.is_some_and(|v| {
            v.split(';')
                .next()
                .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/sdp"))
        }) {
            return Err(Refusal::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "the offer must be sent with Content-Type: application/sdp",
            ));
        }
        let source: Source = match query.source.as_deref() {
            None => Source::Camera,
            Some(text) => text.parse().map_err(|error: String| {
                Refusal::new(StatusCode::BAD_REQUEST, "bad_source", error)
            })?,
        };
        let bytes = axum::body::to_bytes(body, SDP_BYTES_MAX)
            .await
            .map_err(|_| {
                Refusal::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "too_large",
                    format!("the offer is larger than {SDP_BYTES_MAX} bytes"),
                )
            })?;
        let offer = String::from_utf8(bytes.to_vec()).map_err(|_| {
            Refusal::new(
                StatusCode::BAD_REQUEST,
                "bad_sdp",
                "the offer is not UTF-8 text",
            )
        })?;
        let spec = PeerSpec {
            session: session.clone(),
            participant: claims.sub.clone(),
            kind,
            source,
            lead: claims.role == Role::Teacher,
        };
        let who = Who {
            id: claims.sub.clone(),
            name: claims.name.clone(),
            role: claims.role,
        };
        let added = match state.media.add_peer(spec, who, offer).await {
            Ok(result) => result,
            Err(MediaUnavailable::Busy) => {
                return Err(Refusal::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "busy",
                    MediaUnavailable::Busy.to_string(),
                ));
            }
            Err(MediaUnavailable::Stopped) => {
                return Err(Refusal::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "stopping",
                    "the node is shutting down",
                ));
            }
        };
        let added = added.map_err(|error| {
            let (status, reason) = match &error {
                AddPeerError::SdpMalformed(_) => (StatusCode::BAD_REQUEST, "bad_sdp"),
                AddPeerError::TooManyTracks { .. } => (StatusCode::BAD_REQUEST, "too_many_tracks"),
                AddPeerError::NoMedia => (StatusCode::BAD_REQUEST, "no_media"),
                AddPeerError::WrongDirection(_) => (StatusCode::BAD_REQUEST, "wrong_direction"),
                AddPeerError::Negotiation(_) => (StatusCode::BAD_REQUEST, "negotiation"),
                AddPeerError::SessionFull => (StatusCode::SERVICE_UNAVAILABLE, "session_full"),
                AddPeerError::NodeFull => (StatusCode::SERVICE_UNAVAILABLE, "node_full"),
                AddPeerError::TooManyConnecting => {
                    (StatusCode::SERVICE_UNAVAILABLE, "too_many_connecting")
                }
            };
            Refusal::new(status, reason, error.to_string())
        })?;
        let location = format!("/{endpoint}/{session}/{}", added.resource);
        info!(source = %source, "media connection accepted");
        Ok((
            StatusCode::CREATED,
            [
                (header::CONTENT_TYPE, "application/sdp".to_owned()),
                (header::LOCATION, location),
            ],
            added.answer_sdp,
        )
            .into_response())
    }
    .instrument(span)
    .await
}

async fn whip_delete(
    State(state): State<AppState>,
    Path((session, resource)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    end_resource(state, "whip", session, resource, headers).await
}

async fn whep_delete(
    State(state): State<AppState>,
    Path((session, resource)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    end_resource(state, "whep", session, resource, headers).await
}

async fn end_resource(
    state: AppState,
    endpoint: &'static str,
    session: String,
    resource: String,
    headers: HeaderMap,
) -> Response {
    let result = async {
        let session = parse_session(&session)?;
        let claims = authorize(&state, &headers, &session)?;
        let is_teacher = claims.role == Role::Teacher;
        match state
            .media
            .remove_peer(resource, session, claims.sub, is_teacher)
            .await
        {
            Ok(RemoveOutcome::Removed) => Ok(StatusCode::OK.into_response()),
            Ok(RemoveOutcome::NotFound) => Err(Refusal::new(
                StatusCode::NOT_FOUND,
                "unknown_resource",
                "no such media connection (it may have ended already)",
            )),
            Ok(RemoveOutcome::NotYours) => Err(Refusal::new(
                StatusCode::FORBIDDEN,
                "not_yours",
                "this media connection belongs to someone else",
            )),
            Err(error) => Err(Refusal::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "busy",
                error.to_string(),
            )),
        }
    }
    .await;
    result.unwrap_or_else(|refusal| refusal.counted(&state, endpoint).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct JoinRequest {
    name: String,
    /// Round-trip times the browser measured to edges (node id → milliseconds).
    #[serde(default)]
    rtts: Option<BTreeMap<String, f64>>,
}

/// Longest node id read from a join's round-trip times (an iroh node id is 64 hex digits).
const RTT_KEY_CHARS_MAX: usize = 128;

/// Checks the round-trip times a browser sent; ids of edges this edge does not know are kept
/// (and never match a candidate).
fn parse_rtts(rtts: Option<BTreeMap<String, f64>>) -> Result<Vec<(NodeId, Duration)>, Refusal> {
    let rtts = rtts.unwrap_or_default();
    if rtts.len() > RTTS_MAX {
        return Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            "bad_rtts",
            format!("at most {RTTS_MAX} round-trip times, not {}", rtts.len()),
        ));
    }
    rtts.into_iter()
        .map(|(node, ms)| {
            if node.is_empty() || node.len() > RTT_KEY_CHARS_MAX {
                return Err(Refusal::new(
                    StatusCode::BAD_REQUEST,
                    "bad_rtts",
                    format!("round-trip times are keyed by node id (1 to {RTT_KEY_CHARS_MAX} characters)"),
                ));
            }
            if !(0.0..=RTT_MS_MAX).contains(&ms) {
                return Err(Refusal::new(
                    StatusCode::BAD_REQUEST,
                    "bad_rtts",
                    format!("a round-trip time is 0 to {RTT_MS_MAX} ms, not {ms}"),
                ));
            }
            Ok((NodeId(node), Duration::from_secs_f64(ms / 1000.0)))
        })
        .collect()
}

/// Where a join goes: the edge, the placement for the answer (`reason` and its details), and
/// whether the browser is sent on.
struct Placed {
    edge: KnownEdge,
    placement: serde_json::Value,
    redirect: bool,
}

/// Places a participant whose browser comes from `client` and measured `rtts`, holding a token
/// signed by `iss`: the rule's choice, unless that edge would not accept the token (then here,
/// saying why).
fn place(
    state: &AppState,
    client: std::net::IpAddr,
    rtts: &[(NodeId, Duration)],
    iss: &str,
) -> Placed {
    let edges = known_edges(state);
    let this = NodeId(state.edge.id.clone());
    let candidates: Vec<placement::Candidate> = edges
        .iter()
        // A peer reached by its report and its live link; one that gave no URL cannot be sent to.
        .filter(|edge| edge.this || !edge.url.is_empty())
        .map(|edge| edge.report.candidate(edge.id.clone(), true))
        .collect();
    let decision = placement::choose(&this, client.to_canonical(), &candidates, rtts);
    let here = || edges.iter().find(|edge| edge.this).cloned();
    let chosen = edges.iter().find(|edge| edge.id == decision.edge).cloned();
    let mut placement = serde_json::json!({ "reason": decision.reason.as_str() });
    match &decision.reason {
        placement::Reason::Campus { network } => placement["network"] = network.clone().into(),
        placement::Reason::Nearest { rtt_ms } => placement["rtt_ms"] = (*rtt_ms).into(),
        placement::Reason::LeastLoaded | placement::Reason::OnlyChoice => {}
    }
    let Some(chosen) = chosen.or_else(here) else {
        // This edge is always first in `known_edges`; kept total all the same.
        return Placed {
            edge: KnownEdge {
                id: this,
                url: String::new(),
                report: state.edge_report.borrow().clone(),
                this: true,
            },
            placement,
            redirect: false,
        };
    };
    if chosen.this {
        return Placed {
            edge: chosen,
            placement,
            redirect: false,
        };
    }
    let stay_because = if chosen.report.accepts(iss) {
        None
    } else if iss == state.issuer.name() && !state.issuer.is_cluster() {
        Some("no_cluster_issuer")
    } else {
        Some("issuer_mismatch")
    };
    match (stay_because, here()) {
        (Some(reason), Some(here)) => {
            let rule = placement;
            Placed {
                edge: here,
                placement: serde_json::json!({
                    "reason": reason,
                    "preferred": {
                        "id": chosen.id.0,
                        "name": chosen.report.name,
                        "url": chosen.url,
                    },
                    "rule": rule,
                }),
                redirect: false,
            }
        }
        _ => Placed {
            edge: chosen,
            placement,
            redirect: true,
        },
    }
}

/// The body of a join or a placement request, at most [`JOIN_BODY_BYTES_MAX`].
async fn join_body(body: Body) -> Result<axum::body::Bytes, Refusal> {
    axum::body::to_bytes(body, JOIN_BODY_BYTES_MAX)
        .await
        .map_err(|_| {
            Refusal::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                "the request body is too large",
            )
        })
}

/// Places the holder of `claims` ([`place`]), counts and logs the decision (`what` happened),
/// and answers `{edge: {id, name, url}, placement, redirect?}`.
fn placement_answer(
    state: &AppState,
    client: std::net::IpAddr,
    rtts: &[(NodeId, Duration)],
    claims: &Claims,
    what: &'static str,
) -> serde_json::Value {
    let placed = place(state, client, rtts, &claims.iss);
    let reason = placed.placement["reason"].as_str().unwrap_or("only_choice");
    state.placements.count(reason, placed.redirect);
    info!(
        session = %claims.sid,
        participant = %claims.sub,
        role = claims.role.as_str(),
        edge = %placed.edge.report.name,
        reason,
        redirect = placed.redirect,
        "{what}"
    );
    let mut answer = serde_json::json!({
        "edge": {
            "id": placed.edge.id.0,
            "name": placed.edge.report.name,
            "url": placed.edge.url,
        },
        "placement": placed.placement,
    });
    if placed.redirect {
        answer["redirect"] = format!("{}/s/{}", placed.edge.url, claims.sid).into();
    }
    answer
}

/// Trades an invitation for a personal access token with a fresh participant id, and places the
/// participant: on this edge, or on another one the browser is sent to (`redirect`).
async fn join(
    State(state): State<AppState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    Path(session): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let result = async {
        let session = parse_session(&session)?;
        let token = bearer(&headers).map_err(Refusal::token)?;
        let now = unix_now_secs();
        let invite = state.issuer.verify_invite(token, now).map_err(Refusal::token)?;
        if invite.sid != session {
            return Err(Refusal::new(StatusCode::FORBIDDEN, "wrong_session", "this invitation is for another session"));
        }
        let bytes = join_body(body).await?;
        let request: JoinRequest = serde_json::from_slice(&bytes).map_err(|error| {
            Refusal::new(
                StatusCode::BAD_REQUEST,
                "bad_json",
                format!("expected {{\"name\": \"…\", \"rtts\": {{\"<node id>\": <ms>}}}} (rtts optional): {error}"),
            )
        })?;
        let name = multistream_proto::claims::validate_display_name(&request.name)
            .map_err(|error| Refusal::new(StatusCode::BAD_REQUEST, "bad_name", error.to_string()))?;
        let rtts = parse_rtts(request.rtts)?;
        let claims = Claims {
            iss: state.issuer.name().to_owned(),
            sub: fresh_participant_id(invite.role),
            sid: session,
            name,
            role: invite.role,
            grants: invite.grants,
            kind: TokenKind::Access,
            iat: now,
            exp: invite.exp.min(now + ACCESS_TOKEN_LIFETIME_SECS),
        };
        let mut answer = placement_answer(&state, client.ip(), &rtts, &claims, "joined by invitation");
        answer["token"] = state.issuer.sign(&claims).into();
        Ok(axum::Json(answer).into_response())
    }
    .await;
    result.unwrap_or_else(|refusal: Refusal| {
        refusal.as_json().counted(&state, "join").into_response()
    })
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct PlaceRequest {
    /// Round-trip times the browser measured to edges (node id → milliseconds).
    #[serde(default)]
    rtts: Option<BTreeMap<String, f64>>,
}

/// Places someone who arrived with a personal access token (a control plane's join link lands
/// on the session's home edge): the same rule as a join by invitation, and the same token
/// carries them to the chosen edge when that edge accepts its issuer. Nothing is minted: the
/// answer only says where to go.
async fn place_arrival(
    State(state): State<AppState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    Path(session): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let result = async {
        let session = parse_session(&session)?;
        let claims = authorize(&state, &headers, &session)?;
        let bytes = join_body(body).await?;
        let request: PlaceRequest = if bytes.is_empty() {
            PlaceRequest::default()
        } else {
            serde_json::from_slice(&bytes).map_err(|error| {
                Refusal::new(
                    StatusCode::BAD_REQUEST,
                    "bad_json",
                    format!("expected {{\"rtts\": {{\"<node id>\": <ms>}}}}: {error}"),
                )
            })?
        };
        let rtts = parse_rtts(request.rtts)?;
        let answer = placement_answer(
            &state,
            client.ip(),
            &rtts,
            &claims,
            "placed a participant arriving with a token",
        );
        Ok(axum::Json(answer).into_response())
    }
    .await;
    result.unwrap_or_else(|refusal: Refusal| {
        refusal.as_json().counted(&state, "place").into_response()
    })
}

/// Stores class material (slide images, a PDF, or a deck manifest listing page images) under its
/// SHA-256. Teachers and participants allowed to present may upload.
async fn upload_asset(
    State(state): State<AppState>,
    Path(session): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let result = async {
        let session = parse_session(&session)?;
        let claims = authorize(&state, &headers, &session)?;
        if claims.role != Role::Teacher {
            let presenter = state.sessions.state(session.clone()).await.is_some_and(|class| {
                class.members.get(&claims.sub).is_some_and(|m| {
                    !m.removed
                        && m.permissions
                            .contains(&multistream_proto::session::Permission::Present)
                })
            });
            if !presenter {
                return Err(Refusal::new(
                    StatusCode::FORBIDDEN,
                    "not_permitted",
                    "only the teacher or a presenter uploads class material",
                ));
            }
        }
        let Some(media_type) = assets::sniff(&body) else {
            return Err(Refusal::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_type",
                "upload PNG, JPEG, WebP or GIF images, a PDF, or a deck manifest",
            ));
        };
        let pages = match media_type {
            "application/pdf" => assets::pdf_pages(&body).ok_or_else(|| {
                Refusal::new(StatusCode::BAD_REQUEST, "bad_pdf", "this PDF has no pages the node can find")
            })?,
            DECK_MANIFEST_TYPE => {
                let manifest = assets::parse_manifest(&body)
                    .map_err(|e| Refusal::new(StatusCode::BAD_REQUEST, "bad_manifest", e))?;
                for page in &manifest.pages {
                    let stored = lookup_asset(&state, page.clone()).await?;
                    if !stored.is_some_and(|(t, _)| t.starts_with("image/")) {
                        return Err(Refusal::new(
                            StatusCode::BAD_REQUEST,
                            "missing_page",
                            format!("page {page} is not an uploaded image; upload it first"),
                        ));
                    }
                }
                manifest.pages.len() as u32
            }
            _ => 1,
        };
        let address = assets::sha256_hex(&body);
        let store = Arc::clone(&state.store);
        let (stored_address, bytes) = (address.clone(), body.len());
        tokio::task::spawn_blocking(move || store.put_asset(&stored_address, media_type, &body))
            .await
            .map_err(|_| Refusal::new(StatusCode::INTERNAL_SERVER_ERROR, "store", "the store task failed"))?
            .map_err(|e| Refusal::new(StatusCode::INTERNAL_SERVER_ERROR, "store", e.to_string()))?;
        info!(session = %session, participant = %claims.sub, %address, media_type, bytes, "asset stored");
        let answer = serde_json::json!({
            "asset": address,
            "media_type": media_type,
            "bytes": bytes,
            "pages": pages,
        });
        Ok((StatusCode::CREATED, axum::Json(answer)).into_response())
    }
    .await;
    result.unwrap_or_else(|refusal: Refusal| {
        refusal.as_json().counted(&state, "assets").into_response()
    })
}

async fn lookup_asset(
    state: &AppState,
    address: String,
) -> Result<Option<(String, Vec<u8>)>, Refusal> {
    let store = Arc::clone(&state.store);
    tokio::task::spawn_blocking(move || store.asset(&address))
        .await
        .map_err(|_| {
            Refusal::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "store",
                "the store task failed",
            )
        })?
        .map_err(|e| Refusal::new(StatusCode::INTERNAL_SERVER_ERROR, "store", e.to_string()))
}

/// Serves an uploaded asset by its address. Content-addressed, so cacheable for ever.
async fn download_asset(State(state): State<AppState>, Path(address): Path<String>) -> Response {
    if !assets::is_address(&address) {
        return Refusal::new(StatusCode::NOT_FOUND, "not_found", "no such asset")
            .counted(&state, "assets")
            .into_response();
    }
    let mut found = lookup_asset(&state, address.clone()).await;
    if let (Ok(None), Some(peers)) = (&found, &state.peers) {
        // Uploaded on another edge: fetch it (checked against its address) and keep a copy.
        // The type is decided here, from the content, never taken from the peer.
        let fetched = peers
            .fetch_asset(&address)
            .await
            .and_then(|(_, bytes)| Some((assets::sniff(&bytes)?.to_owned(), bytes)));
        if let Some((media_type, bytes)) = fetched {
            let store = Arc::clone(&state.store);
            let (kept_type, kept_bytes, kept_address) =
                (media_type.clone(), bytes.clone(), address.clone());
            let _ = tokio::task::spawn_blocking(move || {
                store.put_asset(&kept_address, &kept_type, &kept_bytes)
            })
            .await;
            found = Ok(Some((media_type, bytes)));
        }
    }
    match found {
        Ok(Some((media_type, bytes))) => (
            [
                (header::CONTENT_TYPE, media_type),
                (
                    header::CACHE_CONTROL,
                    "public, max-age=31536000, immutable".to_owned(),
                ),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_owned()),
            ],
            bytes,
        )
            .into_response(),
        Ok(None) => Refusal::new(StatusCode::NOT_FOUND, "not_found", "no such asset")
            .counted(&state, "assets")
            .into_response(),
        Err(refusal) => refusal.counted(&state, "assets").into_response(),
    }
}

fn fresh_participant_id(role: Role) -> ParticipantId {
    format!("{}-{}", role.as_str(), crate::token::random_hex(8))
        .parse()
        .expect("role names and hex digits form a valid id")
}

async fn classroom_socket(
    State(state): State<AppState>,
    Path(session): Path<String>,
    upgrade: WebSocketUpgrade,
) -> Response {
    let session = match parse_session(&session) {
        Ok(session) => session,
        Err(refusal) => return refusal.counted(&state, "ws").into_response(),
    };
    upgrade
        .max_message_size(CLIENT_MESSAGE_BYTES_MAX)
        .max_frame_size(CLIENT_MESSAGE_BYTES_MAX)
        .on_upgrade(move |socket| classroom_connection(state, session, socket))
}

/// WebSocket close codes in the private range, mirroring HTTP statuses.
const CLOSE_NORMAL: u16 = 1000;
/// The close reason of a page whose participant chose to leave the class.
const LEAVE_REASON: &str = "left";
const CLOSE_UNAUTHORIZED: u16 = 4401;
const CLOSE_FORBIDDEN: u16 = 4403;
const CLOSE_FULL: u16 = 4503;
const CLOSE_SLOW: u16 = 4408;

async fn close_with(mut socket: WebSocket, code: u16, code_name: &str, message: String) {
    let error = ServerMessage::Error {
        code: code_name.to_owned(),
        message: message.clone(),
    };
    if let Ok(text) = serde_json::to_string(&error) {
        let _ = socket.send(WsMessage::text(text)).await;
    }
    let reason: String = message.chars().take(100).collect();
    let _ = socket
        .send(WsMessage::Close(Some(CloseFrame {
            code,
            reason: reason.into(),
        })))
        .await;
}

async fn classroom_connection(state: AppState, session: SessionId, mut socket: WebSocket) {
    let hello = tokio::time::timeout(HELLO_DEADLINE, socket.recv()).await;
    let (token, resume_from) = match hello {
        Ok(Some(Ok(WsMessage::Text(text)))) => match serde_json::from_str::<ClientMessage>(&text) {
            Ok(ClientMessage::Hello { token, resume_from }) => (token, resume_from),
            Ok(_) | Err(_) => {
                state.refusals.count("ws", "bad_message");
                return close_with(
                    socket,
                    CLOSE_UNAUTHORIZED,
                    "bad_message",
                    "the first message must be a hello with a token".into(),
                )
                .await;
            }
        },
        _ => {
            state.refusals.count("ws", "no_hello");
            return close_with(
                socket,
                CLOSE_UNAUTHORIZED,
                "no_hello",
                "no hello within 10 seconds".into(),
            )
            .await;
        }
    };
    let claims = match state.issuer.verify_access(&token, unix_now_secs()) {
        Ok(claims) => claims,
        Err(error) => {
            state.refusals.count("ws", "unauthorized");
            return close_with(
                socket,
                CLOSE_UNAUTHORIZED,
                "unauthorized",
                error.to_string(),
            )
            .await;
        }
    };
    if claims.sid != session {
        state.refusals.count("ws", "wrong_session");
        return close_with(
            socket,
            CLOSE_FORBIDDEN,
            "wrong_session",
            "this token is for another session".into(),
        )
        .await;
    }
    if state.cancelled(&session) {
        state.refusals.count("ws", "session_cancelled");
        return close_with(
            socket,
            CLOSE_FORBIDDEN,
            "session_cancelled",
            "this session was cancelled".into(),
        )
        .await;
    }
    let connection = state.next_connection.fetch_add(1, Ordering::Relaxed);
    let span = info_span!("classroom", session = %session, participant = %claims.sub, connection);
    async move {
        let who = Who { id: claims.sub.clone(), name: claims.name.clone(), role: claims.role };
        let (outbound, mut inbound) = mpsc::channel(CLIENT_OUTBOUND_QUEUE_MAX);
        if !state.presence.join(connection, session.clone(), who.clone(), outbound).await {
            state.refusals.count("ws", "session_full");
            return close_with(socket, CLOSE_FULL, "session_full", "the session is full".into()).await;
        }
        info!("classroom client connected");
        let welcome = ServerMessage::Welcome {
            wire_version: WIRE_VERSION,
            session: session.clone(),
            you: ParticipantView { id: who.id.clone(), name: who.name.clone(), role: who.role, live: Vec::new() },
            can_publish: claims.grants.publish,
            edge: Some(state.edge.clone()),
        };
        let mut ok = send_json(&mut socket, &welcome).await;
        let mut left = false;
        let attached = state
            .sessions
            .attach(session.clone(), who.id.clone(), who.name.clone(), who.role, resume_from)
            .await;
        let mut attached = match attached {
            Ok(attached) => attached,
            Err(error) => {
                state.refusals.count("ws", "sessions_unavailable");
                close_with(socket, CLOSE_FULL, "unavailable", error.to_string()).await;
                state.presence.leave(connection, session).await;
                return;
            }
        };
        while ok {
            tokio::select! {
                message = inbound.recv() => match message {
                    Some(message) => ok = send_json(&mut socket, &message).await,
                    None => {
                        // Presence dropped us: we fell too far behind.
                        close_with(socket, CLOSE_SLOW, "too_slow", "the connection fell behind; reconnect".into()).await;
                        state.presence.leave(connection, session).await;
                        state.sessions.detach(attached.client);
                        return;
                    }
                },
                update = attached.inbound.recv() => match update {
                    Some(ToClient::Reply { key: None, result: Err(refusal) }) => {
                        // The class refused the join itself (removed by the teacher, or full).
                        state.refusals.count("ws", "join_refused");
                        close_with(socket, CLOSE_FORBIDDEN, &refusal.code, refusal.message).await;
                        state.presence.leave(connection, session).await;
                        state.sessions.detach(attached.client);
                        return;
                    }
                    Some(update) => {
                        // The teacher's decisions about this participant take effect here too.
                        if let ToClient::Event(event) = &update {
                            match &event.body {
                                EventBody::Removed { participant } if *participant == who.id => {
                                    let _ = state.media.drop_participant(session.clone(), who.id.clone(), false);
                                    if let Some(message) = server_message(update) {
                                        let _ = send_json(&mut socket, &message).await;
                                    }
                                    close_with(socket, CLOSE_FORBIDDEN, "removed", "the teacher removed you from this class".into()).await;
                                    state.presence.leave(connection, session).await;
                                    state.sessions.detach(attached.client);
                                    return;
                                }
                                EventBody::Revoked { participant, permission: Permission::Speak }
                                    if *participant == who.id && !claims.grants.publish =>
                                {
                                    let _ = state.media.drop_participant(session.clone(), who.id.clone(), true);
                                }
                                _ => {}
                            }
                        }
                        if let Some(message) = server_message(update) {
                            ok = send_json(&mut socket, &message).await;
                        }
                    }
                    None => {
                        close_with(socket, CLOSE_SLOW, "too_slow", "the connection fell behind; reconnect".into()).await;
                        state.presence.leave(connection, session).await;
                        return;
                    }
                },
                received = socket.recv() => match received {
                    Some(Ok(WsMessage::Text(text))) => {
                        if text.len() > CLIENT_MESSAGE_BYTES_MAX {
                            state.refusals.count("ws", "too_large");
                            let error = ServerMessage::Error { code: "too_large".into(), message: format!("messages are at most {CLIENT_MESSAGE_BYTES_MAX} bytes") };
                            ok = send_json(&mut socket, &error).await;
                            continue;
                        }
                        match serde_json::from_str::<ClientMessage>(&text) {
                            Ok(ClientMessage::Command { key, command }) => {
                                if let Err(error) = state.sessions.request(attached.client, key.clone(), command) {
                                    let refused = ServerMessage::Refused { key, code: "busy".into(), message: error.to_string() };
                                    ok = send_json(&mut socket, &refused).await;
                                }
                            }
                            Ok(ClientMessage::Hello { .. }) => {
                                let error = ServerMessage::Error { code: "already_hello".into(), message: "this connection is already authenticated".into() };
                                ok = send_json(&mut socket, &error).await;
                            }
                            Err(parse) => {
                                state.refusals.count("ws", "bad_message");
                                let error = ServerMessage::Error { code: "bad_message".into(), message: format!("the node does not understand this message: {parse}") };
                                ok = send_json(&mut socket, &error).await;
                            }
                        }
                    }
                    Some(Ok(WsMessage::Close(frame))) => {
                        // The page's "Leave the class": gone now, not after the grace a dropped
                        // connection gets.
                        left = frame.is_some_and(|f| f.code == CLOSE_NORMAL && f.reason.as_str() == LEAVE_REASON);
                        ok = false;
                    }
                    None | Some(Err(_)) => ok = false,
                    Some(Ok(_)) => {}
                },
            }
        }
        state.sessions.detach_leaving(attached.client, left);
        state.presence.leave(connection, session).await;
        info!("classroom client disconnected");
    }
    .instrument(span)
    .await
}

/// The WebSocket message for an update from the session task (`None` for answers to the
/// connection's own join, which the client does not need).
fn server_message(update: ToClient) -> Option<ServerMessage> {
    Some(match update {
        ToClient::Snapshot { seq, state } => ServerMessage::Snapshot { seq, state },
        ToClient::Event(event) => ServerMessage::Event { event },
        ToClient::Hidden(seq) => ServerMessage::Hidden { seq },
        ToClient::Reply { key: None, .. } => return None,
        ToClient::Reply {
            key: Some(key),
            result: Ok(seq),
        } => ServerMessage::Ack { key, seq },
        ToClient::Reply {
            key: Some(key),
            result: Err(refusal),
        } => ServerMessage::Refused {
            key,
            code: refusal.code,
            message: refusal.message,
        },
    })
}

async fn send_json(socket: &mut WebSocket, message: &ServerMessage) -> bool {
    match serde_json::to_string(message) {
        Ok(text) => socket.send(WsMessage::text(text)).await.is_ok(),
        Err(error) => {
            warn!(%error, "could not encode a server message");
            false
        }
    }
}

/// The plugins this edge offers (name, version, title, capabilities, where it came from, its
/// counters) and the packages it refused, with the reason.
async fn plugin_list(State(state): State<AppState>) -> Response {
    axum::Json(state.plugins.status()).into_response()
}

async fn metrics(State(state): State<AppState>) -> Response {
    let snapshot = match state.media.snapshot().await {
        Ok(snapshot) => snapshot,
        Err(error) => {
            return Refusal::new(StatusCode::SERVICE_UNAVAILABLE, "busy", error.to_string())
                .into_response();
        }
    };
    let connections = state.presence.connections().await;
    let log = state.sessions.counters().await;
    let plugins = Some(state.plugins.status());
    let mut text = crate::metrics::render(
        &snapshot,
        connections,
        &state.refusals.snapshot(),
        log.as_ref(),
        state.peers.as_ref().map(|p| &*p.counters),
        &state.peers.as_ref().map(|p| p.links()).unwrap_or_default(),
        plugins.as_ref(),
    );
    text.push_str(&state.placements.render());
    if let Some(control) = &state.control {
        text.push_str(&control.render());
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}
