/*
 * multistream browser client: the join page (index.html) and the classroom page (classroom.html).
 * A plain ES module with no build step and no third-party code; the node serves it as
 * /assets/app.js and nothing is fetched from anywhere else.
 *
 * The classroom page talks to the node over three channels, each of which heals itself after a
 * network blip with capped exponential backoff:
 *   - a WebSocket, GET /ws/{session}: identity (welcome), the roster, errors;
 *   - WHIP, POST /whip/{session}?source=camera|screen: publish (camera is simulcast);
 *   - WHEP, POST /whep/{session}?source=camera|screen: watch whoever is live with that source.
 * The token comes from the URL fragment (#token= or, after the name form, #invite=) and is kept
 * in sessionStorage so that a reload keeps the same identity; it is never sent in a URL.
 *
 * Stable element ids (the e2e test in tests/e2e relies on them):
 *   index.html       #join-link-form, #join-link, #join-link-error, #join-link-submit
 *   classroom.html   #status (role=status), #alert (role=alert)
 *     views          #problem (#problem-title, #problem-text), #join, #classroom, #left (#left-title)
 *     name form      #join-form, #name, #name-error, #join-submit
 *     student view   #stage, #screen-tile, #screen-video, #camera-tile, #teacher-video,
 *                    #camera-note, #enable-sound
 *     teacher view   #studio, #preview, #preview-note, #screen-preview-tile, #screen-preview,
 *                    #start-camera, #mute-mic, #camera-off, #share-screen, #stop-publishing,
 *                    #share-note
 *     both           #class-title, #live-list, #roster-list, #leave, #rejoin
 *
 * Test hook, window.multistream (classroom page only):
 *   pcs()   -> [{name, source: 'camera'|'screen', direction: 'publish'|'watch', pc}] for every
 *              media connection that currently has an RTCPeerConnection; name is
 *              `${direction}-${source}`, e.g. 'watch-camera'.
 *   state() -> {connected: boolean (WebSocket open and welcomed), you, roster}
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
/** Newest WebSocket message set this client understands (proto: WIRE_VERSION). */
const WIRE_VERSION = 1;
/** WebSocket close codes after which retrying cannot help: bad token, not allowed. */
const WS_CLOSE_UNAUTHORIZED = 4401;
const WS_CLOSE_FORBIDDEN = 4403;

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
    return `/${kind}/${encodeURIComponent(this.options.session)}?source=${this.source}`;
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
      const response = await fetch(this.#endpoint, {
        method: 'POST',
        headers: { ...this.#authorization, 'Content-Type': 'application/sdp' },
        body: pc.localDescription.sdp,
      });
      const location = response.ok ? response.headers.get('Location') : null;
      const resourceUrl = location ? new URL(location, window.location.href).href : null;
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
  retryNow() {
    const waiting = this.health === 'reconnecting' && this.#retryTimer !== null;
    if (this.health !== 'failed' && !waiting) return;
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
// SessionSocket: the session WebSocket, re-opened with backoff until closed on purpose.
//
// state: 'connecting' (first time) | 'open' (welcomed) | 'reconnecting' | 'refused' | 'closed'

class SessionSocket {
  #ws = null;
  #retryTimer = null;
  #welcomeTimer = null;

  /**
   * @param {object} options
   * @param {string} options.session
   * @param {string} options.token
   * @param {(message: object) => void} options.onMessage every server message, parsed
   * @param {() => void} options.onChange state or refusal changed
   */
  constructor(options) {
    this.options = options;
    this.state = 'closed';
    this.attempt = 0;
    this.refusal = '';
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
    const scheme = window.location.protocol === 'https:' ? 'wss' : 'ws';
    const url = `${scheme}://${window.location.host}/ws/${encodeURIComponent(this.options.session)}`;
    const ws = new WebSocket(url);
    this.#ws = ws;
    this.#set(state);
    ws.onopen = () => {
      ws.send(JSON.stringify({ type: 'hello', token: this.options.token }));
      this.#welcomeTimer = setTimeout(() => ws.close(4000, 'no welcome'), WELCOME_TIMEOUT_MS);
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
        this.#set('open');
      }
      this.options.onMessage(message);
    };
    ws.onclose = (event) => {
      if (ws !== this.#ws) return;
      clearTimeout(this.#welcomeTimer);
      if (event.code === WS_CLOSE_UNAUTHORIZED || event.code === WS_CLOSE_FORBIDDEN) {
        const reason = event.reason.replace(/[.\s]+$/, '');
        const why = reason ? ` (the server says: ${reason})` : '';
        this.refusal = event.code === WS_CLOSE_UNAUTHORIZED
          ? `The class did not accept your link${why}. It may have expired.`
          : `You are not allowed in this class${why}.`;
        this.#ws = null;
        this.#set('refused');
        return;
      }
      this.#retryTimer = setTimeout(() => this.#connect('reconnecting'), retryDelayMs(this.attempt));
      this.attempt += 1;
      this.#set('reconnecting');
    };
  }

  #set(state) {
    this.state = state;
    this.options.onChange();
  }
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
  if (token) enterClass(token, claims);
  else showJoinForm(invite);
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
    setText(button, 'Joining…');
    try {
      const response = await fetch(`/api/sessions/${encodeURIComponent(app.session)}/join`, {
        method: 'POST',
        headers: { Authorization: `Bearer ${invite}`, 'Content-Type': 'application/json' },
        body: JSON.stringify({ name }),
      });
      if (!response.ok) throw await httpError(response);
      const { token } = await response.json();
      const claims = decodeToken(token);
      if (!claims) throw new Error('The server sent back a token this page cannot read. Reload and try again.');
      remember(tokenKey(app.session), token);
      remember(inviteKey(app.session), null);
      enterClass(token, claims);
    } catch (failure) {
      refuse(failure instanceof TypeError
        ? 'The class server cannot be reached. Check your connection and try again.'
        : failure.message);
    } finally {
      button.disabled = false;
      setText(button, 'Join the class');
    }
  };
}

