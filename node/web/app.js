/*
 * multistream browser client: the join page (index.html) and the classroom page (classroom.html).
 * A plain ES module with no build step and no third-party code; the node serves it as
 * /assets/app.js and nothing is fetched from anywhere else.
 *
 * The classroom page talks to the node over three channels, each of which heals itself after a
 * network blip with capped exponential backoff:
 *   - a WebSocket, GET /ws/{session}: identity and the edge serving this page (welcome), the
 *     roster, errors, and the class log:
 *     a snapshot of the class state, then every event in order (scene, slides, whiteboard, chat,
 *     hands, permissions, feature plugins); the page's class is that snapshot with the events
 *     folded in. An event that is not for this participant (a plugin's own record, someone
 *     else's panel) arrives as `hidden` and only moves the position on. Changes are commands
 *     with idempotency keys, resent with the same key after a reconnection, and the hello names
 *     the last event applied, so that a blip costs only the events missed;
 *   - WHIP, POST /whip/{session}?source=camera|screen: publish (camera is simulcast);
 *   - WHEP, POST /whep/{session}?source=camera|screen: watch whoever is live with that source.
 * A class can span several edges (servers); each member's entry in the class names the edge they
 * are connected through. When the people present are on more than one edge, the roster shows
 * "via <edge name>" beside each of them; a class on a single edge looks as it always has.
 *
 * The token comes from the URL fragment (#token= or, after the name form, #invite=) and is kept
 * in sessionStorage so that a reload keeps the same identity; it is never sent in a URL.
 *
 * Nearest edge: before an invitation is traded for a token, the page asks GET /api/edges which
 * edges could serve it, times a few requests to each one's /healthz, and sends the fastest times
 * with the join. The node answers with the edge chosen and why; when that is another edge, the
 * page goes there, carrying the token in the fragment (#token=…&placed=<reason>) since another
 * origin's sessionStorage is out of reach. The classroom page says "Joined through <edge>
 * (<reason>)".
 *
 * Another edge when this one is gone: with a token of the cluster's issuer (accepted by every
 * edge), a page whose WebSocket has not been welcomed for FAILOVER_AFTER_MS tries the other edges
 * of the last /api/edges list in turn (its own edge stays in the rotation), with the same token
 * and the last class event applied, so it resumes where it was; media, slides and features then
 * come from the new edge too (`app.base`). A token signed by one edge's own key is only good on
 * that edge, so such a page keeps retrying its own. The node's Content-Security-Policy lists the
 * cluster's edges, so the page may reach them and nothing else.
 *
 * Feature plugins (polls, Q&A…) run on the node. The teacher switches them on and off from the
 * list GET /api/plugins gives; each one switched on has a panel that shows the latest view the
 * node addressed to this participant, drawn from the view language of plugins/sdk/src/view.rs.
 * A view is untrusted data: it is drawn with DOM nodes and textContent only, never as HTML.
 *
 * Stable element ids (the e2e test in tests/e2e relies on them):
 *   index.html       #join-link-form, #join-link, #join-link-error, #join-link-submit
 *   classroom.html   #status (role=status), #edge-status ("Server: <edge name>", while
 *                    connected), #alert (role=alert)
 *     views          #problem (#problem-title, #problem-text), #join, #classroom, #left (#left-title)
 *     name form      #join-form, #name, #name-error, #join-submit
 *     student view   #stage, #screen-tile, #screen-video, #camera-tile, #teacher-video,
 *                    #camera-note, #enable-sound
 *     teacher view   #studio, #preview, #preview-note, #screen-preview-tile, #screen-preview,
 *                    #start-camera, #mute-mic, #camera-off, #share-screen, #stop-publishing,
 *                    #share-note
 *     both           #class-title, #live-list, #roster-list, #leave, #rejoin, #sync-status,
 *                    #notice (#notice-text, role=alert; #notice-dismiss), #announcer
 *     scene          #classroom[data-scene], #scene-bar (presenters: #scene-camera, #scene-slides,
 *                    #scene-whiteboard, #scene-screen, aria-pressed), #scene-label
 *     slides         #slides (#slide-image, #slide-frame, #slide-fallback, #slide-caption);
 *                    presenters: #slides-tools (#slides-file, #slides-upload-status,
 *                    #slides-prev, #slides-page, #slides-next)
 *     whiteboard     #board, #board-surface, #board-canvas, #board-tools
 *                    (input[name=board-color], #board-undo, #board-clear), #board-note
 *     hands          #raise-hand (not teachers), #hands (#hands-list, #lower-all-hands)
 *     chat           #chat-log (role=log) > #chat-list (li[data-seq]; li.pending while sending;
 *                    li.plugin[data-plugin] for a feature's line), #chat-form, #chat-input,
 *                    #chat-send, #chat-readonly (guests)
 *     features       teacher: #features (#features-list > li[data-plugin] >
 *                    button[role=switch][data-plugin][aria-checked], .feature-state;
 *                    #features-status)
 *     plugin panels  #plugin-panels > section.plugin-panel[data-plugin] (one per feature on), each
 *                    with h2.plugin-title, .plugin-health (role=status), .plugin-notice
 *                    (.plugin-notice-text, role=alert) and .plugin-view[data-seq] holding the
 *                    blocks: h3.plugin-heading, p.plugin-text, form.plugin-choices[data-action]
 *                    (input[type=radio|checkbox][value=index], button[type=submit]),
 *                    .plugin-bars (li[data-label][data-value] > .bar-text "label — value",
 *                    .bar-names), ul.plugin-list (li > .item-text, .item-note,
 *                    button[data-action]), button.plugin-button[data-action],
 *                    form.plugin-form[data-action] (input/textarea[name], button[type=submit])
 *     people         #roster-list > li[data-participant]; beside a present person, when the
 *                    people present are on more than one edge: span.person-edge[data-edge]
 *                    ("via <edge name>"; .same-edge or .other-edge: on this page's edge or not)
 *                    teacher actions in #roster-list: button[data-action=speak|draw|present|
 *                    remove][data-participant]; in #hands-list: button[data-action=lower-hand]
 *
 * Test hook, window.multistream (classroom page only):
 *   pcs()   -> [{name, source: 'camera'|'screen', direction: 'publish'|'watch', pc}] for every
 *              media connection that currently has an RTCPeerConnection; name is
 *              `${direction}-${source}`, e.g. 'watch-camera'.
 *   state() -> {connected: boolean (WebSocket open and welcomed), you,
 *              edge: the edge serving this page {id (node id), name} | null,
 *              base: '' (the edge that served the page) or the base URL of the edge the page
 *              moved to, placement: the "Joined through …" text shown | null,
 *              moves: times the page moved to another edge,
 *              edges: how many edges the people present are on (this page's included),
 *              roster: [{id, name, role, live, edge, edgeName}] (edge: from the class),
 *              synced: a snapshot was applied, seq: last class event applied, scene, page,
 *              deck: {asset, title, pages} | null, board: number of strokes,
 *              chat: [texts], hands: [participant ids], members: {id: {name, role, present,
 *              removed, permissions, edge: node id | null, edgeName: string | null}},
 *              waiting: commands not yet answered,
 *              notice: text shown in #notice-text, lastRefusal: {command, code, message} | null,
 *              resyncs: times this page started over after a gap in the events,
 *              plugins: {name: {title, version, enabled, health, reason, seq (of the view shown),
 *              view}}, pluginNotices: {name: text shown in its panel},
 *              features: names GET /api/plugins offered (teachers) | null}
 *   command(command) -> Promise<{ok: true, key, seq} | {ok: false, key, code, message}>: sends
 *              a class command through the same path as the buttons (refusals are shown).
 */

// ---------------------------------------------------------------------------------------------
// Limits. Each is a named constant with the reason for its size.

/** First retry delay: short, so that a blip heals before most people notice. */
const RETRY_DELAY_FIRST_MS = 500;
/** Longest delay between retries: once the network is back, the class resumes within this. */
const RETRY_DELAY_MAX_MS = 8_000;
/** A media connection may stay 'disconnected' this long before it is rebuilt; ICE often
 * recovers by itself within a second or two. */
const MEDIA_DISCONNECTED_GRACE_MS = 3_000;
/** A new media connection that has not connected by then is rebuilt (loopback takes < 1 s, a
 * slow school network a few seconds). */
const MEDIA_CONNECT_TIMEOUT_MS = 15_000;
/** The node answers a hello at once; without a welcome by then the socket is retried. */
const WELCOME_TIMEOUT_MS = 10_000;
/** Longest Retry-After we honour, so that a wrong header cannot park a class for hours. */
const RETRY_AFTER_MAX_MS = 30_000;
/** Longest server text shown to people; the rest of a runaway error body is cut off. */
const SERVER_TEXT_CHARS_MAX = 300;
/** Longest display name, in characters (proto: DISPLAY_NAME_CHARS_MAX). */
const DISPLAY_NAME_CHARS_MAX = 64;
/** Longest edge (node) id kept: an iroh node id is 64 hex characters; a longer one is cut. */
const EDGE_ID_CHARS_MAX = 128;
/** Newest WebSocket message set this client understands (proto: WIRE_VERSION). */
const WIRE_VERSION = 1;
/** WebSocket close codes after which retrying cannot help: bad token, not allowed. */
const WS_CLOSE_UNAUTHORIZED = 4401;
const WS_CLOSE_FORBIDDEN = 4403;

/** Edges kept from GET /api/edges: a cluster is at most 65 edges (node: CLUSTER_PEERS_MAX and
 * this one); a longer list is cut. */
const EDGES_MAX = 65;
/** Round-trip times sent with a join, at most (node: RTTS_MAX); the edges listed first win. */
const RTTS_MAX = 16;
/** Requests timed per edge; the fastest counts (the first also pays for the connection). */
const RTT_PROBES = 3;
/** One timing request may take this long; an edge that does not answer is skipped. */
const RTT_PROBE_TIMEOUT_MS = 1_500;
/** Largest round-trip time the node accepts, in milliseconds (node: RTT_MS_MAX). */
const RTT_MS_MAX = 60_000;
/** A page whose edge has not welcomed it for this long tries the other edges (cluster tokens):
 * long enough for a restart or a network blip to heal in place. */
const FAILOVER_AFTER_MS = 5_000;
/** How often the page refreshes its list of edges while in class. */
const EDGES_REFRESH_MS = 30_000;
/** The issuer name of a token every edge of the cluster accepts (node: CLUSTER_ISSUER_PREFIX). */
const CLUSTER_ISSUER_PREFIX = 'multistream-cluster:';
/** Why the node placed a join where it did (node: PLACEMENT_REASONS), in words for people; an
 * empty string says nothing more than the edge's name. */
const PLACEMENT_WORDS = {
  campus: 'your campus network',
  nearest: 'nearest',
  least_loaded: 'least busy',
  only_choice: '',
  no_cluster_issuer: '',
  issuer_mismatch: '',
};

/** Chat lines the page keeps, as the node keeps in its class state (CHAT_KEPT_MAX). */
const CHAT_KEPT_MAX = 500;
/** Longest chat line, in characters (proto: CHAT_CHARS_MAX). */
const CHAT_CHARS_MAX = 2_000;
/** Points in one whiteboard stroke (proto: STROKE_POINTS_MAX); a longer line goes in pieces. */
const STROKE_POINTS_MAX = 1_000;
/** Whiteboard coordinates run from 0 to this on each axis (proto: BOARD_EXTENT). */
const BOARD_EXTENT = 10_000;
/** Pen width in board units (ten-thousandths of the board's width): about 3 px on a laptop. */
const BOARD_STROKE_WIDTH = 30;
/** Strokes drawn here and not yet confirmed by the node, at most: past it the pen waits, so
 * that a board the node cannot keep up with does not fill this page's memory. */
const BOARD_PENDING_STROKES_MAX = 50;
/** Commands sent and not yet answered, at most: below the node's own limit per connection
 * (CLIENT_PENDING_MAX = 64), so that the node does not have to refuse us as busy. */
const COMMANDS_IN_FLIGHT_MAX = 32;
/** Commands waiting to be sent, at most: an unreachable node cannot grow this without bound. */
const OUTBOX_MAX = 256;
/** Commands per second, steady, and the burst allowed above it (a quickly written word is a
 * dozen strokes). */
const COMMAND_RATE_PER_S = 10;
const COMMAND_BURST = 30;
/** Tries of a command the node refuses as busy for a moment, before the refusal is shown. */
const COMMAND_ATTEMPTS_MAX = 4;
/** Refusal codes that mean "not now" rather than "no". */
const TRANSIENT_REFUSALS = ['busy', 'rate_limited'];
/** Largest upload, in bytes (node: ASSET_BYTES_MAX). */
const ASSET_BYTES_MAX = 25 * 1024 * 1024;
/** Pages of one deck, at most (proto: DECK_PAGES_MAX). */
const DECK_PAGES_MAX = 500;
/** Longest deck title, in characters (node: 200). */
const DECK_TITLE_CHARS_MAX = 200;
/** A content address: the lowercase hex SHA-256 of an uploaded file. */
const ASSET_ADDRESS = /^[0-9a-f]{64}$/;
/** Decks whose kind (page images or a PDF) the page remembers; a class rarely opens more. */
const DECKS_KEPT_MAX = 8;
/** How long a notice (a refusal, an upload result) stays on screen, unless it has focus. */
const NOTICE_VISIBLE_MS = 12_000;
/** Shortest time between two reconnections for a gap in the class events. */
const RESYNC_INTERVAL_MIN_MS = 5_000;
/** Announcements read out together at most; a burst (catching up after a blip) is summed up. */
const ANNOUNCEMENTS_MAX = 3;

/** A feature plugin's name (proto: valid_plugin_name, PLUGIN_NAME_LEN_MAX = 64). */
const PLUGIN_NAME = /^[a-z0-9-]{1,64}$/;
/** How a plugin is doing in a class (proto: PluginHealth). */
const PLUGIN_HEALTHS = ['healthy', 'degraded', 'quarantined'];
/** Blocks of one view drawn, and items of one block: a view is at most 24 KiB (proto:
 * PLUGIN_VIEW_BYTES_MAX), so an honest plugin never reaches these; they bound a broken one. */
const PLUGIN_BLOCKS_MAX = 200;
const PLUGIN_ITEMS_MAX = 500;
/** Longest text of a plugin drawn, in characters (a view is plugin output: untrusted). */
const PLUGIN_TEXT_CHARS_MAX = 2_000;
/** A plugin's notice stays at least this long, even when its panel changes at once. */
const PLUGIN_NOTICE_MIN_MS = 4_000;
/** My plugin actions whose typed input is kept, in case the plugin refuses them (its notice
 * names the action): the input goes back into the form, as an unsent chat line does. */
const PLUGIN_SENT_KEPT_MAX = 32;

/** Camera simulcast layers (quarter, half, full resolution): the node picks one per student
 * so that a slow connection still gets a picture. */
const CAMERA_ENCODINGS = [
  { rid: 'q', scaleResolutionDownBy: 4, maxBitrate: 150_000 },
  { rid: 'h', scaleResolutionDownBy: 2, maxBitrate: 500_000 },
  { rid: 'f', maxBitrate: 1_500_000 },
];

// ---------------------------------------------------------------------------------------------
// Small helpers.

const $ = (id) => document.getElementById(id);

/** Delay before retry number `attempt` (0-based): doubling from the first delay up to the cap,
 * with ±20 % jitter so that a whole class does not reconnect in lockstep after a node restart.
 * Retries never stop (a student left alone in a tab should be back when the network is); the
 * ceiling is on the delay. */
function retryDelayMs(attempt) {
  const base = RETRY_DELAY_FIRST_MS * 2 ** Math.min(attempt, 10);
  return Math.round(Math.min(RETRY_DELAY_MAX_MS, base) * (0.8 + Math.random() * 0.4));
}

/** Sets text only when it changes, so live regions do not repeat themselves. */
function setText(element, text) {
  if (element.textContent !== text) element.textContent = text;
}

function storage() {
  // sessionStorage throws in some privacy modes; the class still works, only reload does not.
  try {
    return window.sessionStorage;
  } catch {
    return null;
  }
}
function remember(key, value) {
  try {
    if (value === null) storage()?.removeItem(key);
    else storage()?.setItem(key, value);
  } catch {
    // Full or blocked storage: same as above.
  }
}
function recall(key) {
  try {
    return storage()?.getItem(key) ?? null;
  } catch {
    return null;
  }
}

// ---------------------------------------------------------------------------------------------
// Edges. The page talks to the edge that served it ('' as a base: relative URLs) unless it moved
// to another one of the cluster (its base URL, checked).

/** A URL on the edge the page talks to now. */
const edgeUrl = (path) => `${app.base}${path}`;

/** An edge's base URL as the node gives it (http(s), host, port; nothing else), or null. */
function edgeBase(text) {
  if (typeof text !== 'string' || text.length > 200) return null;
  try {
    const url = new URL(text);
    if (url.protocol !== 'http:' && url.protocol !== 'https:') return null;
    if (url.pathname !== '/' || url.search || url.hash || url.username || url.password) return null;
    return url.origin;
  } catch {
    return null;
  }
}

/** The WebSocket URL of the class on the edge with this base. */
function socketUrl(base, session) {
  const where = base ? new URL(base) : window.location;
  const scheme = where.protocol === 'https:' ? 'wss' : 'ws';
  return `${scheme}://${where.host}/ws/${encodeURIComponent(session)}`;
}

/** fetch() that gives up after `ms`. */
async function fetchWithin(url, ms, init = {}) {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), ms);
  try {
    return await fetch(url, { ...init, signal: controller.signal });
  } finally {
    clearTimeout(timer);
  }
}

/** The edges GET /api/edges on the edge with base `from` lists: [{id, name, url, base}], base
 * '' for the edge that served this page. Empty when the list cannot be had. */
async function loadEdges(from) {
  let answer;
  try {
    const response = await fetchWithin(`${from}/api/edges`, RTT_PROBE_TIMEOUT_MS * 2, { cache: 'no-store' });
    if (!response.ok) return [];
    answer = await response.json();
  } catch {
    return [];
  }
  const raw = Array.isArray(answer?.edges) ? answer.edges.slice(0, EDGES_MAX) : [];
  const edges = [];
  for (const entry of raw) {
    if (!isId(entry?.id) || entry.id.length > EDGE_ID_CHARS_MAX) continue;
    const url = edgeBase(entry.url);
    const self = entry.this === true && from === '';
    if (!url && !self) continue;
    const base = self || url === window.location.origin ? '' : url;
    const name = String(entry.name ?? '').trim().slice(0, DISPLAY_NAME_CHARS_MAX) || defaultEdgeName(entry.id);
    edges.push({ id: entry.id, name, url, base });
  }
  return edges;
}

/** The fastest of RTT_PROBES requests to the edge's /healthz, in ms, or null if it does not
 * answer. */
async function timeEdge(edge) {
  let best = null;
  for (let i = 0; i < RTT_PROBES; i += 1) {
    const started = performance.now();
    try {
      const response = await fetchWithin(`${edge.base}/healthz`, RTT_PROBE_TIMEOUT_MS, { cache: 'no-store', credentials: 'omit' });
      if (!response.ok) return best;
      await response.arrayBuffer();
    } catch {
      return best; // unreachable, refused by the page's policy, or too slow: skipped
    }
    const ms = performance.now() - started;
    best = best === null ? ms : Math.min(best, ms);
  }
  return best;
}

/** Times every edge (at most RTTS_MAX, in parallel): {node id: ms}. */
async function measureEdges(edges) {
  const timed = await Promise.all(edges.slice(0, RTTS_MAX).map(async (edge) => [edge.id, await timeEdge(edge)]));
  const rtts = {};
  for (const [id, ms] of timed) {
    if (ms !== null && Number.isFinite(ms)) rtts[id] = Math.min(RTT_MS_MAX, Math.max(0, Math.round(ms * 10) / 10));
  }
  return rtts;
}

/** "Joined through North campus (nearest)." */
function placedText(edgeName, reason) {
  const why = PLACEMENT_WORDS[reason];
  return why ? `Joined through ${edgeName} (${why}).` : `Joined through ${edgeName}.`;
}

const isClusterToken = (claims) => typeof claims?.iss === 'string' && claims.iss.startsWith(CLUSTER_ISSUER_PREFIX);

// ---------------------------------------------------------------------------------------------
// Tokens. The node verifies signatures; the client only reads the payload to choose a view and
// to say plainly when a link has expired.

/** The claims of a JWT, or null when it is not one. */
function decodeToken(jwt) {
  const parts = typeof jwt === 'string' ? jwt.split('.') : [];
  if (parts.length !== 3) return null;
  try {
    const base64 = parts[1].replace(/-/g, '+').replace(/_/g, '/');
    const padded = base64 + '='.repeat((4 - (base64.length % 4)) % 4);
    const bytes = Uint8Array.from(atob(padded), (char) => char.charCodeAt(0));
    const claims = JSON.parse(new TextDecoder().decode(bytes)); // names may be any UTF-8
    const wellFormed = claims && typeof claims.sid === 'string' && typeof claims.exp === 'number'
      && typeof claims.role === 'string' && typeof claims.kind === 'string';
    return wellFormed ? claims : null;
  } catch {
    return null;
  }
}

const isExpired = (claims) => claims.exp * 1000 <= Date.now();

const tokenKey = (session) => `multistream.token.${session}`;
const inviteKey = (session) => `multistream.invite.${session}`;

// ---------------------------------------------------------------------------------------------
// HTTP errors from the node: status, the human text it sent, and whether trying again can help.

class HttpError extends Error {
  constructor(status, message, retryAfterMs) {
    super(message);
    this.status = status;
    this.retryAfterMs = retryAfterMs;
  }

  /** 408/429/5xx are passing conditions (busy, full, restarting); other 4xx will not change. */
  get retryable() {
    return this.status === 408 || this.status === 429 || this.status >= 500;
  }
}

/** Reads a failed response into an HttpError with the server's own words when it sent any. */
async function httpError(response) {
  let text = '';
  try {
    text = (await response.text()).trim();
    if ((response.headers.get('Content-Type') || '').includes('json')) {
      text = JSON.parse(text).message || text;
    }
  } catch {
    // No readable body: fall back to the status below.
  }
  text = text.slice(0, SERVER_TEXT_CHARS_MAX) || `The server answered ${response.status} ${response.statusText}.`.trim();
  return new HttpError(response.status, text, retryAfterMs(response.headers.get('Retry-After')));
}

function retryAfterMs(header) {
  if (!header) return 0;
  const seconds = Number(header);
  const ms = Number.isFinite(seconds) ? seconds * 1000 : Date.parse(header) - Date.now();
  return Number.isFinite(ms) ? Math.max(0, Math.min(ms, RETRY_AFTER_MAX_MS)) : 0;
}

// ---------------------------------------------------------------------------------------------
// MediaLink: one WHIP (publish) or WHEP (watch) connection that rebuilds itself when it breaks.
//
// health: 'connecting' | 'connected' | 'reconnecting' | 'failed' (will not retry) | 'stopped'
// detail: the reason for 'reconnecting' or 'failed', in words for people (or '').

class MediaLink {
  #retryTimer = null;
  #graceTimer = null;
  #connectTimer = null;

  /**
   * @param {object} options
   * @param {string} options.session
   * @param {string} options.token access token, sent as a Bearer header
   * @param {'publish'|'watch'} options.direction
   * @param {'camera'|'screen'} options.source
   * @param {(pc: RTCPeerConnection) => void} options.addTransceivers what to send or receive
   * @param {(stream: MediaStream) => void} [options.onStream] receiving side: tracks to show
   * @param {() => void} options.onChange health or detail changed
   */
  constructor(options) {
    this.options = options;
    this.direction = options.direction;
    this.source = options.source;
    this.name = `${options.direction}-${options.source}`;
    this.pc = null;
    this.resourceUrl = null;
    this.health = 'connecting';
    this.detail = '';
    this.attempt = 0;
  }

  get #endpoint() {
    const kind = this.direction === 'publish' ? 'whip' : 'whep';
    return edgeUrl(`/${kind}/${encodeURIComponent(this.options.session)}?source=${this.source}`);
  }

  get #authorization() {
    return { Authorization: `Bearer ${this.options.token}` };
  }

  start() {
    this.#connect();
    return this;
  }

  async #connect() {
    if (this.health === 'stopped') return;
    // No ICE servers: the node is ICE-lite and puts its own host candidate in the answer.
    const pc = new RTCPeerConnection({ bundlePolicy: 'max-bundle' });
    this.pc = pc;
    this.options.addTransceivers(pc);
    pc.onconnectionstatechange = () => this.#onConnectionState(pc);
    try {
      // No trickle ICE on the node, and no need to wait for gathering: it learns our address
      // from our first connectivity check.
      await pc.setLocalDescription();
      // The edge asked now; the page may move to another while the answer is on its way.
      const endpoint = this.#endpoint;
      const response = await fetch(endpoint, {
        method: 'POST',
        headers: { ...this.#authorization, 'Content-Type': 'application/sdp' },
        body: pc.localDescription.sdp,
      });
      const location = response.ok ? response.headers.get('Location') : null;
      const resourceUrl = location ? new URL(location, new URL(endpoint, window.location.href)).href : null;
      if (pc !== this.pc) {
        // Stopped or restarted while the offer was in flight: free what the node just made.
        if (resourceUrl) this.#delete(resourceUrl);
        return;
      }
      if (!response.ok) throw await httpError(response);
      this.resourceUrl = resourceUrl;
      await pc.setRemoteDescription({ type: 'answer', sdp: await response.text() });
      if (pc !== this.pc) return;
      // Receiver tracks exist from the start and unmute when media flows; show them now so the
      // picture appears with the first frame.
      this.options.onStream?.(new MediaStream(pc.getReceivers().map((receiver) => receiver.track)));
      this.#connectTimer = setTimeout(() => {
        if (pc === this.pc && pc.connectionState !== 'connected') {
          this.#retry('The connection took too long to start.');
        }
      }, MEDIA_CONNECT_TIMEOUT_MS);
    } catch (error) {
      if (pc !== this.pc) return;
      if (error instanceof HttpError && !error.retryable) {
        this.#teardown();
        this.#set('failed', error.message);
      } else if (error instanceof HttpError) {
        this.#retry(error.message, error.retryAfterMs);
      } else if (error instanceof TypeError) {
        this.#retry('The class server cannot be reached.'); // fetch failed: offline or node down
      } else {
        this.#retry(`The connection could not be set up (${error.message}).`);
      }
    }
  }

  #onConnectionState(pc) {
    if (pc !== this.pc) return;
    const state = pc.connectionState;
    if (state === 'connected') {
      this.#clearTimers();
      this.attempt = 0;
      this.#set('connected', '');
    } else if (state === 'failed') {
      this.#retry('The connection was lost.');
    } else if (state === 'disconnected' && !this.#graceTimer) {
      this.#set('reconnecting', 'The connection is interrupted.');
      this.#graceTimer = setTimeout(() => {
        this.#graceTimer = null;
        if (pc === this.pc && pc.connectionState !== 'connected') this.#retry('The connection was lost.');
      }, MEDIA_DISCONNECTED_GRACE_MS);
    }
  }

  /** Drops the current connection and builds a new one after a backoff delay. */
  #retry(detail, atLeastMs = 0) {
    this.#teardown();
    const delay = Math.max(atLeastMs, retryDelayMs(this.attempt));
    this.attempt += 1;
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = null;
      this.#connect();
    }, delay);
    this.#set('reconnecting', detail);
  }

  /** Closes the peer connection and, without waiting, frees its resource on the node. */
  #teardown() {
    this.#clearTimers();
    const { pc, resourceUrl } = this;
    this.pc = null;
    this.resourceUrl = null;
    pc?.close();
    if (resourceUrl) this.#delete(resourceUrl);
  }

  #delete(url, keepalive = false) {
    return fetch(url, { method: 'DELETE', headers: this.#authorization, keepalive }).catch(() => {
      // The node also reaps peers that stop answering; nothing else to do here.
    });
  }

  #clearTimers() {
    clearTimeout(this.#retryTimer);
    clearTimeout(this.#graceTimer);
    clearTimeout(this.#connectTimer);
    this.#retryTimer = this.#graceTimer = this.#connectTimer = null;
  }

  #set(health, detail) {
    if (this.health === 'stopped') return;
    this.health = health;
    this.detail = detail;
    this.options.onChange();
  }

  /** Tries again at once, skipping the backoff or a permanent failure: used when the node is
   * known to be back (a fresh welcome on the WebSocket) or the browser comes back online. */
  retryNow(force = false) {
    const waiting = this.health === 'reconnecting' && this.#retryTimer !== null;
    if (this.health === 'stopped' || (!force && this.health !== 'failed' && !waiting)) return;
    if (force) this.#teardown();
    this.#clearTimers();
    this.attempt = 0;
    this.#set('reconnecting', '');
    this.#connect();
  }

  /** Ends the connection for good: closes it and waits for the node to free the resource. */
  async stop() {
    const url = this.resourceUrl;
    this.resourceUrl = null;
    this.#teardown();
    this.health = 'stopped';
    if (url) await this.#delete(url);
  }

  /** For a page being unloaded: keepalive lets the DELETE outlive the page. */
  abandon() {
    const url = this.resourceUrl;
    this.resourceUrl = null;
    this.#teardown();
    this.health = 'stopped';
    if (url) this.#delete(url, true);
  }
}

// ---------------------------------------------------------------------------------------------
// SessionSocket: the session WebSocket, re-opened with backoff until closed on purpose. When
// its edge has not welcomed it for FAILOVER_AFTER_MS, each further attempt goes to the next edge
// `fallbacks()` names (then back to the page's own), until one welcomes it.
//
// state: 'connecting' (first time) | 'open' (welcomed) | 'reconnecting' | 'refused' | 'closed'

class SessionSocket {
  #ws = null;
  #retryTimer = null;
  #welcomeTimer = null;
  /** When the socket was last lost (0 while welcomed). */
  #downSince = 0;
  /** Edges (bases) that refused the token since the last welcome: not tried again until then. */
  #refusedBases = new Set();
  /** The edge that welcomed the socket last ('' at first: the page's own). */
  #welcomedBase = '';
  /** Whether this outage has already moved the socket to another edge. */
  #movedInOutage = false;

  /**
   * @param {object} options
   * @param {string} options.session
   * @param {string} options.token
   * @param {() => object} options.hello the hello to send on each (re)connection: it carries
   *   the last class event applied, so that the node sends only what was missed
   * @param {(message: object) => void} options.onMessage every server message, parsed
   * @param {() => void} options.onChange state or refusal changed
   * @param {() => string[]} options.fallbacks other edges' bases to try when this one is gone
   *   (empty: stay)
   * @param {(base: string) => void} options.onMoved welcomed by another edge than before
   */
  constructor(options) {
    this.options = options;
    /** The edge tried or connected now: '' for the page's own, else another edge's base URL. */
    this.base = '';
    this.state = 'closed';
    this.attempt = 0;
    this.refusal = '';
    /** The close code of a refusal (4401, 4403) and the node's reason, for the caller. */
    this.refusalCode = 0;
    this.refusalReason = '';
  }

  open() {
    this.attempt = 0;
    this.refusal = '';
    this.#connect('connecting');
  }