// ---- In class ----

function enterClass(token, claims) {
  app.token = token;
  app.claims = claims;
  app.presenter = claims.role === 'teacher' || claims.grants?.publish === true;
  app.view = 'classroom';
  app.alerts.clear();
  document.title = `${app.session} · multistream classroom`;
  setText($('class-title'), `Class: ${app.session}`);

  app.socket = new SessionSocket({
    session: app.session,
    token,
    onMessage: onServerMessage,
    onChange: () => {
      // The node sends an error message just before a refusal; the refusal says it already.
      if (app.socket?.state === 'refused') app.alerts.delete('server');
      render();
    },
  });
  app.socket.open();
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

function onServerMessage(message) {
  switch (message?.type) {
    case 'welcome':
      app.you = message.you ?? null;
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
      break;
    case 'roster':
      app.roster = Array.isArray(message.participants) ? message.participants : [];
      syncScreenWatch();
      break;
    case 'error':
      setAlert('server', `The class server says: ${String(message.message || message.code).slice(0, SERVER_TEXT_CHARS_MAX)}`);
      break;
    default:
      return; // Newer message types are ignored; the wire version tells people to reload.
  }
  render();
}

/** Someone other than me is live with this source. */
function liveWith(source) {
  return app.roster.find((person) => person.id !== app.you?.id && person.live?.includes(source)) ?? null;
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

// ---- Leaving ----

async function leave() {
  app.view = 'left';
  const links = [...app.links.values()];
  app.links.clear();
  for (const source of ['camera', 'screen']) {
    app[source]?.getTracks().forEach((track) => track.stop());
    app[source] = null;
  }
  $('preview').srcObject = $('screen-preview').srcObject = null;
  $('teacher-video').srcObject = $('screen-video').srcObject = null;
  app.socket?.close();
  app.socket = null;
  app.you = null;
  app.roster = [];
  app.alerts.clear();
  document.title = `You left ${app.session} · multistream`;
  render();
  $('left-title').focus();
  await Promise.all(links.map((link) => link.stop()));
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
  $('studio').hidden = !app.presenter;
  renderPeople();
  if (app.presenter) renderStudio();
  else renderStage();
}

function linkFailure(link) {
  const what = link.direction === 'publish'
    ? (link.source === 'camera' ? 'Your camera could not be sent to the class' : 'Your screen could not be shared')
    : (link.source === 'camera' ? 'The class video cannot be shown' : 'The shared screen cannot be shown');
  return `${what}: ${link.detail}`;
}

function statusText() {
  if (app.view === 'loading') return 'Loading the classroom…';
  if (app.view !== 'classroom') return '';
  const socket = app.socket;
  if (!socket) return 'Connecting to the class…';
  if (socket.state === 'refused') return 'Not connected.';
  if (!navigator.onLine) return 'You are offline. Reconnecting when the network is back…';
  if (socket.state === 'connecting') return 'Connecting to the class…';
  if (socket.state === 'reconnecting') return 'Connection lost. Reconnecting…';
  const reconnecting = [...app.links.values()].find((link) => link.health === 'reconnecting');
  if (reconnecting) {
    const what = reconnecting.direction === 'publish' ? 'your broadcast' : 'the video';
    return `Reconnecting ${what}… ${reconnecting.detail}`.trim();
  }
  return app.presenter ? presenterStatus() : studentStatus();
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

function renderStage() {
  const presenter = liveWith('camera');
  const sharer = liveWith('screen');
  const screenShown = Boolean(sharer && app.links.get('watch-screen'));
  $('stage').classList.toggle('has-screen', screenShown);
  $('screen-tile').hidden = !screenShown;
  $('camera-tile').hidden = screenShown && !presenter; // no empty box beside a screen
  $('camera-note').hidden = Boolean(presenter);
  setText($('camera-note'), 'Waiting for the teacher to start.');
  $('teacher-video').setAttribute('aria-label', presenter ? `Camera of ${presenter.name}` : 'Teacher camera (not started)');
  $('screen-video').setAttribute('aria-label', sharer ? `Screen shared by ${sharer.name}` : 'Shared screen');
  $('enable-sound').hidden = !app.soundBlocked;
}

function renderStudio() {
  const live = Boolean(app.camera);
  const canShare = Boolean(navigator.mediaDevices?.getDisplayMedia);
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

/** Renders "Who is live" and "Who is here"; rebuilt only when the roster or "you" changes. */
let renderedPeople = '';
function renderPeople() {
  const key = JSON.stringify([app.roster, app.you?.id, app.socket?.state]);
  if (key === renderedPeople) return;
  renderedPeople = key;
  const live = app.roster.filter((person) => person.live?.length);
  fillList($('live-list'), live, 'No one is live yet.');
  fillList($('roster-list'), app.roster, app.socket?.state === 'open' ? 'No one else is here yet.' : 'Not connected yet.');
  setText($('people-title'), `Who is here (${app.roster.length})`);
}

const ROLE_LABELS = { teacher: 'Teacher', student: 'Student', guest: 'Guest' };

function fillList(list, people, emptyText) {
  const items = people.map((person) => {
    const item = document.createElement('li');
    const name = document.createElement('span');
    name.className = 'person-name';
    name.textContent = person.id === app.you?.id ? `${person.name} (you)` : person.name;
    const role = document.createElement('span');
    role.className = 'badge';
    role.textContent = ROLE_LABELS[person.role] ?? person.role;
    item.append(name, ' ', role);
    if (person.live?.length) {
      const live = document.createElement('span');
      live.className = 'badge live';
      live.textContent = `Live: ${[...new Set(person.live)].join(' and ')}`;
      item.append(' ', live);
    }
    return item;
  });
  if (items.length === 0) {
    const empty = document.createElement('li');
    empty.className = 'empty';
    empty.textContent = emptyText;
    items.push(empty);
  }
  list.replaceChildren(...items);
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
      roster: app.roster,
    }),
  };
}

if (document.body.dataset.page === 'index') {
  bootIndex();
} else if (document.body.dataset.page === 'classroom') {
  exposeTestHook();
  bindClassroomControls();
  bootClassroom();
}