  /** Reconnects now instead of waiting out the backoff (used when the browser comes online). */
  nudge() {
    if (this.state === 'reconnecting' && this.#retryTimer) {
      clearTimeout(this.#retryTimer);
      this.#connect('reconnecting');
    }
  }

  /** Sends a message on the welcomed connection; false when there is none (the caller keeps
   * it and sends it after the next welcome). */
  send(message) {
    if (this.state !== 'open' || this.#ws?.readyState !== WebSocket.OPEN) return false;
    this.#ws.send(JSON.stringify(message));
    return true;
  }

  /** Drops the connection and opens a new one at once: used when the class events have a gap,
   * so that the node sends what is missing (or a fresh snapshot). */
  restart() {
    if (this.state === 'refused' || this.state === 'closed') return;
    clearTimeout(this.#retryTimer);
    clearTimeout(this.#welcomeTimer);
    const ws = this.#ws;
    this.#ws = null;
    ws?.close(1000, 'resync');
    this.#connect('reconnecting');
  }

  close() {
    clearTimeout(this.#retryTimer);
    clearTimeout(this.#welcomeTimer);
    const ws = this.#ws;
    this.#ws = null;
    ws?.close(1000, 'left');
    this.#set('closed');
  }

  #connect(state) {
    this.#retryTimer = null;
    const base = this.base;
    const ws = new WebSocket(socketUrl(base, this.options.session));
    this.#ws = ws;
    this.#set(state);
    // Also bounds the opening itself: an edge whose machine is gone may never answer at all.
    clearTimeout(this.#welcomeTimer);
    this.#welcomeTimer = setTimeout(() => ws.close(4000, 'no welcome'), WELCOME_TIMEOUT_MS);
    ws.onopen = () => {
      ws.send(JSON.stringify(this.options.hello()));
    };
    ws.onmessage = (event) => {
      if (ws !== this.#ws) return;
      let message;
      try {
        message = JSON.parse(event.data);
      } catch {
        return; // Not ours to interpret; the node only sends JSON.
      }
      if (message?.type === 'welcome') {
        clearTimeout(this.#welcomeTimer);
        this.attempt = 0;
        this.#downSince = 0;
        this.#movedInOutage = false;
        this.#refusedBases.clear();
        const moved = base !== this.#welcomedBase;
        this.#welcomedBase = base;
        if (moved) this.options.onMoved(base);
        this.#set('open');
      }
      this.options.onMessage(message);
    };
    ws.onclose = (event) => {
      if (ws !== this.#ws) return;
      clearTimeout(this.#welcomeTimer);
      if (event.code === WS_CLOSE_UNAUTHORIZED && base !== this.#welcomedBase) {
        // Another edge than the one that welcomed us does not take this token: skip it.
        this.#refusedBases.add(base);
      } else if (event.code === WS_CLOSE_UNAUTHORIZED || event.code === WS_CLOSE_FORBIDDEN) {
        const reason = event.reason.replace(/[.\s]+$/, '');
        this.refusalCode = event.code;
        this.refusalReason = reason;
        const why = reason ? ` (the server says: ${reason})` : '';
        this.refusal = event.code === WS_CLOSE_UNAUTHORIZED
          ? `The class did not accept your link${why}. It may have expired.`
          : `You are not allowed in this class${why}.`;
        this.#ws = null;
        this.#set('refused');
        return;
      }
      this.#ws = null;
      if (!this.#downSince) this.#downSince = Date.now();
      // The first other edge of an outage is tried after the first delay; then backoff as usual.
      const first = this.#chooseEdge() && !this.#movedInOutage;
      if (first) this.#movedInOutage = true;
      this.#retryTimer = setTimeout(() => this.#connect('reconnecting'), retryDelayMs(first ? 0 : this.attempt));
      this.attempt += 1;
      this.#set('reconnecting');
    };
  }

  /** Down for FAILOVER_AFTER_MS: the next attempt goes to the next edge in turn (the one that
   * welcomed us last, then the others). Before that, or without others, it stays. Returns
   * whether the edge changed. */
  #chooseEdge() {
    const before = this.base;
    if (Date.now() - this.#downSince < FAILOVER_AFTER_MS) return false;
    const bases = [this.#welcomedBase];
    for (const base of ['', ...this.options.fallbacks()]) {
      if (!bases.includes(base) && !this.#refusedBases.has(base)) bases.push(base);
    }
    this.base = bases.length < 2
      ? this.#welcomedBase
      : bases[(bases.indexOf(this.base) + 1) % bases.length];
    return this.base !== before;
  }

  #set(state) {
    this.state = state;
    this.options.onChange();
  }
}

// ---------------------------------------------------------------------------------------------
// The class: a fold of the session log. The node sends a snapshot of its class state (the same
// shape as node/src/log/class.rs `ClassState`) and then every event in order; the page shows
// `snapshot + events`. Anything malformed is skipped rather than allowed to break the page, and
// event kinds this page does not know are ignored (a newer node may add some).

const SCENES = ['camera', 'slides_and_camera', 'whiteboard_and_camera', 'screen'];
const SCENE_LABELS = {
  camera: 'camera',
  slides_and_camera: 'slides and camera',
  whiteboard_and_camera: 'whiteboard and camera',
  screen: 'shared screen',
};
const PERMISSIONS = ['speak', 'present', 'draw'];

function emptyClass() {
  return { seq: 0, members: {}, scene: 'camera', deck: null, page: 0, board: [], chat: [], hands: [], plugins: new Map() };
}

const isId = (value) => typeof value === 'string' && value.length > 0;

function validDeck(deck) {
  if (!deck || typeof deck !== 'object' || !ASSET_ADDRESS.test(deck.asset)) return null;
  const pages = Number(deck.pages);
  if (!Number.isInteger(pages) || pages < 1) return null;
  return { asset: deck.asset, title: String(deck.title ?? ''), pages };
}

function validStroke(stroke) {
  if (!stroke || typeof stroke !== 'object' || !Array.isArray(stroke.points)) return null;
  const points = stroke.points.filter((point) => Array.isArray(point) && point.length === 2
    && Number.isFinite(point[0]) && Number.isFinite(point[1]));
  if (!points.length) return null;
  const color = /^#[0-9a-fA-F]{6}$/.test(stroke.color) ? stroke.color : '#000000';
  const width = Number.isFinite(stroke.width) ? stroke.width : BOARD_STROKE_WIDTH;
  return { id: stroke.id, color, width, points };
}

/** A chat line; `plugin` names the feature that posted it (from: whoever's action led to it). */
function chatLine(seq, at, from, text, plugin = null) {
  return {
    seq: Number(seq) || 0,
    at: Number(at) || 0,
    from: String(from ?? ''),
    text: String(text ?? ''),
    plugin: PLUGIN_NAME.test(plugin ?? '') ? plugin : null,
  };
}

/** A plugin's view (plugins/sdk/src/view.rs), or null when it is not one. Its blocks are checked
 * one by one when they are drawn. */
function validView(view) {
  if (!view || typeof view !== 'object' || !Array.isArray(view.blocks)) return null;
  return { title: String(view.title ?? ''), blocks: view.blocks.slice(0, PLUGIN_BLOCKS_MAX) };
}

/** A feature of the class: {title, version, enabled, health, reason, viewSeq, view}. */
function classPlugin(name, raw = {}) {
  return {
    title: String(raw.title || name),
    version: String(raw.version ?? ''),
    enabled: Boolean(raw.enabled),
    health: PLUGIN_HEALTHS.includes(raw.health) ? raw.health : 'healthy',
    reason: String(raw.reason ?? '').slice(0, SERVER_TEXT_CHARS_MAX),
    viewSeq: 0,
    view: null,
  };
}

/** The edge a member is connected through, from a snapshot's member or a `joined` event:
 * {edge: node id | null, edgeName: its name for people | null}. An older event without a name
 * is named after the id, as the node names an edge that has no configured name. */
function memberEdge(raw) {
  const edge = isId(raw.edge) ? raw.edge.slice(0, EDGE_ID_CHARS_MAX) : null;
  if (!edge) return { edge: null, edgeName: null };
  const name = typeof raw.edge_name === 'string' ? raw.edge_name.trim().slice(0, DISPLAY_NAME_CHARS_MAX) : '';
  return { edge, edgeName: name || defaultEdgeName(edge) };
}

/** An edge's name when none was given: "edge " and the first 8 characters of its node id. */
const defaultEdgeName = (id) => `edge ${id.slice(0, 8)}`;

/** The class state from a snapshot message, checked field by field. A scene this page does not
 * know keeps the one shown before (`previousScene`). */
function classFromSnapshot(seq, raw, previousScene = 'camera') {
  const state = emptyClass();
  state.scene = previousScene;
  state.seq = Number(seq) || 0;
  if (!raw || typeof raw !== 'object') return state;
  if (raw.members && typeof raw.members === 'object') {
    for (const [id, member] of Object.entries(raw.members)) {
      if (!member || typeof member !== 'object') continue;
      state.members[id] = {
        name: String(member.name ?? id),
        role: String(member.role ?? 'student'),
        present: Boolean(member.present),
        removed: Boolean(member.removed),
        permissions: Array.isArray(member.permissions) ? member.permissions.filter((p) => PERMISSIONS.includes(p)) : [],
        ...memberEdge(member),
      };
    }
  }
  if (SCENES.includes(raw.scene)) state.scene = raw.scene;
  state.deck = validDeck(raw.deck);
  state.page = state.deck && Number.isInteger(raw.page) ? raw.page : 0;
  if (Array.isArray(raw.board)) {
    for (const entry of raw.board) {
      const stroke = validStroke(entry?.stroke);
      if (stroke && isId(entry.author)) state.board.push({ author: entry.author, stroke });
    }
  }
  if (Array.isArray(raw.chat)) {
    state.chat = raw.chat.filter((line) => line && typeof line.text === 'string')
      .slice(-CHAT_KEPT_MAX)
      .map((line) => chatLine(line.seq, line.at_ms, line.from, line.text, line.plugin));
  }
  if (Array.isArray(raw.hands)) state.hands = raw.hands.filter(isId);
  if (raw.plugins && typeof raw.plugins === 'object') {
    for (const [name, entry] of Object.entries(raw.plugins)) {
      if (!PLUGIN_NAME.test(name) || !entry || typeof entry !== 'object') continue;
      const plugin = classPlugin(name, entry);
      // The node sends only the views addressed to me; the newest one is what I am shown.
      for (const item of plugin.enabled && Array.isArray(entry.views) ? entry.views : []) {
        const seq = Number(item?.seq);
        const view = validView(item?.view);
        if (view && Number.isSafeInteger(seq) && seq > plugin.viewSeq) Object.assign(plugin, { viewSeq: seq, view });
      }
      state.plugins.set(name, plugin);
    }
  }
  return state;
}

/** Folds one event into the state, as the node's `ClassState::apply` does. */
function applyEvent(state, event) {
  state.seq = event.seq;
  const actor = String(event.actor ?? '');
  const body = event.body && typeof event.body === 'object' ? event.body : {};
  const member = (id) => state.members[id];
  switch (body.type) {
    case 'joined': {
      const existing = member(actor);
      // As the node's fold: the edge of the latest join replaces the one before (none if absent).
      if (existing) {
        existing.name = String(body.name ?? existing.name);
        existing.present = true;
        Object.assign(existing, memberEdge(body));
      } else {
        state.members[actor] = { name: String(body.name ?? actor), role: String(body.role ?? 'student'), present: true, removed: false, permissions: [], ...memberEdge(body) };
      }
      break;
    }
    case 'left':
      if (member(actor)) member(actor).present = false;
      state.hands = state.hands.filter((id) => id !== actor);
      break;
    case 'chat':
      state.chat.push(chatLine(event.seq, event.at, actor, body.text));
      if (state.chat.length > CHAT_KEPT_MAX) state.chat.shift();
      break;
    case 'hand_raised':
      if (!state.hands.includes(actor)) state.hands.push(actor);
      break;
    case 'hand_lowered':
      state.hands = state.hands.filter((id) => id !== body.participant);
      break;
    case 'all_hands_lowered':
      state.hands = [];
      break;
    case 'scene_set':
      // A scene this page does not know keeps the last one it does.
      if (SCENES.includes(body.scene)) state.scene = body.scene;
      break;
    case 'deck_opened': {
      const deck = validDeck(body.deck);
      if (deck) {
        state.deck = deck;
        state.page = 1;
      }
      break;
    }
    case 'page_shown':
      if (Number.isInteger(body.page)) state.page = body.page;
      break;
    case 'drawn': {
      const stroke = validStroke(body.stroke);
      if (stroke) state.board.push({ author: actor, stroke });
      break;
    }
    case 'erased':
      state.board = state.board.filter((entry) => !(entry.author === body.author && entry.stroke.id === body.stroke));
      break;
    case 'board_cleared':
      state.board = [];
      break;
    case 'granted':
    case 'revoked': {
      const target = member(body.participant);
      if (!target || !PERMISSIONS.includes(body.permission)) break;
      const others = target.permissions.filter((p) => p !== body.permission);
      target.permissions = body.type === 'granted' ? [...others, body.permission] : others;
      break;
    }
    case 'removed': {
      const target = member(body.participant);
      if (target) {
        target.removed = true;
        target.present = false;
        target.permissions = [];
      }
      state.hands = state.hands.filter((id) => id !== body.participant);
      break;
    }
    case 'plugin_enabled': {
      // Also a hot upgrade (the same plugin at another version): the panel stays as it is.
      if (!PLUGIN_NAME.test(body.plugin ?? '')) break;
      const entry = state.plugins.get(body.plugin) ?? classPlugin(body.plugin);
      entry.title = String(body.title || entry.title);
      entry.version = String(body.version ?? entry.version);
      entry.enabled = true;
      entry.health = 'healthy';
      entry.reason = '';
      state.plugins.set(body.plugin, entry);
      break;
    }
    case 'plugin_disabled': {
      const entry = state.plugins.get(body.plugin);
      if (entry) Object.assign(entry, { enabled: false, viewSeq: 0, view: null });
      break;
    }
    case 'plugin_view': {
      // Sent only to those it is addressed to; a newer view replaces the one shown.
      const entry = state.plugins.get(body.plugin);
      const view = validView(body.view);
      if (entry?.enabled && view && event.seq > entry.viewSeq) Object.assign(entry, { viewSeq: event.seq, view });
      break;
    }
    case 'plugin_chat':
      state.chat.push(chatLine(event.seq, event.at, actor, body.text, body.plugin));
      if (state.chat.length > CHAT_KEPT_MAX) state.chat.shift();
      break;
    case 'plugin_health': {
      const entry = state.plugins.get(body.plugin);
      if (entry && PLUGIN_HEALTHS.includes(body.health)) {
        entry.health = body.health;
        entry.reason = String(body.reason ?? '').slice(0, SERVER_TEXT_CHARS_MAX);
      }
      break;
    }
    default:
      break; // A kind from a newer node: skipped, as the node's own fold does.
  }
}

// ---------------------------------------------------------------------------------------------
// Outbox: commands to the class, each with an idempotency key, kept until the node answers.
// Sent while the socket is welcomed; after a reconnection everything unanswered is sent again
// with the same key (the node applies a key once). A token bucket and a cap on unanswered
// commands keep a fast scribbler from flooding the node (which refuses past its own limit).

class Outbox {
  #entries = new Map(); // key -> {key, command, sent, attempts, resolve}
  #prefix = randomHex(6);
  #counter = 0;
  #tokens = COMMAND_BURST;
  #refilledAt = performance.now();
  #timer = null;

  /**
   * @param {object} options
   * @param {(message: object) => boolean} options.send false when not connected
   * @param {() => void} options.onChange what is waiting changed
   */
  constructor(options) {
    this.options = options;
  }

  /** Commands not yet answered. */
  get waiting() {
    return this.#entries.size;
  }

  /** A fresh idempotency key: random per page load, so a reload never reuses one. */
  newKey() {
    this.#counter += 1;
    return `c-${this.#prefix}-${this.#counter}`;
  }

  /** Queues a command. Resolves with {ok: true, key, seq} or {ok: false, key, code, message}. */
  submit(command, key = this.newKey()) {
    if (this.#entries.size >= OUTBOX_MAX) {
      return Promise.resolve({ ok: false, key, code: 'busy', message: 'too many changes are waiting to be sent; wait a moment, then try again' });
    }
    return new Promise((resolve) => {
      this.#entries.set(key, { key, command, sent: false, attempts: 0, resolve });
      this.flush();
      this.options.onChange();
    });
  }

  /** Sends what may be sent now: in order, within the in-flight cap and the rate limit. */
  flush() {
    clearTimeout(this.#timer);
    this.#timer = null;
    const now = performance.now();
    this.#tokens = Math.min(COMMAND_BURST, this.#tokens + ((now - this.#refilledAt) / 1000) * COMMAND_RATE_PER_S);
    this.#refilledAt = now;
    let inFlight = [...this.#entries.values()].filter((entry) => entry.sent).length;
    let wakeAt = Infinity;
    for (const entry of this.#entries.values()) {
      if (entry.sent) continue;
      if (entry.retryAt > now) {
        wakeAt = Math.min(wakeAt, entry.retryAt);
        continue;
      }
      if (inFlight >= COMMANDS_IN_FLIGHT_MAX) break; // the next answer flushes again
      if (this.#tokens < 1) {
        wakeAt = Math.min(wakeAt, now + 1000 / COMMAND_RATE_PER_S);
        break;
      }
      if (!this.options.send({ type: 'command', key: entry.key, command: entry.command })) return; // the next welcome flushes
      entry.sent = true;
      entry.attempts += 1;
      this.#tokens -= 1;
      inFlight += 1;
    }
    if (wakeAt < Infinity) this.#timer = setTimeout(() => this.flush(), Math.max(0, Math.ceil(wakeAt - now)));
  }

  /** The connection dropped: whatever was sent and not answered goes again, same key. */
  connectionLost() {
    for (const entry of this.#entries.values()) entry.sent = false;
  }

  /** An ack or refused message; returns the answered command, or null if it is not ours. */
  answer(message) {
    const entry = this.#entries.get(message.key);
    if (!entry) return null;
    const transient = message.type === 'refused' && TRANSIENT_REFUSALS.includes(message.code);
    if (transient && entry.attempts < COMMAND_ATTEMPTS_MAX) {
      // The node is busy for a moment: the same command, same key, a little later.
      entry.sent = false;
      entry.retryAt = performance.now() + retryDelayMs(entry.attempts - 1);
      this.flush();
      return null;
    }
    this.#entries.delete(message.key);
    const result = message.type === 'ack'
      ? { ok: true, key: entry.key, seq: Number(message.seq) || 0 }
      : { ok: false, key: entry.key, code: String(message.code ?? ''), message: String(message.message ?? '').slice(0, SERVER_TEXT_CHARS_MAX) };
    entry.resolve(result);
    this.flush();
    this.options.onChange();
    return { command: entry.command, result };
  }

  /** Leaving or removed: everything waiting is dropped and answered as not sent. */
  abandon(message) {
    clearTimeout(this.#timer);
    for (const entry of this.#entries.values()) entry.resolve({ ok: false, code: 'not_sent', message });
    this.#entries.clear();
  }
}

function randomHex(bytes) {
  const values = crypto.getRandomValues(new Uint8Array(bytes));
  return [...values].map((value) => value.toString(16).padStart(2, '0')).join('');
}

// ---------------------------------------------------------------------------------------------
// Join page: "Paste your join link".

function bootIndex() {
  const form = $('join-link-form');
  const input = $('join-link');
  const error = $('join-link-error');
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const result = checkJoinLink(input.value);
    if (result.error) {
      setText(error, result.error);
      input.setAttribute('aria-invalid', 'true');
      input.focus();
      return;
    }
    input.removeAttribute('aria-invalid');
    setText(error, '');
    window.location.assign(result.href);
  });
}

/** Either {href} of a class link on this server, or {error} saying what is wrong with it. */
function checkJoinLink(text) {
  // Links copied from e-mails often pick up line breaks or spaces.
  const compact = text.replace(/\s+/g, '');
  if (!compact) return { error: 'Paste the link your teacher sent you.' };
  let url;
  try {
    url = new URL(compact, window.location.origin);
  } catch {
    return { error: 'That is not a link. Copy the whole link your teacher sent you and paste it here.' };
  }
  if (url.origin !== window.location.origin) {
    return { error: `That link is for another server (${url.host}). Open it directly from the message you received.` };
  }
  if (!/^\/s\/[^/]+\/?$/.test(url.pathname)) {
    return { error: `That is not a class link. Class links look like ${window.location.origin}/s/class-name#invite=…` };
  }
  const fragment = new URLSearchParams(url.hash.slice(1));
  if (!fragment.get('invite') && !fragment.get('token')) {
    return { error: 'That link is incomplete: the part after “#” is missing. Copy the whole link, or ask your teacher for a new one.' };
  }
  return { href: url.href };
}

// ---------------------------------------------------------------------------------------------
// Classroom page state. One object, changed by the handlers below; render() shows it.

const app = {
  session: '',
  token: '',
  claims: null,
  /** 'loading' | 'problem' | 'join' | 'classroom' | 'left' */
  view: 'loading',
  presenter: false,
  socket: null,
  you: null,
  /** The edge (server) this page is connected through, from the welcome: {id, name} | null. */
  edge: null,
  /** Where the page talks to: '' for the edge that served it, or another edge's base URL after
   * its own was gone. */
  base: '',
  /** The cluster's edges, as GET /api/edges last listed them: [{id, name, url, base}]. */
  edges: [],
  /** Round-trip times measured before joining: {node id: ms}. */
  rtts: {},
  edgesTimer: null,
  /** Why the node placed this page's join, until the welcome says where it is: a
   * PLACEMENT_WORDS key | null; then the text shown. */
  placedReason: null,
  placement: null,
  /** Times the page moved to another edge, and the name of the edge it left (until the welcome
   * of the new one says where it is). */
  moves: 0,
  afterMove: null,
  roster: [],
  /** name -> MediaLink; at most one per direction and source. */
  links: new Map(),
  /** Problems that need the person's attention, by topic; shown in the alert region. */
  alerts: new Map(),
  soundBlocked: false,
  camera: null, // MediaStream being published from the camera and microphone
  screen: null, // MediaStream being published from a shared screen
  micMuted: false,
  cameraOff: false,
  busy: false, // a teacher action is waiting for the browser (permission prompt, publishing)
  /** The class as of `cls.seq`: the last snapshot with every event since folded in. */
  cls: emptyClass(),
  /** A snapshot has been applied since entering: events can be folded and resumed from. */
  synced: false,
  /** Commands to the class waiting for the node's answer. */
  outbox: null,
  /** My commands the class has not shown yet, by key: {kind: 'draw', stroke} or
   * {kind: 'chat', text}; `ackSeq` once the node acknowledged it. Drawn and listed as pending. */
  pending: new Map(),
  /** Bumped whenever the board (or what is pending on it) changes: the canvas redraws. */
  boardVersion: 0,
  /** The teacher removed this participant: the class is over for this page. */
  removed: false,
  uploading: false, // slides are being uploaded
  /** Times this page started over after a gap in the class events (shown to tests). */
  resyncs: 0,
  /** Teachers: the features this edge offers (GET /api/plugins). state: 'idle' | 'loading' |
   * 'ready' | 'failed'; offered: [{name, version, title}]. */
  features: { state: 'idle', offered: [], error: '', attempt: 0, timer: null },
  /** Features being switched on or off: name -> the event seq the switch waits for (0 while the
   * command is unanswered), so that it does not flicker back before the event arrives. */
  featureSwitches: new Map(),
  /** What is typed or chosen in a plugin's panel and not sent yet: name -> Map(control key ->
   * value). A new view of the panel keeps it. */
  pluginDrafts: new Map(),
  /** Plugin controls whose action is on its way: `${name}|${control key}`. */
  pluginSending: new Set(),
  /** My answered plugin actions, by event seq: {plugin, drafts} (see PLUGIN_SENT_KEPT_MAX). */
  pluginSent: new Map(),
  /** A plugin's message for me (a refusal of what I did), shown in its panel: name -> {text,
   * seq, shownAt, timer}. */
  pluginNotices: new Map(),
};

function setAlert(topic, text) {
  if (text) app.alerts.set(topic, text);
  else app.alerts.delete(topic);
  render();
}

function showProblem(title, text) {
  app.view = 'problem';
  document.title = `${title} · multistream`;
  setText($('problem-title'), title);
  setText($('problem-text'), text);
  render();
  $('problem-title').focus();
}

function bootClassroom() {
  const match = /^\/s\/([^/]+)/.exec(window.location.pathname);
  if (!match) {
    showProblem('This link is incomplete', 'Ask your teacher for a new one.');
    return;
  }
  try {
    app.session = decodeURIComponent(match[1]);
  } catch {
    showProblem('This link is damaged', 'Copy the whole link again, or ask your teacher for a new one.');
    return;
  }

  // Take a token from the fragment, then remove it from the address bar (and so from history,
  // bookmarks and screenshots). Kept in sessionStorage: a reload keeps the same identity.
  const fragment = new URLSearchParams(window.location.hash.slice(1));
  const fromLink = fragment.get('token') || fragment.get('invite');
  // Sent here by another edge's placement: say why once the class welcomes us.
  const placed = fragment.get('placed');
  if (placed && Object.hasOwn(PLACEMENT_WORDS, placed)) app.placedReason = placed;
  if (window.location.hash) {
    window.history.replaceState(null, '', window.location.pathname + window.location.search);
  }
  if (fromLink) {
    const claims = decodeToken(fromLink);
    if (!claims) {
      showProblem('This link is damaged', 'Part of it may be missing. Copy the whole link again, or ask your teacher for a new one.');
      return;
    }
    // A fresh link replaces whoever this tab was before.
    remember(tokenKey(app.session), claims.kind === 'invite' ? null : fromLink);
    remember(inviteKey(app.session), claims.kind === 'invite' ? fromLink : null);
  }

  const token = recall(tokenKey(app.session));
  const invite = recall(inviteKey(app.session));
  const claims = decodeToken(token || invite);
  if (!claims) {
    showProblem('This link is incomplete', 'Ask your teacher for a new one.');
    return;
  }
  if (claims.sid !== app.session) {
    showProblem('This link is for another class', `It opens “${claims.sid}”, not “${app.session}”. Use the link your teacher sent for this class.`);
    return;
  }
  if (isExpired(claims)) {
    remember(tokenKey(app.session), null);
    remember(inviteKey(app.session), null);
    const when = new Date(claims.exp * 1000).toLocaleString();
    showProblem('This link has expired', `It stopped working on ${when}. Ask your teacher for a new one.`);
    return;
  }
  if (token && fromLink && !placed && claims.kind !== 'invite') placeThenEnter(token, claims);
  else if (token) enterClass(token, claims);
  else showJoinForm(invite);
}

// ---- Placement (personal links) ----

/** A personal link (from the school's control plane) lands on the class's home edge: time the
 * edges that could serve us and let this one place us, as a join by invitation would, then go to
 * the chosen edge with the same token, or stay. Anything that fails here means staying: the
 * class is reachable where we are. */
async function placeThenEnter(token, claims) {
  app.view = 'placing';
  render();
  try {
    app.edges = await loadEdges('');
    if (app.edges.length > 1) {
      app.rtts = await measureEdges(app.edges);
      const body = Object.keys(app.rtts).length ? { rtts: app.rtts } : {};
      const response = await fetchWithin(`/api/sessions/${encodeURIComponent(app.session)}/place`, RTT_PROBE_TIMEOUT_MS * 2, {
        method: 'POST',
        headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
        body: JSON.stringify(body),
      });
      if (response.ok) {
        const answer = await response.json();
        const reason = placementReason(answer);
        const target = placementTarget(answer?.redirect);
        if (target) {
          remember(tokenKey(app.session), null);
          goToPlacedEdge(target, token, reason);
          return;
        }
        app.placedReason = reason;
      }
    }
  } catch {
    // Unreachable edges or a refused placement: this edge serves us.
  }
  enterClass(token, claims);
}

// ---- Name form (invitation links) ----

function showJoinForm(invite) {
  app.view = 'join';
  document.title = `Join ${app.session} · multistream`;
  render();
  $('name').focus();
  $('join-form').onsubmit = async (event) => {
    event.preventDefault();
    const input = $('name');
    const error = $('name-error');
    const name = input.value.trim();
    const refuse = (text) => {
      setText(error, text);
      input.setAttribute('aria-invalid', 'true');
      input.focus();
    };
    if (!name) return refuse('Enter your name.');
    if ([...name].length > DISPLAY_NAME_CHARS_MAX) return refuse(`Use at most ${DISPLAY_NAME_CHARS_MAX} characters.`);
    input.removeAttribute('aria-invalid');
    setText(error, '');

    const button = $('join-submit');
    button.disabled = true;
    setText(button, 'Finding your nearest server…');
    let leaving = false;
    try {
      // Time the edges that could serve us; the node weighs the figures with our network.
      app.edges = await loadEdges('');
      app.rtts = await measureEdges(app.edges);
      setText(button, 'Joining…');
      const body = Object.keys(app.rtts).length ? { name, rtts: app.rtts } : { name };
      const response = await fetch(`/api/sessions/${encodeURIComponent(app.session)}/join`, {
        method: 'POST',
        headers: { Authorization: `Bearer ${invite}`, 'Content-Type': 'application/json' },
        body: JSON.stringify(body),
      });
      if (!response.ok) throw await httpError(response);
      const answer = await response.json();
      const token = answer?.token;
      const claims = decodeToken(token);
      if (!claims) throw new Error('The server sent back a token this page cannot read. Reload and try again.');
      const reason = placementReason(answer);
      const target = placementTarget(answer?.redirect);
      remember(inviteKey(app.session), null);
      if (target) {
        leaving = true;
        const edgeName = String(answer?.edge?.name ?? '').slice(0, DISPLAY_NAME_CHARS_MAX) || 'another server';
        setText(button, `Taking you to ${edgeName}…`);
        goToPlacedEdge(target, token, reason);
        return;
      }
      remember(tokenKey(app.session), token);
      app.placedReason = reason;
      enterClass(token, claims);
    } catch (failure) {
      refuse(failure instanceof TypeError
        ? 'The class server cannot be reached. Check your connection and try again.'
        : failure.message);
    } finally {
      if (!leaving) {
        button.disabled = false;
        setText(button, 'Join the class');
      }
    }
  };
}

/** Why a join or placement answer chose its edge, if it is a reason this page can word. */
function placementReason(answer) {
  return Object.hasOwn(PLACEMENT_WORDS, answer?.placement?.reason) ? answer.placement.reason : null;
}

/** Goes to the class on the edge placement chose. Its sessionStorage is another origin's: the
 * token goes in the fragment, which never reaches a server, with why we were sent there. */
function goToPlacedEdge(target, token, reason) {
  const fragment = new URLSearchParams({ token });
  if (reason) fragment.set('placed', reason);
  window.location.assign(`${target}#${fragment}`);
}

/** The classroom URL a join answer sends us to, if it is one: this class on an edge's base URL. */
function placementTarget(redirect) {
  if (typeof redirect !== 'string') return null;
  let url;
  try {
    url = new URL(redirect);
  } catch {
    return null;
  }
  const base = edgeBase(url.origin);
  const path = `/s/${encodeURIComponent(app.session)}`;
  if (!base || url.pathname !== path || url.search || url.hash) return null;
  return `${base}${path}`;
}

// ---- In class ----

function enterClass(token, claims) {
  app.token = token;
  app.claims = claims;
  app.presenter = claims.role === 'teacher' || claims.grants?.publish === true;
  app.view = 'classroom';
  app.alerts.clear();
  app.cls = emptyClass();
  app.synced = false;
  app.removed = false;
  app.pending.clear();
  app.boardVersion += 1;
  app.base = '';
  clearTimeout(app.features.timer);
  app.features = { state: 'idle', offered: [], error: '', attempt: 0, timer: null };
  app.featureSwitches.clear();
  app.pluginDrafts.clear();
  app.pluginSending.clear();
  app.pluginSent.clear();
  clearPluginNotices();
  document.title = `${app.session} · multistream classroom`;
  setText($('class-title'), `Class: ${app.session}`);

  app.outbox = new Outbox({
    send: (message) => app.socket?.send(message) ?? false,
    onChange: render,
  });
  app.socket = new SessionSocket({
    session: app.session,
    token,
    // After a blip, the node sends only the events after the last one applied here.
    hello: () => (app.synced
      ? { type: 'hello', token, resume_from: app.cls.seq }
      : { type: 'hello', token }),
    onMessage: onServerMessage,
    onChange: onSocketChange,
    // Only a cluster token is good on the other edges; with another, stay and retry this one.
    fallbacks: () => (isClusterToken(claims) ? fallbackBases() : []),
    onMoved: onEdgeMoved,
  });
  app.socket.open();
  refreshEdges();
  if (claims.role === 'teacher') loadFeatures();
  if (!app.presenter) {
    if (claims.grants?.subscribe === false) {
      setAlert('watch', 'Your link lets you join the class but not watch or listen. Ask your teacher for a new one.');
    } else {
      // Opened before the teacher goes live: the node binds it to whoever starts the camera, so
      // the picture appears by itself.
      watch('camera');
    }
  }
  render();
  $('class-title').focus();
}

function onSocketChange() {
  const socket = app.socket;
  if (!socket) return;
  if (socket.state === 'refused') {
    // The node sends an error message just before a refusal; the refusal says it already.
    app.alerts.delete('server');
    if (app.removed || /removed/i.test(socket.refusalReason)) {
      showRemoved();
      return;
    }
  }
  // Whatever was sent and not answered goes again, with the same key, after the next welcome.
  if (socket.state !== 'open') app.outbox?.connectionLost();
  render();
}

function onServerMessage(message) {
  switch (message?.type) {
    case 'welcome':
      app.you = message.you ?? null;
      app.edge = pageEdge(message.edge);
      if (app.afterMove && app.edge) {
        showNotice(`${app.afterMove} stopped answering; you are back in the class through ${app.edge.name}.`);
        app.afterMove = null;
      }
      if (app.placedReason && app.edge) {
        app.placement = placedText(app.edge.name, app.placedReason);
        app.placedReason = null;
        showNotice(app.placement);
      }
      // The node is reachable again: media that gave up or is waiting out a backoff retries now,
      // and errors from the previous connection no longer apply.
      for (const link of app.links.values()) link.retryNow();
      app.alerts.delete('server');
      if (message.wire_version > WIRE_VERSION) {
        setAlert('version', 'This page is out of date. Reload the page to get the new version.');
      }
      if (app.presenter && message.can_publish === false) {
        setAlert('publish', 'This class does not let you broadcast with your link. Ask for a teacher link.');
      }
      retryFailedDecks();
      if (app.features.state === 'failed') loadFeatures();
      app.outbox?.flush();
      break;
    case 'roster':
      app.roster = Array.isArray(message.participants) ? message.participants : [];
      syncScreenWatch();
      break;
    case 'snapshot':
      onSnapshot(message);
      break;
    case 'event':
      onClassEvent(message.event);
      break;
    case 'hidden':
      onHiddenEvent(message.seq);
      break;
    case 'ack':
    case 'refused':
      onAnswer(message);
      break;
    case 'error':
      if (message.code === 'removed') {
        app.removed = true;
        return; // the close that follows says it
      }
      setAlert('server', `The class server says: ${String(message.message || message.code).slice(0, SERVER_TEXT_CHARS_MAX)}`);
      break;
    default:
      return; // Newer message types are ignored; the wire version tells people to reload.
  }
  render();
}

/** The edge serving this page, from a welcome: {id, name}, or null from a node that does not
 * say. */
function pageEdge(raw) {
  if (!raw || typeof raw !== 'object' || !isId(raw.id)) return null;
  const { edge, edgeName } = memberEdge({ edge: raw.id, edge_name: raw.name });
  return { id: edge, name: edgeName };
}

// ---- Other edges: the list, and moving to one when ours is gone ----

/** Other edges to try, nearest first (as measured before joining), then in the list's order. */
function fallbackBases() {
  const rtt = (edge) => app.rtts[edge.id] ?? Number.POSITIVE_INFINITY;
  return app.edges
    .filter((edge) => edge.base && edge.base !== app.base)
    .sort((a, b) => rtt(a) - rtt(b))
    .map((edge) => edge.base);
}

/** Re-reads the list of edges from the edge we talk to, now and every EDGES_REFRESH_MS while in
 * class. A failed read keeps the last list: it is what a page needs when its edge is gone. */
async function refreshEdges() {
  clearTimeout(app.edgesTimer);
  app.edgesTimer = null;
  if (app.view !== 'classroom') return;
  const from = app.base;
  const edges = await loadEdges(from);
  if (edges.length && from === app.base) {
    // Edges listed from elsewhere keep the page's own edge reachable as ''.
    app.edges = edges.map((edge) => (edge.url === window.location.origin ? { ...edge, base: '' } : edge));
  }
  if (app.view === 'classroom') app.edgesTimer = setTimeout(refreshEdges, EDGES_REFRESH_MS);
}

/** Welcomed by another edge than before: everything else follows, and the page says so. */
function onEdgeMoved(base) {
  const from = app.edge?.name ?? 'Your server';
  app.base = base;
  app.moves += 1;
  // The media connections were with the edge that is gone: rebuild them on this one now.
  for (const link of app.links.values()) link.retryNow(true);
  slideFailures.clear();
  decks.clear();
  if (app.features.state !== 'idle') loadFeatures();
  app.afterMove = from;
  refreshEdges();
}

// ---- The class log: snapshot, events, answers ----

/** My own entry in the class, if the class knows me yet. */
const me = () => (app.you ? app.cls.members[app.you.id] ?? null : null);
const isTeacher = () => app.claims?.role === 'teacher';
const hasPermission = (permission) => isTeacher() || Boolean(me()?.permissions.includes(permission));
const canPresent = () => hasPermission('present');
const canDraw = () => hasPermission('draw');
/** May publish camera, microphone or screen: by the link, or made a speaker by the teacher. */
const canSpeak = () => app.presenter || Boolean(me()?.permissions.includes('speak'));
const canChat = () => app.claims?.role !== 'guest';
/** A copy of my entry, to compare with after an event (the fold changes entries in place). */
const myCopy = () => (me() ? { ...me(), permissions: [...me().permissions] } : null);
const memberName = (id) => (id === app.you?.id ? 'You' : app.cls.members[id]?.name ?? 'Someone');

function onSnapshot(message) {
  const before = myCopy();
  app.cls = classFromSnapshot(message.seq, message.state, app.cls.scene);
  app.synced = true;
  app.boardVersion += 1;
  for (const [key, item] of app.pending) {
    if (item.ackSeq && item.ackSeq <= app.cls.seq) app.pending.delete(key);
  }
  afterMyChange(before);
}

/** Whether the event at `seq` is the next one to fold in; a gap starts over from a snapshot. */
function nextInOrder(seq) {
  if (!Number.isSafeInteger(seq) || seq <= app.cls.seq) return false; // seen already (a resend)
  if (!app.synced) return false; // waiting for a snapshot
  if (seq !== app.cls.seq + 1) {
    resync();
    return false;
  }
  return true;
}

/** An event that is not for me (a plugin's own record, someone else's panel): it counts in the
 * order like any other, so that the next one is not taken for a gap. */
function onHiddenEvent(seq) {
  if (nextInOrder(Number(seq))) app.cls.seq = Number(seq);
}

function onClassEvent(event) {
  if (!event || typeof event !== 'object') return;
  if (!nextInOrder(Number(event.seq))) return;
  const before = myCopy();
  const previousScene = app.cls.scene;
  const pluginWasOn = Boolean(app.cls.plugins.get(event.body?.plugin)?.enabled);
  applyEvent(app.cls, event);
  const body = event.body ?? {};
  const mine = event.actor === app.you?.id;
  if (mine && typeof event.key === 'string') app.pending.delete(event.key);
  if (['drawn', 'erased', 'board_cleared'].includes(body.type)) app.boardVersion += 1;
  if (String(body.type).startsWith('plugin_')) afterPluginEvent(event, body, pluginWasOn);
  if (!mine) announceEvent(body, event.actor, previousScene);
  afterMyChange(before);
}

let resyncedAt = -Infinity;

/** A gap in the events: rather than show a wrong class, reconnect and start from a snapshot
 * (at most once per RESYNC_INTERVAL_MIN_MS, so that a misbehaving node cannot make the page
 * reconnect in a loop). */
function resync() {
  app.synced = false;
  app.resyncs += 1;
  const wait = Math.max(0, resyncedAt + RESYNC_INTERVAL_MIN_MS - performance.now());
  setTimeout(() => {
    resyncedAt = performance.now();
    app.socket?.restart();
  }, wait);
  render();
}

/** Reads out what others did that matters now. Chat lines are read by the chat log itself. */
function announceEvent(body, actor, previousScene) {
  switch (body.type) {
    case 'scene_set':
      if (app.cls.scene !== previousScene) announce(`Now showing: ${SCENE_LABELS[app.cls.scene]}.`);
      break;
    case 'deck_opened':
      if (app.cls.deck) announce(`Slides opened: ${app.cls.deck.title || 'untitled'}.`);
      break;
    case 'hand_raised':
      if (isTeacher()) announce(`${memberName(actor)} raised a hand.`);
      break;
    case 'hand_lowered':
      if (body.participant === app.you?.id) announce('Your hand was lowered.');
      break;
    case 'all_hands_lowered':
      announce('All hands were lowered.');
      break;
    case 'board_cleared':
      announce('The whiteboard was cleared.');
      break;
    default:
      break;
  }
}

const PERMISSION_NEWS = {
  speak: ['The teacher made you a speaker: you can start your camera and microphone.', 'The teacher ended your turn to speak.'],
  present: ['The teacher lets you present: you can change the scene and the slides.', 'You can no longer present.'],
  draw: ['The teacher lets you draw on the whiteboard.', 'You can no longer draw on the whiteboard.'],
};

/** My rights changed: tell me, and stop what I may no longer do. */
function afterMyChange(before) {
  const after = me();
  if (after?.removed) app.removed = true;
  if (!before || !after || isTeacher()) return;
  for (const permission of PERMISSIONS) {
    const had = before.permissions.includes(permission);
    const has = after.permissions.includes(permission);
    if (had === has) continue;
    const [granted, revoked] = PERMISSION_NEWS[permission];
    showNotice(has ? granted : revoked, 'info');
    if (permission === 'speak' && !has && !app.presenter) {
      // The node ends the media itself; stop the camera here too, without retrying.
      stopSource('camera');
      stopSource('screen');
    }
    if (permission === 'draw' && !has) cancelStroke();
  }
}

const COMMAND_FAILURES = {
  chat: 'Your message was not sent',
  raise_hand: 'Your hand was not raised',
  lower_hand: 'The hand was not lowered',
  lower_all_hands: 'The hands were not lowered',
  set_scene: 'The scene did not change',
  open_deck: 'The slides were not opened',
  show_page: 'The page did not change',
  draw: 'Your drawing was not kept',
  erase: 'The stroke was not erased',
  undo: 'Nothing was undone',
  clear_board: 'The board was not cleared',
  grant: 'The permission was not given',
  revoke: 'The permission was not taken back',
  remove: 'Nobody was removed',
  enable_plugin: 'The feature was not switched on',
  disable_plugin: 'The feature was not switched off',
  plugin_action: 'That was not done',
};

function onAnswer(message) {
  const answered = app.outbox?.answer(message);
  if (!answered) return;
  const { command, result } = answered;
  const item = app.pending.get(result.key);
  if (result.ok) {
    if (item) {
      item.ackSeq = result.seq;
      if (result.seq <= app.cls.seq) app.pending.delete(result.key);
    }
    return;
  }
  if (item) {
    app.pending.delete(result.key);
    if (item.kind === 'draw') app.boardVersion += 1;
    // An unsent message goes back into the box, so that nothing typed is lost.
    if (item.kind === 'chat' && !$('chat-input').value) $('chat-input').value = item.text;
  }
  showRefusal(command, result);
}

function showRefusal(command, result) {
  const what = COMMAND_FAILURES[command?.type] ?? 'That was refused';
  const why = result.message ? `: ${result.message.replace(/[.\s]+$/, '')}` : '';
  showNotice(`${what}${why}.`, 'refusal');
  app.lastRefusal = { command: command?.type ?? null, code: result.code, message: result.message };
}

/** Sends a command to the class; refusals are shown. Resolves with the node's answer. */
function sendCommand(command, key) {
  if (!app.outbox) return Promise.resolve({ ok: false, code: 'not_sent', message: 'not in a class' });
  return app.outbox.submit(command, key);
}

/** Someone other than me is live with this source. */
function liveWith(source) {
  // The node shows students the teacher first, then the latest other publisher of the source.
  const live = app.roster.filter((person) => person.id !== app.you?.id && person.live?.includes(source));
  return live.find((person) => person.role === 'teacher') ?? live[live.length - 1] ?? null;
}

// ---- Watching (students) ----

function watch(source) {
  const video = source === 'camera' ? $('teacher-video') : $('screen-video');
  const link = new MediaLink({
    session: app.session,
    token: app.token,
    direction: 'watch',
    source,
    // WHEP offers receive-only transceivers; the node fills them from the live publisher.
    addTransceivers: (pc) => {
      const kinds = source === 'camera' ? ['audio', 'video'] : ['video', 'audio'];
      for (const kind of kinds) pc.addTransceiver(kind, { direction: 'recvonly' });
    },
    onStream: (stream) => {
      video.srcObject = stream;
      play(video);
    },
    onChange: render,
  });
  app.links.set(link.name, link);
  link.start();
}

/** The screen is watched only while someone shares one, so idle students use no bandwidth. */
function syncScreenWatch() {
  if (app.presenter || app.view !== 'classroom' || app.claims?.grants?.subscribe === false) return;
  const sharing = liveWith('screen') !== null;
  const link = app.links.get('watch-screen');
  if (sharing && !link) watch('screen');
  if (!sharing && link) {
    app.links.delete(link.name);
    link.stop();
    $('screen-video').srcObject = null;
  }
}

/** Plays with sound; when the browser wants a click first, plays muted and offers a button. */
async function play(video) {
  video.muted = app.soundBlocked;
  try {
    await video.play();
  } catch (error) {
    if (error.name !== 'NotAllowedError') return; // AbortError: a newer stream replaced this one
    app.soundBlocked = true;
    video.muted = true;
    render();
    video.play().catch(() => {});
  }
}

function enableSound() {
  app.soundBlocked = false;
  for (const video of [$('teacher-video'), $('screen-video')]) {
    if (video.srcObject) play(video);
  }
  render();
  $('class-title').focus(); // the button disappears; keep the reading position nearby
}

// ---- Publishing (teachers) ----

function publish(source, stream) {
  const link = new MediaLink({
    session: app.session,
    token: app.token,
    direction: 'publish',
    source,
    addTransceivers: (pc) => {
      const [video] = stream.getVideoTracks();
      const [audio] = stream.getAudioTracks();
      if (video) {
        pc.addTransceiver(video, source === 'camera'
          ? { direction: 'sendonly', streams: [stream], sendEncodings: CAMERA_ENCODINGS.map((encoding) => ({ ...encoding })) }
          : { direction: 'sendonly', streams: [stream] });
      }
      if (audio) pc.addTransceiver(audio, { direction: 'sendonly', streams: [stream] });
    },
    onChange: render,
  });
  app.links.set(link.name, link);
  link.start();
}

/** Asks for camera and microphone; falls back to whichever of the two exists. */
async function openCamera() {
  const video = { width: { ideal: 1280 }, height: { ideal: 720 } };
  try {
    return await navigator.mediaDevices.getUserMedia({ audio: true, video });
  } catch (error) {
    if (error.name !== 'NotFoundError' && error.name !== 'OverconstrainedError') throw error;
  }
  for (const constraints of [{ video: true }, { audio: true }]) {
    try {
      const stream = await navigator.mediaDevices.getUserMedia(constraints);
      setAlert('camera', constraints.video
        ? 'No microphone was found: you are sending video without sound.'
        : 'No camera was found: you are sending sound only.');
      return stream;
    } catch (error) {
      if (error.name !== 'NotFoundError') throw error;
    }
  }
  const none = new Error('no devices');
  none.name = 'NotFoundError';
  throw none;
}

function describeDeviceError(error) {
  switch (error.name) {
    case 'NotAllowedError':
      return 'The browser is not allowed to use your camera and microphone. Allow them for this site (usually with the icon in the address bar), then press “Start camera and microphone” again.';
    case 'NotFoundError':
      return 'No camera or microphone was found. Connect one, then press “Start camera and microphone” again.';
    case 'NotReadableError':
      return 'Your camera or microphone is busy or not working. Close other apps that use it, then try again.';
    case 'SecurityError':
      return 'The browser blocks the camera on this page. Open the class over https.';
    default:
      return `The camera could not be started (${error.message || error.name}).`;
  }
}

async function startCamera() {
  if (app.camera || app.busy) return;
  if (!navigator.mediaDevices?.getUserMedia) {
    setAlert('camera', 'This browser cannot use a camera on this page. Open the class over https in a recent browser.');
    return;
  }
  app.busy = true;
  setAlert('camera', null);
  try {
    const stream = await openCamera();
    if (app.view !== 'classroom') {
      stream.getTracks().forEach((track) => track.stop()); // left while the prompt was open
      return;
    }
    app.camera = stream;
    app.micMuted = false;
    app.cameraOff = false;
    for (const track of stream.getTracks()) {
      track.addEventListener('ended', () => {
        if (app.camera !== stream) return;
        setAlert('camera', 'Your camera or microphone stopped (it may have been unplugged). Press “Start camera and microphone” to try again.');
        stopSource('camera');
      });
    }
    $('preview').srcObject = stream;
    $('preview').play().catch(() => {});
    publish('camera', stream);
  } catch (error) {
    setAlert('camera', describeDeviceError(error));
  } finally {
    app.busy = false;
    render();
  }
  if (app.camera) $('mute-mic').focus();
  else $('start-camera').focus();
}

async function toggleScreen() {
  if (app.screen) {
    await stopSource('screen');
    $('share-screen').focus();
    return;
  }
  if (app.busy) return;
  app.busy = true;
  setAlert('screen', null);
  try {
    const stream = await navigator.mediaDevices.getDisplayMedia({ video: true, audio: true });
    if (app.view !== 'classroom') {
      stream.getTracks().forEach((track) => track.stop());
      return;
    }
    app.screen = stream;
    const [video] = stream.getVideoTracks();
    if (video) video.contentHint = 'detail'; // keep text sharp rather than motion smooth
    // Ending the share from the browser's own "Stop sharing" bar ends the track.
    video?.addEventListener('ended', () => {
      if (app.screen === stream) stopSource('screen');
    });
    $('screen-preview').srcObject = stream;
    $('screen-preview').play().catch(() => {});
    publish('screen', stream);
  } catch (error) {
    setAlert('screen', error.name === 'NotAllowedError'
      ? 'Screen sharing was cancelled or is not allowed.'
      : `Your screen could not be shared (${error.message || error.name}).`);
  } finally {
    app.busy = false;
    render();
  }
}

/** Stops publishing one source: DELETE the WHIP resource, close, stop the tracks. */
async function stopSource(source) {
  const link = app.links.get(`publish-${source}`);
  app.links.delete(`publish-${source}`);
  const stream = app[source];
  app[source] = null;
  stream?.getTracks().forEach((track) => track.stop());
  const preview = source === 'camera' ? $('preview') : $('screen-preview');
  preview.srcObject = null;
  render();
  await link?.stop();
}

async function stopPublishing() {
  await Promise.all([stopSource('camera'), stopSource('screen')]);
  $('start-camera').focus();
}

function toggleMic() {
  app.micMuted = !app.micMuted;
  app.camera?.getAudioTracks().forEach((track) => { track.enabled = !app.micMuted; });
  render();
}

function toggleCameraPicture() {
  app.cameraOff = !app.cameraOff;
  // A disabled track sends black frames: the connection and the layers stay up.
  app.camera?.getVideoTracks().forEach((track) => { track.enabled = !app.cameraOff; });
  render();
}

// ---- Class actions: scene, slides, hands, chat, people ----

function setScene(scene) {
  if (!SCENES.includes(scene) || scene === app.cls.scene) return;
  sendCommand({ type: 'set_scene', scene });
}

function showPage(step) {
  const deck = app.cls.deck;
  if (!deck) return;
  const page = Math.min(deck.pages, Math.max(1, app.cls.page + step));
  if (page !== app.cls.page) sendCommand({ type: 'show_page', page });
}

function toggleHand() {
  const raised = app.cls.hands.includes(app.you?.id);
  sendCommand(raised ? { type: 'lower_hand', participant: null } : { type: 'raise_hand' });
}

function submitChat(event) {
  event.preventDefault();
  const input = $('chat-input');
  const text = input.value.trim();
  if (!text || !canChat()) return;
  if ([...text].length > CHAT_CHARS_MAX) {
    showNotice(`A message is at most ${CHAT_CHARS_MAX} characters; this one has ${[...text].length}.`, 'refusal');
    return;
  }
  const key = app.outbox.newKey();
  app.pending.set(key, { kind: 'chat', text, ackSeq: 0 });
  input.value = '';
  sendCommand({ type: 'chat', text }, key);
  render();
  $('chat-log').scrollTop = $('chat-log').scrollHeight;
}

/** Teacher actions on a person (grant, revoke, remove) and on raised hands. */
function onPersonAction(event) {
  const button = event.target.closest('button[data-action]');
  if (!button || !isTeacher()) return;
  const { action, participant } = button.dataset;
  const member = app.cls.members[participant];
  switch (action) {
    case 'speak':
    case 'draw':
    case 'present': {
      const has = Boolean(member?.permissions.includes(action));
      sendCommand({ type: has ? 'revoke' : 'grant', participant, permission: action });
      break;
    }
    case 'remove':
      // A removal cannot be undone in class: ask first (the browser's dialog is keyboard and
      // screen reader friendly).
      if (window.confirm(`Remove ${member?.name ?? 'this person'} from the class? They will not be able to come back with their link.`)) {
        sendCommand({ type: 'remove', participant });
      }
      break;
    case 'lower-hand':
      sendCommand({ type: 'lower_hand', participant });
      break;
    default:
      break;
  }
}

// ---- Slides ----

/** What the page knows about each deck's file: asset -> {kind: 'loading' | 'images' | 'pdf' |
 * 'image' | 'unavailable', pages}. */
const decks = new Map();
/** Slide images that failed to load: their URLs, shown as "Slide unavailable". */
const slideFailures = new Set();

const assetUrl = (address) => edgeUrl(`/api/assets/${address}`);

/** Learns whether a deck is a manifest of page images or a PDF (by its content type). */
async function loadDeck(asset) {
  if (decks.has(asset)) return;
  while (decks.size >= DECKS_KEPT_MAX) decks.delete(decks.keys().next().value);
  decks.set(asset, { kind: 'loading' });
  let entry;
  try {
    const head = await fetch(assetUrl(asset), { method: 'HEAD' });
    if (!head.ok) throw new Error(`status ${head.status}`);
    const type = head.headers.get('Content-Type') || '';
    if (type.includes('json')) {
      const response = await fetch(assetUrl(asset));
      if (!response.ok) throw new Error(`status ${response.status}`);
      const manifest = await response.json();
      const pages = Array.isArray(manifest?.pages) ? manifest.pages.filter((page) => ASSET_ADDRESS.test(page)) : [];
      entry = pages.length ? { kind: 'images', pages } : { kind: 'unavailable' };
    } else if (type.includes('pdf')) {
      entry = { kind: 'pdf' };
    } else if (type.startsWith('image/')) {
      entry = { kind: 'image' }; // a one-page deck
    } else {
      entry = { kind: 'unavailable' };
    }
  } catch {
    entry = { kind: 'unavailable' }; // tried again after the next welcome
  }
  if (decks.get(asset)?.kind === 'loading') decks.set(asset, entry);
  render();
}

/** The node is back: slides that could not be loaded are tried again. */
function retryFailedDecks() {
  for (const [asset, entry] of decks) {
    if (entry.kind === 'unavailable') decks.delete(asset);
  }
  if (slideFailures.size) {
    slideFailures.clear();
    $('slide-image').removeAttribute('src'); // the next render sets it again, which reloads it
  }
}

/** What the slide area shows: {kind: 'none' | 'loading' | 'image' | 'pdf' | 'unavailable'}. */
function slideView() {
  const { deck, page } = app.cls;
  if (!deck) return { kind: 'none' };
  const entry = decks.get(deck.asset);
  if (!entry) {
    loadDeck(deck.asset);
    return { kind: 'loading' };
  }
  const label = `Slide ${page} of ${deck.pages}${deck.title ? `, ${deck.title}` : ''}`;
  let src = null;
  if (entry.kind === 'images') {
    const address = entry.pages[page - 1];
    src = address ? assetUrl(address) : null;
  } else if (entry.kind === 'image') {
    src = page === 1 ? assetUrl(deck.asset) : null;
  } else if (entry.kind === 'pdf') {
    // The query makes each page its own address, so the viewer reloads at the page (the
    // fragment alone is not always followed); the node ignores it and the browser caches the file.
    return { kind: 'pdf', src: `${assetUrl(deck.asset)}?page=${page}#page=${page}`, label };
  } else {
    return { kind: entry.kind };
  }
  if (!src || slideFailures.has(src)) return { kind: 'unavailable' };
  return { kind: 'image', src, label };
}

function renderSlides() {
  const view = slideView();
  const image = $('slide-image');
  const frame = $('slide-frame');
  const fallback = $('slide-fallback');
  image.hidden = view.kind !== 'image';
  frame.hidden = view.kind !== 'pdf';
  if (view.kind === 'image') {
    // Set only when it changes: setting it again would reload the picture.
    if (image.getAttribute('src') !== view.src) image.setAttribute('src', view.src);
    if (image.alt !== view.label) image.alt = view.label;
  } else if (view.kind === 'pdf') {
    if (frame.getAttribute('src') !== view.src) frame.setAttribute('src', view.src);
    if (frame.title !== view.label) frame.title = view.label;
  }
  const presenting = canPresent();
  const notes = {
    none: presenting ? 'No slides yet. Upload them under “Slides”.' : 'No slides yet.',
    loading: 'Loading the slides…',
    unavailable: 'Slide unavailable',
  };
  fallback.hidden = !(view.kind in notes);
  setText(fallback, notes[view.kind] ?? '');

  const { deck, page } = app.cls;
  setText($('slide-caption'), deck ? `${deck.title || 'Slides'}: page ${page} of ${deck.pages}` : '');
  if (!presenting) return;
  setText($('slides-page'), deck ? `Page ${page} of ${deck.pages}` : 'No slides open');
  $('slides-prev').disabled = !deck || page <= 1;
  $('slides-next').disabled = !deck || page >= deck.pages;
  $('slides-file').disabled = app.uploading;
}

function onSlideError() {
  const src = $('slide-image').getAttribute('src');
  if (src) slideFailures.add(src);
  render();
}

async function uploadAsset(body, contentType) {
  const response = await fetch(edgeUrl(`/api/sessions/${encodeURIComponent(app.session)}/assets`), {
    method: 'POST',
    headers: { Authorization: `Bearer ${app.token}`, 'Content-Type': contentType || 'application/octet-stream' },
    body,
  });
  if (!response.ok) throw await httpError(response);
  const answer = await response.json();
  if (!ASSET_ADDRESS.test(answer?.asset)) throw new Error('the server answered without an asset address');
  return answer;
}

const baseName = (name) => name.replace(/\.[^.]+$/, '');

function deckTitle(files) {
  const first = baseName(files[0].name) || 'Slides';
  const title = files.length === 1 ? first : `${first} and ${files.length - 1} more`;
  return [...title].slice(0, DECK_TITLE_CHARS_MAX).join('');
}

/** Uploads the chosen images (one page each) or PDF and opens them as the class's slides. */
async function uploadSlides() {
  const input = $('slides-file');
  const files = [...input.files];
  const status = $('slides-upload-status');
  if (!files.length || app.uploading) return;
  const isPdf = (file) => file.type === 'application/pdf' || /\.pdf$/i.test(file.name);
  const pdfs = files.filter(isPdf);
  const images = files.filter((file) => !isPdf(file) && /^image\/(png|jpeg|webp|gif)$/.test(file.type));
  let problem = '';
  if (pdfs.length + images.length !== files.length) problem = 'Slides can be PNG, JPEG, WebP or GIF images, or one PDF.';
  else if (pdfs.length > 1 || (pdfs.length && images.length)) problem = 'Choose one PDF, or some images (one per page), not both.';
  else if (images.length > DECK_PAGES_MAX) problem = `A deck has at most ${DECK_PAGES_MAX} pages.`;
  else if (files.some((file) => file.size > ASSET_BYTES_MAX)) problem = `Each file can be at most ${ASSET_BYTES_MAX / 1024 / 1024} MB.`;
  if (problem) {
    setText(status, problem);
    input.value = '';
    input.focus();
    return;
  }
  app.uploading = true;
  render();
  try {
    let deck;
    if (pdfs.length) {
      const [pdf] = pdfs;
      setText(status, `Uploading ${pdf.name}…`);
      const answer = await uploadAsset(pdf, 'application/pdf');
      deck = { asset: answer.asset, title: [...baseName(pdf.name) || 'Slides'].slice(0, DECK_TITLE_CHARS_MAX).join(''), pages: Number(answer.pages) || 1 };
    } else {
      images.sort((a, b) => a.name.localeCompare(b.name, undefined, { numeric: true }));
      const pages = [];
      for (const [index, image] of images.entries()) {
        setText(status, `Uploading slide ${index + 1} of ${images.length}…`);
        pages.push((await uploadAsset(image, image.type)).asset);
      }
      const title = deckTitle(images);
      const manifest = await uploadAsset(JSON.stringify({ title, pages }), 'application/json');
      deck = { asset: manifest.asset, title, pages: pages.length };
    }
    setText(status, 'Opening the slides…');
    const result = await sendCommand({ type: 'open_deck', deck });
    setText(status, result.ok
      ? `“${deck.title}” is open (${deck.pages} ${deck.pages === 1 ? 'page' : 'pages'}).${app.cls.scene === 'slides_and_camera' ? '' : ' Choose “Slides and camera” to show it.'}`
      : 'The slides were uploaded but not opened.');
  } catch (error) {
    setText(status, `The slides could not be uploaded: ${error instanceof TypeError ? 'the class server cannot be reached' : error.message}`);
  } finally {
    input.value = ''; // choosing the same files again is a new choice
    app.uploading = false;
    render();
  }
}

// ---- Whiteboard ----
//
// The board is a 16:9 surface; strokes are in board units, 0..10000 on each axis, so every
// screen draws the same picture at its own size. A stroke is sent when the pen lifts (longer
// ones in pieces of STROKE_POINTS_MAX points) and shown as pending until the class has it.

const whiteboard = {
  /** The stroke being drawn: {pointerId, stroke}. */
  drawing: null,
  color: '#1f2328',
  width: 0, // CSS pixels
  height: 0,
  scale: 1, // device pixels per CSS pixel
  drawnVersion: -1,
  frame: 0,
  lastStrokeId: 0,
};

function setupWhiteboard() {
  const canvas = $('board-canvas');
  // Follows the surface's size: a phone turned sideways, a window resized, the board shown.
  new ResizeObserver(resizeBoard).observe($('board-surface'));
  canvas.addEventListener('pointerdown', onBoardPointerDown);
  canvas.addEventListener('pointermove', onBoardPointerMove);
  canvas.addEventListener('pointerup', finishStroke);
  canvas.addEventListener('pointercancel', finishStroke);
  canvas.addEventListener('lostpointercapture', finishStroke);
  for (const radio of document.querySelectorAll('input[name="board-color"]')) {
    radio.addEventListener('change', () => {
      if (radio.checked) whiteboard.color = radio.value;
    });
  }
  $('board-undo').addEventListener('click', () => sendCommand({ type: 'undo' }));
  $('board-clear').addEventListener('click', () => {
    if (window.confirm('Clear the whiteboard for everyone?')) sendCommand({ type: 'clear_board' });
  });
}

function resizeBoard() {
  const rect = $('board-surface').getBoundingClientRect();
  const width = Math.round(rect.width);
  const height = Math.round(rect.height);
  if (!width || !height) return; // hidden
  const scale = Math.min(window.devicePixelRatio || 1, 3);
  const canvas = $('board-canvas');
  canvas.width = Math.round(width * scale);
  canvas.height = Math.round(height * scale);
  Object.assign(whiteboard, { width, height, scale });
  redrawBoard();
}

function requestBoardRedraw() {
  if (whiteboard.frame) return;
  whiteboard.frame = requestAnimationFrame(() => {
    whiteboard.frame = 0;
    redrawBoard();
  });
}

function redrawBoard() {
  const canvas = $('board-canvas');
  const context = canvas.getContext('2d');
  whiteboard.drawnVersion = app.boardVersion;
  context.setTransform(1, 0, 0, 1, 0, 0);
  context.clearRect(0, 0, canvas.width, canvas.height);
  if (!whiteboard.width) return;
  context.setTransform(whiteboard.scale, 0, 0, whiteboard.scale, 0, 0);
  for (const entry of app.cls.board) drawStroke(context, entry.stroke);
  for (const item of app.pending.values()) {
    if (item.kind === 'draw') drawStroke(context, item.stroke);
  }
  if (whiteboard.drawing) drawStroke(context, whiteboard.drawing.stroke);
}

function strokeStyle(context, stroke) {
  const lineWidth = Math.max(1, (stroke.width * whiteboard.width) / BOARD_EXTENT);
  context.strokeStyle = context.fillStyle = stroke.color;
  context.lineWidth = lineWidth;
  context.lineCap = context.lineJoin = 'round';
  return lineWidth;
}

const toX = (x) => (x * whiteboard.width) / BOARD_EXTENT;
const toY = (y) => (y * whiteboard.height) / BOARD_EXTENT;

function drawStroke(context, stroke) {
  const lineWidth = strokeStyle(context, stroke);
  const [first, ...rest] = stroke.points;
  context.beginPath();
  if (!rest.length) {
    context.arc(toX(first[0]), toY(first[1]), lineWidth / 2, 0, 2 * Math.PI);
    context.fill();
    return;
  }
  context.moveTo(toX(first[0]), toY(first[1]));
  for (const [x, y] of rest) context.lineTo(toX(x), toY(y));
  context.stroke();
}

function boardPoint(event) {
  const rect = $('board-canvas').getBoundingClientRect();
  const fraction = (value, size) => Math.min(1, Math.max(0, size ? value / size : 0));
  return [
    Math.round(fraction(event.clientX - rect.left, rect.width) * BOARD_EXTENT),
    Math.round(fraction(event.clientY - rect.top, rect.height) * BOARD_EXTENT),
  ];
}

/** A new stroke id: unique per author across reloads (microseconds of the clock, then +1). */
function newStroke(points) {
  whiteboard.lastStrokeId = Math.max(whiteboard.lastStrokeId + 1, Date.now() * 1000);
  return { id: whiteboard.lastStrokeId, color: whiteboard.color, width: BOARD_STROKE_WIDTH, points };
}

function onBoardPointerDown(event) {
  if (!canDraw() || whiteboard.drawing || app.view !== 'classroom' || !app.outbox) return;
  if (event.pointerType === 'mouse' && event.button !== 0) return;
  const waiting = [...app.pending.values()].filter((item) => item.kind === 'draw').length;
  if (waiting >= BOARD_PENDING_STROKES_MAX) {
    showNotice('The board is still saving your last strokes. Wait a moment, then draw again.', 'refusal');
    return;
  }
  event.preventDefault();
  event.currentTarget.setPointerCapture(event.pointerId);
  whiteboard.drawing = { pointerId: event.pointerId, stroke: newStroke([boardPoint(event)]) };
  requestBoardRedraw();
}

function onBoardPointerMove(event) {
  const drawing = whiteboard.drawing;
  if (!drawing || event.pointerId !== drawing.pointerId) return;
  const coalesced = event.getCoalescedEvents?.() ?? [];
  const context = $('board-canvas').getContext('2d');
  for (const sample of coalesced.length ? coalesced : [event]) {
    const point = boardPoint(sample);
    const points = drawing.stroke.points;
    const last = points[points.length - 1];
    if (last[0] === point[0] && last[1] === point[1]) continue;
    points.push(point);
    // Drawn at once, segment by segment; the next full redraw draws the same.
    if (whiteboard.width) {
      strokeStyle(context, drawing.stroke);
      context.beginPath();
      context.moveTo(toX(last[0]), toY(last[1]));
      context.lineTo(toX(point[0]), toY(point[1]));
      context.stroke();
    }
    if (points.length >= STROKE_POINTS_MAX) {
      // A long line goes in pieces; the next piece starts where this one ends.
      commitStroke(drawing.stroke);
      drawing.stroke = newStroke([point]);
    }
  }
}

function finishStroke(event) {
  const drawing = whiteboard.drawing;
  if (!drawing || event.pointerId !== drawing.pointerId) return;
  whiteboard.drawing = null;
  if (event.type === 'pointercancel' && drawing.stroke.points.length < 2) {
    app.boardVersion += 1; // a touch that turned into a scroll or a gesture
    render();
    return;
  }
  commitStroke(drawing.stroke);
}

function commitStroke(stroke) {
  if (!app.outbox) return;
  const key = app.outbox.newKey();
  app.pending.set(key, { kind: 'draw', stroke, ackSeq: 0 });
  app.boardVersion += 1;
  sendCommand({ type: 'draw', stroke }, key);
  render();
}

/** Drops a stroke in progress (the right to draw was taken back, or the page left the class). */
function cancelStroke() {
  if (!whiteboard.drawing) return;
  whiteboard.drawing = null;
  app.boardVersion += 1;
}

function renderBoard() {
  const drawing = canDraw();
  const presenting = canPresent();
  const count = app.cls.board.length;
  const canvas = $('board-canvas');
  canvas.classList.toggle('can-draw', drawing);
  canvas.setAttribute('aria-label', count
    ? `Whiteboard with ${count} ${count === 1 ? 'stroke' : 'strokes'}`
    : 'Whiteboard (empty)');
  $('board-tools').hidden = !drawing && !presenting;
  $('board-undo').hidden = !drawing;
  $('board-clear').hidden = !presenting;
  $('board-clear').disabled = count === 0;
  setText($('board-note'), drawing
    ? 'Draw with a mouse, a finger or a pen. Everyone sees your strokes when you lift it.'
    : 'Only the teacher, and students the teacher allows, can draw here.');
  if (whiteboard.drawnVersion !== app.boardVersion) requestBoardRedraw();
}

// ---- Feature plugins ----
//
// The teacher switches features on from what this edge offers; every feature on has a panel
// showing the newest view the node addressed to me. A panel's controls send plugin_action
// commands; the plugin answers in the log: a new view, or a notice for me when it refuses.

const pluginTitle = (name) => app.cls.plugins.get(name)?.title || name;

/** Teachers: asks this edge which features it offers; retried with backoff while in class. */
async function loadFeatures() {
  const features = app.features;
  clearTimeout(features.timer);
  features.timer = null;
  if (!isTeacher() || app.view !== 'classroom' || features.state === 'loading') return;
  features.state = 'loading';
  render();
  try {
    const response = await fetch(edgeUrl('/api/plugins'), { headers: { Accept: 'application/json' } });
    if (!response.ok) throw await httpError(response);
    const answer = await response.json();
    const offered = Array.isArray(answer?.plugins) ? answer.plugins : [];
    features.offered = offered.filter((plugin) => PLUGIN_NAME.test(plugin?.name ?? ''))
      .map((plugin) => ({ name: plugin.name, version: String(plugin.version ?? ''), title: String(plugin.title || plugin.name) }));
    features.state = 'ready';
    features.attempt = 0;
  } catch (error) {
    features.state = 'failed';
    features.error = error instanceof TypeError ? 'the class server cannot be reached' : error.message;
    // The plugin host may be busy for a moment (503): ask again, and after the next welcome.
    if (features === app.features && app.view === 'classroom') {
      features.timer = setTimeout(loadFeatures, retryDelayMs(features.attempt));
    }
    features.attempt += 1;
  }
  render();
}

/** Whether a feature's switch waits for the node: its command is unanswered, or the event it
 * led to has not arrived yet (so that the switch does not flip back and forth). */
function featureSwitching(name) {
  if (!app.featureSwitches.has(name)) return false;
  const seq = app.featureSwitches.get(name);
  if (seq === 0 || app.cls.seq < seq) return true;
  app.featureSwitches.delete(name);
  return false;
}

/** Teachers: switches a feature on or off for the whole class. */
async function toggleFeature(name) {
  if (!isTeacher() || !PLUGIN_NAME.test(name) || featureSwitching(name)) return;
  const on = Boolean(app.cls.plugins.get(name)?.enabled);
  app.featureSwitches.set(name, 0);
  render();
  const result = await sendCommand({ type: on ? 'disable_plugin' : 'enable_plugin', plugin: name });
  if (result.ok && result.seq > app.cls.seq) app.featureSwitches.set(name, result.seq);
  else app.featureSwitches.delete(name);
  render();
}

function pluginDrafts(name) {
  if (!app.pluginDrafts.has(name)) app.pluginDrafts.set(name, new Map());
  return app.pluginDrafts.get(name);
}

/** Sends what a panel's control asks for. `control` names the control (it shows as busy until
 * the node answers); `draftKeys` are the inputs whose values go with it: they are emptied once
 * the node has the action, and filled again if the plugin refuses it. */
async function sendPluginAction(name, action, payload, control, draftKeys = []) {
  const sending = `${name}|${control}`;
  if (app.pluginSending.has(sending)) return;
  app.pluginSending.add(sending);
  render();
  const result = await sendCommand({ type: 'plugin_action', plugin: name, action, payload });
  app.pluginSending.delete(sending);
  if (result.ok) {
    const drafts = pluginDrafts(name);
    const sent = draftKeys.filter((key) => drafts.has(key)).map((key) => [key, drafts.get(key)]);
    for (const [key] of sent) drafts.delete(key);
    app.pluginSent.set(result.seq, { plugin: name, drafts: sent });
    while (app.pluginSent.size > PLUGIN_SENT_KEPT_MAX) app.pluginSent.delete(app.pluginSent.keys().next().value);
    renderedPanels.delete(name); // drawn again without what was sent
  }
  render();
}

/** What a plugin event means for this page beyond the class state: notices, announcements. */
function afterPluginEvent(event, body, wasOn) {
  const name = body.plugin;
  const mine = event.actor === app.you?.id;
  switch (body.type) {
    case 'plugin_enabled':
      if (!wasOn && !mine) announce(`${pluginTitle(name)} is on.`);
      break;
    case 'plugin_disabled':
      hidePluginNotice(name);
      app.pluginDrafts.delete(name);
      if (wasOn && !mine) announce(`${pluginTitle(name)} was switched off.`);
      break;
    case 'plugin_view':
      if (app.cls.plugins.get(name)?.viewSeq === event.seq) {
        settlePluginNotice(name);
        announce(`${pluginTitle(name)} was updated.`);
      }
      break;
    case 'plugin_notice': {
      if (body.to !== app.you?.id) break;
      // The plugin refused something I sent: what I typed goes back into the form.
      const sent = app.pluginSent.get(Number(body.cause));
      if (sent?.plugin === name) {
        const drafts = pluginDrafts(name);
        for (const [key, value] of sent.drafts) if (!drafts.has(key)) drafts.set(key, value);
        app.pluginSent.delete(Number(body.cause));
        renderedPanels.delete(name);
      }
      showPluginNotice(name, String(body.message ?? ''));
      break;
    }
    default:
      break;
  }
}

/** Shows a plugin's message for me in its panel (or, without a panel, as a page notice). */
function showPluginNotice(name, text) {
  hidePluginNotice(name);
  if (!text) return;
  text = text.slice(0, SERVER_TEXT_CHARS_MAX);
  if (!app.cls.plugins.get(name)?.enabled) {
    showNotice(`${pluginTitle(name)}: ${text}`, 'refusal');
    return;
  }
  const notice = { text, shownAt: performance.now(), timer: null };
  notice.timer = setTimeout(() => expirePluginNotice(name, notice), NOTICE_VISIBLE_MS);
  app.pluginNotices.set(name, notice);
}

/** The panel changed: its notice goes, once it has been up long enough to be read. */
function settlePluginNotice(name) {
  const notice = app.pluginNotices.get(name);
  if (!notice) return;
  clearTimeout(notice.timer);
  const left = notice.shownAt + PLUGIN_NOTICE_MIN_MS - performance.now();
  notice.timer = setTimeout(() => expirePluginNotice(name, notice), Math.max(0, left));
}

function expirePluginNotice(name, notice) {
  if (app.pluginNotices.get(name) !== notice) return;
  // Not while someone reads it with the pointer or the keyboard on it.
  if (pluginPanel(name)?.querySelector('.plugin-notice')?.matches(':hover, :focus-within')) {
    notice.timer = setTimeout(() => expirePluginNotice(name, notice), NOTICE_VISIBLE_MS / 4);
    return;
  }
  hidePluginNotice(name);
  render();
}

function hidePluginNotice(name) {
  clearTimeout(app.pluginNotices.get(name)?.timer);
  app.pluginNotices.delete(name);
}

function clearPluginNotices() {
  for (const name of [...app.pluginNotices.keys()]) hidePluginNotice(name);
}

// ---- Notices and announcements ----

let noticeTimer = null;

/** Shows a short message (a refusal, a change of rights) until dismissed or replaced. */
function showNotice(text, kind = 'info') {
  const notice = $('notice');
  clearTimeout(noticeTimer);
  notice.classList.toggle('empty', !text);
  notice.dataset.kind = kind;
  setText($('notice-text'), text);
  $('notice-dismiss').hidden = !text;
  if (text) noticeTimer = setTimeout(hideNoticeWhenIdle, NOTICE_VISIBLE_MS);
}

function hideNoticeWhenIdle() {
  // Not while someone reads it with the pointer or the keyboard on it.
  if ($('notice').matches(':hover, :focus-within')) {
    noticeTimer = setTimeout(hideNoticeWhenIdle, NOTICE_VISIBLE_MS / 4);
    return;
  }
  showNotice('');
}

const announcements = [];
let announceTimer = null;

/** Reads a class event out politely; a burst (catching up) is cut to the last few. */
function announce(text) {
  if (announcements.includes(text)) return; // "Polls was updated." once per burst
  announcements.push(text);
  clearTimeout(announceTimer);
  announceTimer = setTimeout(() => {
    const recent = announcements.splice(0).slice(-ANNOUNCEMENTS_MAX);
    setText($('announcer'), recent.join(' '));
  }, 300);
}

// ---- Leaving ----

/** Ends this page's part in the class: media, socket and unsent commands. */
function endClass(why) {
  const links = [...app.links.values()];
  app.links.clear();
  for (const source of ['camera', 'screen']) {
    app[source]?.getTracks().forEach((track) => track.stop());
    app[source] = null;
  }
  $('preview').srcObject = $('screen-preview').srcObject = null;
  $('teacher-video').srcObject = $('screen-video').srcObject = null;
  const socket = app.socket;
  app.socket = null;
  socket?.close();
  app.outbox?.abandon(why);
  app.outbox = null;
  app.pending.clear();
  clearTimeout(app.features.timer);
  app.features.timer = null;
  clearPluginNotices();
  cancelStroke();
  app.you = null;
  app.edge = null;
  clearTimeout(app.edgesTimer);
  app.edgesTimer = null;
  app.roster = [];
  app.alerts.clear();
  showNotice('');
  return Promise.all(links.map((link) => link.stop()));
}

async function leave() {
  app.view = 'left';
  const stopped = endClass('you left the class');
  document.title = `You left ${app.session} · multistream`;
  render();
  $('left-title').focus();
  await stopped;
}

/** The teacher removed me: the node closed the socket; nothing reconnects. */
function showRemoved() {
  app.view = 'problem';
  endClass('the teacher removed you from this class');
  showProblem('The teacher removed you from this class',
    'You can no longer watch or take part in this class. If you think this is a mistake, talk to your teacher.');
}

function rejoin() {
  const token = recall(tokenKey(app.session)) || app.token;
  const claims = decodeToken(token);
  if (!claims || isExpired(claims)) {
    showProblem('Your link has expired', 'Ask your teacher for a new one.');
    return;
  }
  enterClass(token, claims);
}

/** A closing tab frees its media on the node at once instead of after the ICE timeout. */
function onPageHide() {
  for (const link of app.links.values()) link.abandon();
  app.links.clear();
  app.socket?.close();
}

// ---------------------------------------------------------------------------------------------
// Rendering: the DOM follows `app`. Text is set only when it changes so that live regions
// announce changes, not repetitions.

function render() {
  for (const view of ['problem', 'join', 'classroom', 'left']) {
    $(view).hidden = app.view !== view;
  }
  setText($('status'), statusText());
  renderPageEdge();
  const problems = [...app.alerts.values()];
  for (const link of app.links.values()) {
    if (link.health === 'failed') problems.push(linkFailure(link));
  }
  if (app.socket?.state === 'refused') {
    problems.push(`${app.socket.refusal} Ask your teacher for a new link, or reload the page to try again.`);
  }
  const alert = $('alert');
  const alertText = problems.join('\n');
  if (alertText !== alert.textContent) {
    alert.textContent = alertText;
    // On a phone the controls sit below the video: bring a new problem into sight.
    if (alertText) alert.scrollIntoView({ block: 'nearest' });
  }
  if (app.view !== 'classroom') return;
  $('stage').hidden = app.presenter;
  $('studio').hidden = !canSpeak();
  renderScene();
  renderSlides();
  renderBoard();
  renderHands();
  renderFeatures();
  renderPluginPanels();
  renderChat();
  renderPeople();
  renderSync();
  if (canSpeak()) renderStudio();
  if (!app.presenter) renderStage();
}

/** The edge serving this page, beside the connection status while connected: "Server: North
 * campus" (the node id in the tooltip, for whoever supports the class). */
function renderPageEdge() {
  const element = $('edge-status');
  const edge = app.view === 'classroom' && app.socket?.state === 'open' ? app.edge : null;
  element.hidden = !edge;
  setText(element, edge ? `Server: ${edge.name}` : '');
  const title = edge ? `This page is connected to the class through ${edge.name} (node ${edge.id.slice(0, 16)}…).` : '';
  if (element.title !== title) element.title = title;
}

function linkFailure(link) {
  const what = link.direction === 'publish'
    ? (link.source === 'camera' ? 'Your camera could not be sent to the class' : 'Your screen could not be shared')
    : (link.source === 'camera' ? 'The class video cannot be shown' : 'The shared screen cannot be shown');
  return `${what}: ${link.detail}`;
}

function statusText() {
  if (app.view === 'loading') return 'Loading the classroom…';
  if (app.view === 'placing') return 'Finding your nearest server…';
  if (app.view !== 'classroom') return '';
  const socket = app.socket;
  if (!socket) return 'Connecting to the class…';
  if (socket.state === 'refused') return 'Not connected.';
  if (!navigator.onLine) return 'You are offline. Reconnecting when the network is back…';
  if (socket.state === 'connecting') return 'Connecting to the class…';
  if (socket.state === 'reconnecting') {
    const other = socket.base !== app.base ? app.edges.find((edge) => edge.base === socket.base) : null;
    return other
      ? `Connection lost. Trying another server: ${other.name}…`
      : 'Connection lost. Reconnecting…';
  }
  const reconnecting = [...app.links.values()].find((link) => link.health === 'reconnecting');
  if (reconnecting) {
    const what = reconnecting.direction === 'publish' ? 'your broadcast' : 'the video';
    return `Reconnecting ${what}… ${reconnecting.detail}`.trim();
  }
  const publishing = app.links.has('publish-camera') || app.links.has('publish-screen');
  return app.presenter || publishing ? presenterStatus() : studentStatus();
}

function presenterStatus() {
  const camera = app.links.get('publish-camera');
  const screen = app.links.get('publish-screen');
  if (!camera && !screen) return 'Connected. You are not live yet: start your camera when you are ready.';
  if ([camera, screen].some((link) => link && link.health === 'connecting')) return 'Connected. Going live…';
  const live = [camera?.health === 'connected' && 'your camera', screen?.health === 'connected' && 'your screen'].filter(Boolean);
  if (!live.length) return 'Connected, but you are not live.';
  const muted = [app.micMuted && 'microphone muted', app.cameraOff && 'camera off'].filter(Boolean);
  return `Connected. You are live with ${live.join(' and ')}${muted.length ? ` (${muted.join(', ')})` : ''}.`;
}

function studentStatus() {
  const sound = app.soundBlocked ? ' The browser blocked the sound: press “Click to enable sound”.' : '';
  return studentMediaStatus() + sound;
}

function studentMediaStatus() {
  const presenter = liveWith('camera');
  const sharer = liveWith('screen');
  if (!presenter && !sharer) return 'Connected. Waiting for the teacher to start.';
  const camera = app.links.get('watch-camera');
  if (camera?.health === 'failed') return 'Connected, but the video cannot be shown.';
  if (presenter && camera?.health !== 'connected') return `Connected. Connecting to ${presenter.name}'s video…`;
  const parts = [];
  if (presenter) parts.push(`watching ${presenter.name}`);
  if (sharer) parts.push(`${sharer.name} is sharing a screen`);
  return `Connected: ${parts.join('; ')}.`;
}

/** The scene: what the class's main area shows, chosen by the teacher or a presenter. */
function renderScene() {
  const scene = app.cls.scene;
  const classroom = $('classroom');
  if (classroom.dataset.scene !== scene) classroom.dataset.scene = scene;
  const presenting = canPresent();
  $('scene-bar').hidden = !presenting;
  for (const button of $('scene-bar').querySelectorAll('button[data-scene]')) {
    button.setAttribute('aria-pressed', String(button.dataset.scene === scene));
  }
  $('scene-label').hidden = presenting;
  setText($('scene-label'), `The class is showing: ${SCENE_LABELS[scene]}.`);
  $('slides').hidden = scene !== 'slides_and_camera';
  $('board').hidden = scene !== 'whiteboard_and_camera';
  $('slides-tools').hidden = !presenting;
}

function renderStage() {
  const presenter = liveWith('camera');
  const sharer = liveWith('screen');
  // The screen belongs to the camera and screen scenes; slides and the board take its place.
  const sceneAllowsScreen = app.cls.scene === 'camera' || app.cls.scene === 'screen';
  const screenShown = Boolean(sharer && app.links.get('watch-screen') && sceneAllowsScreen);
  $('stage').classList.toggle('has-screen', screenShown);
  $('screen-tile').hidden = !screenShown;
  $('camera-tile').hidden = screenShown && !presenter; // no empty box beside a screen
  $('camera-note').hidden = Boolean(presenter);
  setText($('camera-note'), app.cls.scene === 'screen' && !sharer
    ? 'Waiting for the screen to be shared.'
    : 'Waiting for the teacher to start.');
  $('teacher-video').setAttribute('aria-label', presenter ? `Camera of ${presenter.name}` : 'Teacher camera (not started)');
  $('screen-video').setAttribute('aria-label', sharer ? `Screen shared by ${sharer.name}` : 'Shared screen');
  $('enable-sound').hidden = !app.soundBlocked;
  // The node never sends a speaker their own stream, so the stage can play with sound.
  const teacherVideo = $('teacher-video');
  const silent = app.soundBlocked;
  if (teacherVideo.muted !== silent) teacherVideo.muted = silent;
}

function renderStudio() {
  const live = Boolean(app.camera);
  const canShare = Boolean(navigator.mediaDevices?.getDisplayMedia);
  $('speaker-note').hidden = app.presenter;
  const start = $('start-camera');
  start.hidden = live;
  start.disabled = app.busy;
  $('preview-note').hidden = live && !app.cameraOff;
  setText($('preview-note'), live ? 'Your camera is off. The class sees a black picture.' : 'Your camera is not started.');

  const mic = $('mute-mic');
  mic.hidden = !live || app.camera.getAudioTracks().length === 0;
  mic.setAttribute('aria-pressed', String(app.micMuted));
  setText(mic, app.micMuted ? 'Unmute microphone' : 'Mute microphone');

  const picture = $('camera-off');
  picture.hidden = !live || app.camera.getVideoTracks().length === 0;
  picture.setAttribute('aria-pressed', String(app.cameraOff));
  setText(picture, app.cameraOff ? 'Turn camera on' : 'Turn camera off');

  const share = $('share-screen');
  share.hidden = !canShare;
  share.disabled = app.busy && !app.screen;
  setText(share, app.screen ? 'Stop sharing' : 'Share screen');
  $('share-note').hidden = canShare;
  $('screen-preview-tile').hidden = !app.screen;

  $('stop-publishing').hidden = !app.camera && !app.screen;
}

/** Replaces a list's items and puts the keyboard focus back on the same control (by its
 * data-focus-key), or on the list when that control is gone. */
function replaceKeepingFocus(list, items) {
  const focused = list.contains(document.activeElement) ? document.activeElement.dataset.focusKey : undefined;
  list.replaceChildren(...items);
  if (focused === undefined) return;
  const again = list.querySelector(`[data-focus-key="${CSS.escape(focused)}"]`);
  (again ?? list).focus();
}

function emptyItem(text) {
  const item = document.createElement('li');
  item.className = 'empty';
  item.textContent = text;
  return item;
}

function badge(text, className = '') {
  const element = document.createElement('span');
  element.className = `badge ${className}`.trim();
  element.textContent = text;
  return element;
}

/** A teacher's button about one person: visible words first, the person's name for screen
 * readers after (so the accessible name starts with what is visible). */
function personButton(action, participant, words, name, pressed) {
  const button = document.createElement('button');
  button.type = 'button';
  button.className = 'small';
  button.dataset.action = action;
  button.dataset.participant = participant;
  button.dataset.focusKey = `${action}:${participant}`;
  if (pressed !== undefined) button.setAttribute('aria-pressed', String(pressed));
  const hidden = document.createElement('span');
  hidden.className = 'visually-hidden';
  hidden.textContent = `: ${name}`;
  button.append(words, hidden);
  return button;
}

let renderedHands = '';
function renderHands() {
  const teacher = isTeacher();
  const hands = app.cls.hands;
  const raised = Boolean(app.you && hands.includes(app.you.id));
  const raise = $('raise-hand');
  raise.hidden = teacher || !app.you || !app.synced;
  raise.setAttribute('aria-pressed', String(raised));
  setText(raise, raised ? 'Lower my hand' : 'Raise hand');

  const key = JSON.stringify([hands, teacher, app.you?.id, hands.map((id) => app.cls.members[id]?.name)]);
  if (key === renderedHands) return;
  renderedHands = key;
  $('hands').hidden = !teacher && hands.length === 0;
  setText($('hands-title'), `Raised hands (${hands.length})`);
  $('lower-all-hands').hidden = !teacher || hands.length === 0;
  const items = hands.map((id) => {
    const item = document.createElement('li');
    const name = document.createElement('span');
    name.className = 'person-name';
    name.textContent = memberName(id);
    item.append(name);
    if (teacher) item.append(personButton('lower-hand', id, 'Lower hand', memberName(id)));
    return item;
  });
  if (!items.length) items.push(emptyItem('No hands are raised.'));
  replaceKeepingFocus($('hands-list'), items);
}

/** Renders the chat log, appending new lines (so that screen readers read only those). */
function renderChat() {
  $('chat-form').hidden = !canChat();
  $('chat-readonly').hidden = canChat();
  const log = $('chat-log');
  const list = $('chat-list');
  const lines = app.cls.chat;
  const pendingChats = [...app.pending].filter(([, item]) => item.kind === 'chat');
  if (!lines.length && !pendingChats.length) {
    if (!list.firstElementChild?.classList.contains('empty')) list.replaceChildren(emptyItem('No messages yet.'));
    return;
  }
  list.querySelector('li.empty')?.remove();
  const nearBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 40;
  const confirmed = [...list.querySelectorAll('li[data-seq]')];
  const lastShown = Number(confirmed.at(-1)?.dataset.seq ?? 0);
  const shownLines = lines.filter((line) => line.seq <= lastShown);
  const consistent = confirmed.length === shownLines.length
    && (!confirmed.length || Number(confirmed[0].dataset.seq) === shownLines[0]?.seq);
  // A snapshot replaced the chat (or old lines were dropped): start the list over.
  if (!consistent) list.replaceChildren();
  for (const item of list.querySelectorAll('li.pending')) {
    if (!app.pending.has(item.dataset.key)) item.remove();
  }
  const firstPending = list.querySelector('li.pending');
  const newLines = consistent ? lines.filter((line) => line.seq > lastShown) : lines;
  for (const line of newLines) list.insertBefore(chatItem(line), firstPending);
  for (const [key, item] of pendingChats) {
    if (!list.querySelector(`li.pending[data-key="${CSS.escape(key)}"]`)) list.append(pendingChatItem(key, item.text));
  }
  if (nearBottom || newLines.some((line) => line.from === app.you?.id)) log.scrollTop = log.scrollHeight;
}

function chatItem(line) {
  const item = document.createElement('li');
  item.dataset.seq = String(line.seq);
  if (line.from === app.you?.id && !line.plugin) item.className = 'mine';
  const meta = document.createElement('span');
  meta.className = 'chat-meta';
  const from = document.createElement('span');
  from.className = 'chat-from';
  if (line.plugin) {
    // A feature's line: in the feature's name, marked as such (not a person writing).
    item.className = 'plugin';
    item.dataset.plugin = line.plugin;
    from.textContent = pluginTitle(line.plugin);
    meta.append(from, ' ', badge('Feature', 'feature'));
  } else {
    from.textContent = memberName(line.from);
    meta.append(from);
  }
  if (line.at) {
    const time = document.createElement('time');
    const when = new Date(line.at);
    time.dateTime = when.toISOString();
    time.textContent = when.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
    meta.append(' ', time);
  }
  const text = document.createElement('span');
  text.className = 'chat-text';
  text.textContent = line.text;
  item.append(meta, text);
  return item;
}

function pendingChatItem(key, text) {
  const item = document.createElement('li');
  item.className = 'pending mine';
  item.dataset.key = key;
  const meta = document.createElement('span');
  meta.className = 'chat-meta';
  meta.textContent = 'You · sending…';
  const body = document.createElement('span');
  body.className = 'chat-text';
  body.textContent = text;
  item.append(meta, body);
  return item;
}

/** Renders "Who is live" and "Who is here"; rebuilt only when what they show changes. */
let renderedPeople = '';
function renderPeople() {
  const key = JSON.stringify([app.roster, app.you?.id, app.edge, app.socket?.state, app.cls.members, app.cls.hands, isTeacher()]);
  if (key === renderedPeople) return;
  renderedPeople = key;
  const live = app.roster.filter((person) => person.live?.length);
  fillList($('live-list'), live, 'No one is live yet.');
  const people = classPeople();
  const here = people.filter((person) => person.present).length;
  const showEdges = classEdges().size > 1;
  const items = people.map((person) => personItem(person, showEdges));
  if (!items.length) items.push(emptyItem(app.socket?.state === 'open' ? 'No one else is here yet.' : 'Not connected yet.'));
  replaceKeepingFocus($('roster-list'), items);
  setText($('people-title'), `Who is here (${here})`);
}

/** Everyone in the class (present or away, not removed), with what they publish now. Before
 * the class state arrives, the live roster stands in for it. */
function classPeople() {
  const liveById = new Map(app.roster.map((person) => [person.id, person.live ?? []]));
  const members = Object.entries(app.cls.members).filter(([, member]) => !member.removed);
  const people = members.length
    ? members.map(([id, member]) => ({ id, ...member, live: liveById.get(id) ?? [] }))
    : app.roster.map((person) => ({ ...person, present: true, permissions: [] }));
  const rank = (person) => (person.role === 'teacher' ? 0 : 1) + (person.present ? 0 : 2);
  return people.sort((a, b) => rank(a) - rank(b) || a.name.localeCompare(b.name));
}

/** The edges (node ids) the people present are connected through, this page's included. One
 * edge: the class looks as it does on a single node, without "via …" labels. */
function classEdges() {
  const edges = new Set(Object.values(app.cls.members)
    .filter((member) => member.present && !member.removed && member.edge)
    .map((member) => member.edge));
  if (app.edge) edges.add(app.edge.id);
  return edges;
}

/** "via North campus": the edge a present person is connected through, when the class spans
 * several. Screen readers also hear whether it is this page's edge (when the node said which
 * that is). */
function edgeLabel(person) {
  const label = document.createElement('span');
  label.className = 'person-edge';
  label.dataset.edge = person.edge;
  label.append(`via ${person.edgeName}`);
  if (!app.edge) {
    label.title = `Connected through ${person.edgeName}`;
    return label;
  }
  const here = person.edge === app.edge.id;
  label.classList.add(here ? 'same-edge' : 'other-edge');
  label.title = here
    ? `Connected through ${person.edgeName}, the same server as this page`
    : `Connected through ${person.edgeName}, another server than this page's (${app.edge.name})`;
  const extra = document.createElement('span');
  extra.className = 'visually-hidden';
  extra.textContent = here ? ' (your server)' : ' (another server)';
  label.append(extra);
  return label;
}

const ROLE_LABELS = { teacher: 'Teacher', student: 'Student', guest: 'Guest' };
const PERMISSION_LABELS = { speak: 'Speaker', present: 'Presenter', draw: 'Can draw' };
const PERMISSION_ACTIONS = {
  speak: ['Make speaker', 'Stop speaker'],
  draw: ['Allow drawing', 'Stop drawing'],
  present: ['Allow presenting', 'Stop presenting'],
};

function personItem(person, showEdges) {
  const item = document.createElement('li');
  item.dataset.participant = person.id;
  const name = document.createElement('span');
  name.className = 'person-name';
  name.textContent = person.id === app.you?.id ? `${person.name} (you)` : person.name;
  item.append(name, ' ', badge(ROLE_LABELS[person.role] ?? person.role));
  if (showEdges && person.present && person.edge) item.append(' ', edgeLabel(person));
  if (!person.present) item.append(' ', badge('Away', 'away'));
  if (person.live?.length) item.append(' ', badge(`Live: ${[...new Set(person.live)].join(' and ')}`, 'live'));
  if (app.cls.hands.includes(person.id)) item.append(' ', badge('Hand raised', 'hand'));
  for (const permission of person.permissions ?? []) item.append(' ', badge(PERMISSION_LABELS[permission] ?? permission));
  if (isTeacher() && person.role !== 'teacher' && person.id !== app.you?.id) {
    const actions = document.createElement('div');
    actions.className = 'person-actions';
    actions.setAttribute('role', 'group');
    actions.setAttribute('aria-label', `Actions for ${person.name}`);
    for (const permission of ['speak', 'draw', 'present']) {
      const has = person.permissions.includes(permission);
      const [grant, revoke] = PERMISSION_ACTIONS[permission];
      actions.append(personButton(permission, person.id, has ? revoke : grant, person.name));
    }
    const remove = personButton('remove', person.id, 'Remove…', person.name);
    remove.classList.add('danger-outline');
    actions.append(remove);
    item.append(actions);
  }
  return item;
}

function fillList(list, people, emptyText) {
  const items = people.map((person) => {
    const item = document.createElement('li');
    const name = document.createElement('span');
    name.className = 'person-name';
    name.textContent = person.id === app.you?.id ? `${person.name} (you)` : person.name;
    item.append(name, ' ', badge(ROLE_LABELS[person.role] ?? person.role));
    if (person.live?.length) item.append(' ', badge(`Live: ${[...new Set(person.live)].join(' and ')}`, 'live'));
    return item;
  });
  if (items.length === 0) items.push(emptyItem(emptyText));
  list.replaceChildren(...items);
}

/** Where this page is in the class log, and what of mine is still on its way. */
function renderSync() {
  const socket = app.socket;
  const waiting = app.outbox?.waiting ?? 0;
  const changes = (n) => `${n} ${n === 1 ? 'change' : 'changes'}`;
  let text;
  if (!socket || socket.state === 'connecting') text = 'Class log: connecting…';
  else if (socket.state === 'refused') text = 'Class log: not connected.';
  else if (socket.state !== 'open') text = `Class log: reconnecting…${waiting ? ` ${changes(waiting)} of yours will be sent when it is back.` : ''}`;
  else if (!app.synced) text = 'Class log: loading the class…';
  else text = `Class log: connected, up to date (event ${app.cls.seq}).${waiting ? ` Sending ${changes(waiting)}…` : ''}`;
  setText($('sync-status'), text);
}

/** Teachers: the features this edge offers, each with a switch (role=switch) for the class. */
let renderedFeatures = '';
function renderFeatures() {
  const teacher = isTeacher();
  $('features').hidden = !teacher;
  if (!teacher) return;
  const { state, offered, error } = app.features;
  const names = new Map(offered.map((plugin) => [plugin.name, plugin]));
  // A feature on in this class but not offered here (the class's home is another edge, or it
  // was unloaded) is listed too, so that it can be switched off.
  for (const [name, entry] of app.cls.plugins) {
    if (entry.enabled && !names.has(name)) names.set(name, { name, version: entry.version, title: entry.title });
  }
  const rows = [...names.values()].sort((a, b) => a.title.localeCompare(b.title)).map((plugin) => {
    const entry = app.cls.plugins.get(plugin.name);
    return { ...plugin, on: Boolean(entry?.enabled), busy: featureSwitching(plugin.name), health: entry?.health ?? 'healthy', reason: entry?.reason ?? '', classVersion: entry?.version ?? '' };
  });
  setText($('features-status'), {
    idle: '',
    loading: rows.length ? '' : 'Loading the features…',
    failed: `The list of features could not be loaded (${error}). Trying again…`,
    ready: rows.length ? '' : 'This server offers no features.',
  }[state] ?? '');
  const key = JSON.stringify([rows, app.synced]);
  if (key === renderedFeatures) return;
  renderedFeatures = key;
  replaceKeepingFocus($('features-list'), rows.map(featureRow));
}

function featureRow(plugin) {
  const item = document.createElement('li');
  item.dataset.plugin = plugin.name;
  const stateId = `feature-${plugin.name}-state`;
  const toggle = document.createElement('button');
  toggle.type = 'button';
  toggle.className = 'switch';
  toggle.setAttribute('role', 'switch');
  toggle.setAttribute('aria-checked', String(plugin.on));
  toggle.setAttribute('aria-describedby', stateId);
  toggle.dataset.plugin = plugin.name;
  toggle.dataset.focusKey = `feature:${plugin.name}`;
  // Kept focusable while it waits, so that the keyboard stays where it was.
  if (plugin.busy || !app.synced) toggle.setAttribute('aria-disabled', 'true');
  const track = document.createElement('span');
  track.className = 'switch-track';
  track.setAttribute('aria-hidden', 'true');
  const title = document.createElement('span');
  title.className = 'switch-label';
  title.textContent = plugin.title;
  toggle.append(track, title);
  toggle.addEventListener('click', () => {
    if (toggle.getAttribute('aria-disabled') !== 'true') toggleFeature(plugin.name);
  });

  const state = document.createElement('span');
  state.id = stateId;
  state.className = 'feature-state';
  state.dataset.health = plugin.on ? plugin.health : 'healthy';
  const version = plugin.classVersion || plugin.version;
  let text = plugin.on ? 'On' : 'Off';
  if (plugin.busy) text = plugin.on ? 'Switching off…' : 'Switching on…';
  else if (plugin.on && plugin.health === 'degraded') text = 'On, having trouble';
  else if (plugin.on && plugin.health === 'quarantined') text = 'Stopped after repeated failures: switch it off and on to reset it';
  state.textContent = version ? `${text} · version ${version}` : text;
  item.append(toggle, state);
  return item;
}

/** What each plugin panel's view was last drawn from: name -> key. */
const renderedPanels = new Map();

const pluginPanel = (name) => $('plugin-panels').querySelector(`:scope > section[data-plugin="${CSS.escape(name)}"]`);

/** One panel per feature on, in a stable order; each shows its newest view for me. */
function renderPluginPanels() {
  const container = $('plugin-panels');
  const teacher = isTeacher();
  const on = [...app.cls.plugins].filter(([, entry]) => entry.enabled).sort(([a], [b]) => a.localeCompare(b));
  const names = new Set(on.map(([name]) => name));
  for (const panel of [...container.children]) {
    if (names.has(panel.dataset.plugin)) continue;
    const hadFocus = panel.contains(document.activeElement);
    renderedPanels.delete(panel.dataset.plugin);
    panel.remove();
    if (hadFocus) $('class-title').focus();
  }
  let previous = null;
  for (const [name, entry] of on) {
    const panel = pluginPanel(name) ?? newPluginPanel(name);
    const next = previous ? previous.nextElementSibling : container.firstElementChild;
    if (panel !== next) container.insertBefore(panel, next);
    drawPluginPanel(panel, name, entry, teacher);
    previous = panel;
  }
}

function newPluginPanel(name) {
  const panel = document.createElement('section');
  panel.className = 'panel plugin-panel';
  panel.dataset.plugin = name;
  panel.setAttribute('aria-labelledby', `plugin-${name}-title`);
  const title = document.createElement('h2');
  title.className = 'plugin-title';
  title.id = `plugin-${name}-title`;
  // Live regions exist from the start (empty), so that what appears in them is read out.
  const health = document.createElement('p');
  health.className = 'plugin-health';
  health.setAttribute('role', 'status');
  const notice = document.createElement('div');
  notice.className = 'plugin-notice empty';
  const noticeText = document.createElement('p');
  noticeText.className = 'plugin-notice-text';
  noticeText.setAttribute('role', 'alert');
  noticeText.setAttribute('aria-atomic', 'true');
  const dismiss = document.createElement('button');
  dismiss.type = 'button';
  dismiss.className = 'small';
  dismiss.textContent = 'Dismiss';
  dismiss.hidden = true;
  dismiss.addEventListener('click', () => {
    hidePluginNotice(name);
    render();
    panel.querySelector('.plugin-view').focus();
  });
  notice.append(noticeText, dismiss);
  const view = document.createElement('div');
  view.className = 'plugin-view';
  view.tabIndex = -1; // where the keyboard goes when the control it was on is gone
  panel.append(title, health, notice, view);
  return panel;
}

/** The health line: teachers get the reason and what to do; students a short note. */
function pluginHealthText(entry, teacher) {
  if (entry.health === 'healthy') return '';
  if (!teacher) return 'This feature is having trouble.';
  const reason = entry.reason ? `: ${entry.reason.replace(/[.\s]+$/, '')}` : '';
  return entry.health === 'degraded'
    ? `${entry.title} is having trouble${reason}. It is being restarted; changes may take a moment to show.`
    : `${entry.title} was switched off after repeated failures${reason}. Switch it off and on again under “Features” to reset it.`;
}

function drawPluginPanel(panel, name, entry, teacher) {
  setText(panel.querySelector('.plugin-title'), entry.title);
  const health = panel.querySelector('.plugin-health');
  setText(health, pluginHealthText(entry, teacher));
  health.dataset.health = entry.health;
  const notice = app.pluginNotices.get(name);
  panel.querySelector('.plugin-notice').classList.toggle('empty', !notice);
  setText(panel.querySelector('.plugin-notice-text'), notice?.text ?? '');
  panel.querySelector('.plugin-notice button').hidden = !notice;

  const quarantined = entry.health === 'quarantined';
  const sending = [...app.pluginSending].filter((key) => key.startsWith(`${name}|`));
  const key = JSON.stringify([entry.viewSeq, teacher, quarantined, sending]);
  if (renderedPanels.get(name) === key) return;
  renderedPanels.set(name, key);
  const box = panel.querySelector('.plugin-view');
  box.dataset.seq = String(entry.viewSeq);
  const nodes = entry.view
    ? pluginViewNodes(name, entry, { disabled: quarantined, sending: new Set(sending.map((k) => k.slice(name.length + 1))) })
    : [pluginText('p', 'plugin-text hint', 'Nothing to show yet.')];
  replaceViewKeepingFocus(box, nodes);
}

/** Like replaceKeepingFocus, for a panel's view: also keeps the caret in a text field, so that
 * someone typing does not notice that the view was replaced under their fingers. */
function replaceViewKeepingFocus(box, nodes) {
  const active = box.contains(document.activeElement) ? document.activeElement : null;
  const focused = active?.dataset.focusKey;
  const caret = typeof active?.selectionStart === 'number'
    ? [active.selectionStart, active.selectionEnd, active.selectionDirection] : null;
  box.replaceChildren(...nodes);
  if (!active) return;
  const again = focused === undefined ? null : box.querySelector(`[data-focus-key="${CSS.escape(focused)}"]`);
  if (!again || again.disabled) {
    box.focus({ preventScroll: true });
    return;
  }
  again.focus({ preventScroll: true });
  if (caret && typeof again.setSelectionRange === 'function') {
    try {
      again.setSelectionRange(...caret);
    } catch {
      // Not a text field after all: the caret does not matter.
    }
  }
}

/** Text from a plugin, cut to a sane length: plugin output is untrusted. */
const pluginString = (value) => String(value ?? '').slice(0, PLUGIN_TEXT_CHARS_MAX);
const isObject = (value) => Boolean(value) && typeof value === 'object' && !Array.isArray(value);

function pluginText(tag, className, text) {
  const element = document.createElement(tag);
  element.className = className;
  element.textContent = pluginString(text);
  return element;
}

/** A panel's view as DOM nodes. Every string from the plugin goes in with textContent. */
function pluginViewNodes(name, entry, context) {
  const drafts = pluginDrafts(name);
  const used = new Set(); // draft keys of the controls drawn: drafts of controls gone are dropped
  const nodes = [];
  const view = entry.view;
  if (view.title && view.title !== entry.title) nodes.push(pluginText('p', 'plugin-view-title', view.title));
  const buttonsByData = new Map(); // for stable focus keys of buttons (see pluginButton)
  let lastHeading = '';
  view.blocks.forEach((block, index) => {
    if (!isObject(block)) return;
    const prefix = `plugin-${name}-${index}`;
    switch (block.type) {
      case 'heading':
        lastHeading = pluginString(block.text);
        nodes.push(pluginText('h3', 'plugin-heading', block.text));
        break;
      case 'text':
        nodes.push(pluginText('p', 'plugin-text', block.text));
        break;
      case 'choices':
        nodes.push(choicesBlock(name, block, prefix, lastHeading, drafts, used, context));
        break;
      case 'bars':
        nodes.push(barsBlock(block));
        break;
      case 'list':
        nodes.push(listBlock(name, block, context));
        break;
      case 'button': {
        const data = JSON.stringify(block.data ?? null);
        const ordinal = buttonsByData.get(data) ?? 0;
        buttonsByData.set(data, ordinal + 1);
        const button = pluginButton(name, block.label, block.action, block.data, `button:${data}:${ordinal}`, context);
        button.classList.add('plugin-button');
        nodes.push(button);
        break;
      }
      case 'form':
        nodes.push(formBlock(name, block, prefix, drafts, used, context));
        break;
      default:
        // A block from a newer plugin than this page knows: said plainly, nothing else drawn.
        nodes.push(pluginText('p', 'plugin-text hint', 'Part of this panel cannot be shown on this page.'));
        break;
    }
  });
  for (const key of [...drafts.keys()]) if (!used.has(key)) drafts.delete(key);
  if (!nodes.length) nodes.push(pluginText('p', 'plugin-text hint', 'Nothing to show yet.'));
  return nodes;
}

/** A button that sends `action` with `data` as payload. Busy (aria-disabled, still focusable)
 * while its action is on its way. */
function pluginButton(name, label, action, data, focusKey, context, described = '') {
  const button = document.createElement('button');
  button.type = 'button';
  button.dataset.action = pluginString(action);
  button.dataset.focusKey = focusKey;
  button.append(pluginString(label));
  if (described) {
    // Visible words first, then what it is about, for screen readers ("Upvote: Why is…").
    const hidden = document.createElement('span');
    hidden.className = 'visually-hidden';
    hidden.textContent = `: ${[...described].slice(0, 80).join('')}`;
    button.append(hidden);
  }
  const busy = context.sending.has(focusKey);
  if (context.disabled) button.disabled = true;
  if (busy) button.setAttribute('aria-disabled', 'true');
  button.addEventListener('click', () => {
    if (button.getAttribute('aria-disabled') === 'true') return;
    sendPluginAction(name, String(action ?? ''), data ?? null, focusKey);
  });
  return button;
}

/** Options to pick from: radio buttons (or checkboxes) in a fieldset, and a submit button. */
function choicesBlock(name, block, prefix, heading, drafts, used, context) {
  const options = (Array.isArray(block.options) ? block.options : []).slice(0, PLUGIN_ITEMS_MAX);
  const multiple = block.multiple === true;
  const data = isObject(block.data) ? block.data : {};
  const key = `choices:${pluginString(block.action)}:${JSON.stringify(data)}`;
  used.add(key);
  const selected = new Set(Array.isArray(block.selected) ? block.selected.filter(Number.isInteger) : []);
  const chosen = drafts.has(key) ? new Set(drafts.get(key)) : selected;

  const form = document.createElement('form');
  form.className = 'plugin-choices';
  form.dataset.action = pluginString(block.action);
  form.noValidate = true;
  const fieldset = document.createElement('fieldset');
  const legend = document.createElement('legend');
  // The question is the heading above (visible); the legend names the group for screen readers.
  legend.textContent = heading || (multiple ? 'Choose one or more answers' : 'Choose an answer');
  if (heading) legend.className = 'visually-hidden';
  fieldset.append(legend);
  if (multiple) fieldset.append(pluginText('p', 'hint', 'You can choose more than one.'));
  options.forEach((option, index) => {
    const label = document.createElement('label');
    label.className = 'plugin-option';
    const input = document.createElement('input');
    input.type = multiple ? 'checkbox' : 'radio';
    input.name = `${prefix}-choice`;
    input.value = String(index);
    input.id = `${prefix}-choice-${index}`;
    input.checked = chosen.has(index);
    input.disabled = context.disabled;
    input.dataset.focusKey = `${key}:${index}`;
    label.htmlFor = input.id;
    label.append(input, pluginText('span', 'plugin-option-text', option));
    fieldset.append(label);
  });
  const picked = () => [...form.querySelectorAll('input:checked')].map((input) => Number(input.value));
  form.addEventListener('change', () => pluginDrafts(name).set(key, picked()));
  const submit = document.createElement('button');
  submit.type = 'submit';
  submit.className = 'primary';
  submit.textContent = pluginString(block.submit) || 'Send';
  submit.dataset.focusKey = `submit:${key}`;
  submit.disabled = context.disabled;
  if (context.sending.has(key)) submit.setAttribute('aria-disabled', 'true');
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    if (submit.getAttribute('aria-disabled') === 'true' || context.disabled) return;
    const choices = picked();
    if (!choices.length) {
      showPluginNotice(name, multiple ? 'Choose at least one answer first.' : 'Choose an answer first.');
      render();
      return;
    }
    pluginDrafts(name).set(key, choices);
    sendPluginAction(name, String(block.action ?? ''), { ...data, choices }, key, [key]);
  });
  form.append(fieldset, submit);
  return form;
}

/** A bar chart as a list: the counts are text ("Paris — 2"); the bars are decoration. */
function barsBlock(block) {
  const items = (Array.isArray(block.items) ? block.items : []).filter(isObject).slice(0, PLUGIN_ITEMS_MAX);
  const value = (item) => (Number.isSafeInteger(item.value) && item.value > 0 ? item.value : 0);
  const total = Number.isSafeInteger(block.total) && block.total > 0 ? block.total : 0;
  const scale = Math.max(1, total, ...items.map(value));
  const wrapper = document.createElement('div');
  wrapper.className = 'plugin-bars';
  const list = document.createElement('ul');
  for (const item of items) {
    const row = document.createElement('li');
    const label = pluginString(item.label);
    row.dataset.label = label;
    row.dataset.value = String(value(item));
    const text = document.createElement('span');
    text.className = 'bar-text';
    text.append(pluginText('span', 'bar-label', label), ' — ', pluginText('span', 'bar-value', String(value(item))));
    const bar = document.createElement('span');
    bar.className = 'bar';
    bar.setAttribute('aria-hidden', 'true');
    const fill = document.createElement('span');
    fill.className = 'bar-fill';
    // Through the CSSOM (allowed by the page's style-src 'self'), never a style attribute.
    fill.style.width = `${(100 * value(item)) / scale}%`;
    bar.append(fill);
    row.append(text, bar);
    const names = Array.isArray(item.names) ? item.names.slice(0, PLUGIN_ITEMS_MAX).map(pluginString) : [];
    if (names.length) row.append(pluginText('span', 'bar-names', names.join(', ')));
    list.append(row);
  }
  wrapper.append(list, pluginText('p', 'bar-total hint', `Total: ${total}`));
  return wrapper;
}

/** A list of lines, each with a note and buttons. */
function listBlock(name, block, context) {
  const list = document.createElement('ul');
  list.className = 'plugin-list';
  const items = (Array.isArray(block.items) ? block.items : []).filter(isObject).slice(0, PLUGIN_ITEMS_MAX);
  for (const item of items) {
    const row = document.createElement('li');
    row.append(pluginText('span', 'item-text', item.text));
    if (item.note) row.append(pluginText('span', 'item-note', item.note));
    const buttons = (Array.isArray(item.buttons) ? item.buttons : []).filter(isObject);
    if (buttons.length) {
      const group = document.createElement('span');
      group.className = 'item-buttons';
      for (const spec of buttons) {
        const focusKey = `item:${JSON.stringify(spec.data ?? null)}:${pluginString(spec.action)}`;
        const button = pluginButton(name, spec.label, spec.action, spec.data, focusKey, context, pluginString(item.text));
        button.classList.add('small');
        group.append(button);
      }
      row.append(group);
    }
    list.append(row);
  }
  if (!items.length) list.append(emptyItem('Nothing here yet.'));
  return list;
}

/** A form: text (one line), lines (a text area, sent as the non-empty lines) and checkboxes. */
function formBlock(name, block, prefix, drafts, used, context) {
  const action = pluginString(block.action);
  const form = document.createElement('form');
  form.className = 'plugin-form';
  form.dataset.action = action;
  form.noValidate = true;
  const fields = (Array.isArray(block.fields) ? block.fields : []).filter(isObject).slice(0, PLUGIN_ITEMS_MAX);
  const controls = [];
  fields.forEach((field, index) => {
    const fieldName = pluginString(field.name);
    const kind = ['text', 'lines', 'checkbox'].includes(field.kind) ? field.kind : 'text';
    const key = `form:${action}:${fieldName}`;
    used.add(key);
    const id = `${prefix}-field-${index}`;
    const label = document.createElement('label');
    label.htmlFor = id;
    let input;
    if (kind === 'checkbox') {
      input = document.createElement('input');
      input.type = 'checkbox';
      input.checked = drafts.get(key) === true;
      label.className = 'plugin-check';
      label.append(input, pluginText('span', '', field.label));
    } else {
      input = document.createElement(kind === 'lines' ? 'textarea' : 'input');
      if (kind === 'lines') input.rows = 4;
      else input.type = 'text';
      input.autocomplete = 'off';
      input.value = typeof drafts.get(key) === 'string' ? drafts.get(key) : '';
      label.textContent = pluginString(field.label);
    }
    input.id = id;
    input.name = fieldName;
    input.disabled = context.disabled;
    input.dataset.focusKey = key;
    const remember = () => pluginDrafts(name).set(key, kind === 'checkbox' ? input.checked : input.value);
    input.addEventListener(kind === 'checkbox' ? 'change' : 'input', remember);
    controls.push({ name: fieldName, kind, key, input });
    const row = document.createElement('div');
    row.className = `plugin-field ${kind}`;
    // A checkbox sits inside its label; a text field follows it.
    if (kind === 'checkbox') row.append(label);
    else row.append(label, input);
    form.append(row);
  });
  const submitKey = `form:${action}`;
  const submit = document.createElement('button');
  submit.type = 'submit';
  submit.className = 'primary';
  submit.textContent = pluginString(block.submit) || 'Send';
  submit.dataset.focusKey = `submit:${submitKey}`;
  submit.disabled = context.disabled;
  if (context.sending.has(submitKey)) submit.setAttribute('aria-disabled', 'true');
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    if (submit.getAttribute('aria-disabled') === 'true' || context.disabled) return;
    const value = ({ kind, input }) => {
      if (kind === 'checkbox') return input.checked;
      if (kind === 'lines') return input.value.split('\n').map((line) => line.trim()).filter(Boolean);
      return input.value;
    };
    for (const control of controls) {
      pluginDrafts(name).set(control.key, control.kind === 'checkbox' ? control.input.checked : control.input.value);
    }
    // fromEntries: a field named "__proto__" is a plain key like any other.
    const payload = Object.fromEntries(controls.map((control) => [control.name, value(control)]));
    sendPluginAction(name, action, payload, submitKey, controls.map((control) => control.key));
  });
  form.append(submit);
  return form;
}

// ---------------------------------------------------------------------------------------------
// Start-up.

function bindClassroomControls() {
  $('start-camera').addEventListener('click', startCamera);
  $('share-screen').addEventListener('click', toggleScreen);
  $('mute-mic').addEventListener('click', toggleMic);
  $('camera-off').addEventListener('click', toggleCameraPicture);
  $('stop-publishing').addEventListener('click', stopPublishing);
  $('enable-sound').addEventListener('click', enableSound);
  $('leave').addEventListener('click', leave);
  $('rejoin').addEventListener('click', rejoin);
  for (const button of $('scene-bar').querySelectorAll('button[data-scene]')) {
    button.addEventListener('click', () => setScene(button.dataset.scene));
  }
  $('slides-file').addEventListener('change', uploadSlides);
  $('slides-prev').addEventListener('click', () => showPage(-1));
  $('slides-next').addEventListener('click', () => showPage(1));
  $('slide-image').addEventListener('error', onSlideError);
  $('raise-hand').addEventListener('click', toggleHand);
  $('lower-all-hands').addEventListener('click', () => sendCommand({ type: 'lower_all_hands' }));
  $('hands-list').addEventListener('click', onPersonAction);
  $('roster-list').addEventListener('click', onPersonAction);
  $('chat-form').addEventListener('submit', submitChat);
  $('notice-dismiss').addEventListener('click', () => {
    showNotice('');
    $('class-title').focus();
  });
  setupWhiteboard();
  window.addEventListener('pagehide', onPageHide);
  // A page restored from the back/forward cache has closed its connections: start afresh.
  window.addEventListener('pageshow', (event) => {
    if (event.persisted) window.location.reload();
  });
  window.addEventListener('online', () => {
    app.socket?.nudge();
    for (const link of app.links.values()) link.retryNow();
    render();
  });
  window.addEventListener('offline', render);
  // Pasting a new class link into the address bar only changes the fragment: start over.
  window.addEventListener('hashchange', () => {
    if (/(^#|&)(token|invite)=/.test(window.location.hash)) window.location.reload();
  });
}

function exposeTestHook() {
  window.multistream = {
    pcs: () => [...app.links.values()]
      .filter((link) => link.pc)
      .map(({ name, source, direction, pc }) => ({ name, source, direction, pc })),
    state: () => ({
      connected: app.socket?.state === 'open',
      you: app.you,
      edge: app.edge ? { ...app.edge } : null,
      base: app.base,
      placement: app.placement,
      moves: app.moves,
      edges: classEdges().size,
      roster: app.roster.map((person) => ({
        ...person,
        edge: app.cls.members[person.id]?.edge ?? null,
        edgeName: app.cls.members[person.id]?.edgeName ?? null,
      })),
      synced: app.synced,
      seq: app.cls.seq,
      scene: app.cls.scene,
      page: app.cls.page,
      deck: app.cls.deck,
      board: app.cls.board.length,
      chat: app.cls.chat.map((line) => line.text),
      hands: [...app.cls.hands],
      members: structuredClone(app.cls.members),
      waiting: app.outbox?.waiting ?? 0,
      notice: $('notice-text').textContent,
      lastRefusal: app.lastRefusal ?? null,
      resyncs: app.resyncs,
      plugins: Object.fromEntries([...app.cls.plugins].map(([name, entry]) => [name, {
        title: entry.title,
        version: entry.version,
        enabled: entry.enabled,
        health: entry.health,
        reason: entry.reason,
        seq: entry.viewSeq,
        view: structuredClone(entry.view),
      }])),
      pluginNotices: Object.fromEntries([...app.pluginNotices].map(([name, notice]) => [name, notice.text])),
      features: app.features.state === 'ready' ? app.features.offered.map((plugin) => plugin.name) : null,
    }),
    /** Sends a class command as the UI would (no button needed); resolves with the answer. */
    command: (command) => sendCommand(command),
  };
}

if (document.body.dataset.page === 'index') {
  bootIndex();
} else if (document.body.dataset.page === 'classroom') {
  exposeTestHook();
  bindClassroomControls();
  bootClassroom();
}
