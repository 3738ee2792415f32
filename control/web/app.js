// The admin UI of the multistream control plane: one ES module, no dependencies, no build step.
// It signs in with the session cookie and then uses the control plane's own API (/api/v1/...;
// see /api/v1/openapi.json) for every screen: sessions, courses and their members, people, edges
// (with their health and the enrolment codes that bring new ones in), plugin packages and API
// keys. Screens are chosen by the URL's fragment (#sessions, #courses, …). A refusal
// shows the API's own message beside the form that caused it (role="alert"), and successes are
// announced in a polite live region. Everything is built with DOM methods and textContent: no
// HTML is made from data.

const $ = (id) => document.getElementById(id);

/** Screens after signing in; the first is the default. */
const SCREENS = ['sessions', 'courses', 'people', 'edges', 'plugins', 'keys'];
/** Screens whose API answers only administrators. */
const ADMIN_SCREENS = new Set(['people', 'edges', 'plugins']);

/** Which form field a scheduling refusal is about (its `detail.code`). */
const REFUSAL_FIELDS = {
  ends_before_start: 'ends_at',
  too_long: 'ends_at',
  bad_capacity: 'capacity',
  above_edge_capacity: 'capacity',
  unknown_edge: 'home_edge_id',
  edge_unavailable: 'home_edge_id',
  recorder_unavailable: 'recording_policy',
  teacher_busy: 'teacher_id',
  room_busy: 'room',
};

/** Which form field a refusal is about, by its `error` code, when its message does not say. */
const ERROR_FIELDS = {
  bad_package: 'package',
  bad_component: 'package',
  version_exists: 'package',
  wrong_content_type: 'package',
};

const ROLE_NAMES = {
  admin: 'Administrator',
  teacher: 'Teacher',
  teaching_assistant: 'Teaching assistant',
  student: 'Student',
  guest: 'Guest',
  captioner: 'Captioner',
};

const state = {
  me: null,
  courses: [],
  users: [],
  edges: [],
  sessions: [],
  /** The session being edited in the schedule form, or null when scheduling a new one. */
  editing: null,
};

/** A refusal from the API (or no answer at all), with the API's message for people. */
class ApiError extends Error {
  constructor(status, code, message, detail) {
    super(message);
    this.status = status;
    this.code = code;
    this.detail = detail;
  }
}

/** One API request; answers the parsed JSON body (null for 204) or throws an ApiError. A `body`
 * that is a Blob (a chosen file) is sent as its raw bytes, application/octet-stream; any other is
 * sent as JSON. */
async function api(method, path, body) {
  const init = { method, credentials: 'same-origin', headers: { Accept: 'application/json' } };
  if (body instanceof Blob) {
    init.headers['Content-Type'] = 'application/octet-stream';
    init.body = body;
  } else if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch {
    throw new ApiError(0, 'network', 'the control plane did not answer; check the connection and try again');
  }
  if (response.status === 204) return null;
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!response.ok) {
    const message = data?.message ?? (text.trim() || `the control plane answered ${response.status}`);
    const error = new ApiError(response.status, data?.error ?? `http_${response.status}`, message, data?.detail);
    if (response.status === 401 && state.me && path !== '/api/v1/sign-in') {
      signedOut('Your sign-in has ended; sign in again.');
    }
    throw error;
  }
  return data;
}

// ---- Small helpers ----

/** An element with attributes (`text` sets textContent, `on*` adds a listener) and children. */
function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === 'text') node.textContent = value;
    else if (name.startsWith('on')) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? '' : String(value));
  }
  for (const child of children) {
    if (child !== null && child !== undefined) node.append(child);
  }
  return node;
}

/** A sentence for people from an API message ("the session ends…" → "The session ends…."). */
function sentence(text) {
  const trimmed = String(text).trim();
  if (!trimmed) return '';
  const first = trimmed[0].toUpperCase() + trimmed.slice(1);
  return /[.!?…]$/.test(first) ? first : `${first}.`;
}

function announce(text) {
  const status = $('status');
  status.textContent = '';
  // A fresh text node after clearing, so screen readers announce a repeated message again.
  requestAnimationFrame(() => {
    status.textContent = text;
  });
}

/** A button with a visible label and, for screen readers, what it acts on. */
function actionButton(label, target, onclick, extraClass) {
  return el(
    'button',
    { type: 'button', class: extraClass ?? 'small', onclick },
    label,
    el('span', { class: 'visually-hidden', text: ` ${target}` }),
  );
}

function replaceRows(table, rows, emptyNote) {
  const body = table.tBodies[0];
  body.replaceChildren(...rows);
  if (emptyNote) emptyNote.hidden = rows.length > 0;
}

const pad = (n) => String(n).padStart(2, '0');

/** A `datetime-local` value ("2027-01-11T09:00") read in this computer's zone, as RFC 3339 with
 * its offset ("2027-01-11T09:00:00+01:00"); null when it is not a date and time. */
function localToRfc3339(value) {
  const match = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2}))?/.exec(value ?? '');
  if (!match) return null;
  const [year, month, day, hour, minute, second] = match.slice(1).map((part) => Number(part ?? 0));
  const date = new Date(year, month - 1, day, hour, minute, second);
  if (Number.isNaN(date.getTime())) return null;
  // Written from the Date's own fields, so a time that does not exist here (a clock change)
  // is written as the one the browser moved it to, with that time's offset.
  const offset = -date.getTimezoneOffset();
  const sign = offset >= 0 ? '+' : '-';
  const zone = `${sign}${pad(Math.floor(Math.abs(offset) / 60))}:${pad(Math.abs(offset) % 60)}`;
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}T${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}${zone}`;
}

/** An RFC 3339 time as a `datetime-local` value in this computer's zone. */
function rfc3339ToLocal(value) {
  const date = new Date(value);
  if (Number.isNaN(date.getTime())) return '';
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}T${pad(date.getHours())}:${pad(date.getMinutes())}`;
}

const dateTimeFormat = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' });
const timeFormat = new Intl.DateTimeFormat(undefined, { timeStyle: 'short' });

/** The first hex digits of a long hex value (a key, a hash), the whole of it in its title. */
function shortHex(value) {
  if (!value) return document.createTextNode('—');
  return el('code', { class: 'id', title: value, text: value.length > 12 ? `${value.slice(0, 12)}…` : value });
}

/** Copies a read-only field's text; where the browser does not allow it, selects the text so
 * it can be copied by hand. */
async function copyField(field, what) {
  try {
    await navigator.clipboard.writeText(field.value);
    announce(`Copied the ${what}.`);
  } catch {
    field.focus();
    field.select();
    announce(`Copying was not allowed here: the ${what} is selected; copy it with Ctrl+C.`);
  }
}

/** A `<time>` element for an RFC 3339 time (or "never"). */
function timeElement(value, format = dateTimeFormat) {
  if (!value) return document.createTextNode('never');
  const date = new Date(value);
  if (Number.isNaN(date.getTime())) return document.createTextNode(value);
  return el('time', { datetime: value, text: format.format(date) });
}

// ---- Forms: busy state and errors ----

function formError(form) {
  return form.querySelector('[data-error]');
}

/** Clears a form's error and its fields' invalid marks. */
function clearFormError(form) {
  const error = formError(form);
  error.textContent = '';
  error.removeAttribute('id');
  for (const field of form.querySelectorAll('[aria-invalid]')) {
    field.removeAttribute('aria-invalid');
    const describedBy = (field.getAttribute('aria-describedby') ?? '').split(' ').filter((id) => id && !id.endsWith('-error'));
    if (describedBy.length) field.setAttribute('aria-describedby', describedBy.join(' '));
    else field.removeAttribute('aria-describedby');
  }
}

/** Shows what is wrong in `form`; marks and focuses `fieldName`'s input when it is known. */
function showFormError(form, message, fieldName) {
  const error = formError(form);
  error.id = `${form.id}-error`;
  error.textContent = sentence(message);
  const field = fieldName ? form.querySelector(`[name="${fieldName}"]:not([hidden])`) : null;
  if (field) {
    field.setAttribute('aria-invalid', 'true');
    const describedBy = (field.getAttribute('aria-describedby') ?? '').split(' ').filter(Boolean);
    field.setAttribute('aria-describedby', [...describedBy, error.id].join(' '));
    field.focus();
  }
}

/** The field an API message is about: messages name it first ("title is empty"). */
function fieldOfMessage(form, error) {
  if (error.detail?.code && REFUSAL_FIELDS[error.detail.code]) return REFUSAL_FIELDS[error.detail.code];
  const byCode = ERROR_FIELDS[error.code];
  if (byCode && form.querySelector(`[name="${byCode}"]`)) return byCode;
  const first = /^([a-z_]+) /.exec(error.message ?? '')?.[1];
  return first && form.querySelector(`[name="${first}"]`) ? first : null;
}

/** Runs `work` for a submitted form: the button is disabled meanwhile; a refusal is shown in
 * the form. `work` throws a plain Error (with `field`) for mistakes found before asking. */
function handleForm(form, work) {
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    clearFormError(form);
    const buttons = form.querySelectorAll('button[type="submit"]');
    buttons.forEach((button) => {
      button.disabled = true;
    });
    form.setAttribute('aria-busy', 'true');
    try {
      await work(form);
    } catch (error) {
      if (error instanceof ApiError) {
        if (!(error.status === 401 && form.id !== 'sign-in-form')) showFormError(form, error.message, fieldOfMessage(form, error));
      } else {
        showFormError(form, error.message, error.field);
      }
    } finally {
      buttons.forEach((button) => {
        button.disabled = false;
      });
      form.removeAttribute('aria-busy');
    }
  });
}

/** A mistake found in the page before asking the API. */
function mistake(message, field) {
  const error = new Error(message);
  error.field = field;
  return error;
}

function value(form, name) {
  return form.elements.namedItem(name)?.value.trim() ?? '';
}

/** Shows a list's loading failure above its table. */
function listError(id, error) {
  $(id).textContent = error ? sentence(error.message) : '';
}

// ---- Signing in and out ----

function signedIn(me) {
  state.me = me;
  $('whoami').textContent = `Signed in as ${me.name}${me.admin ? ' (administrator)' : ''}`;
  $('nav').hidden = false;
  $('account').hidden = false;
  for (const node of document.querySelectorAll('[data-admin]')) node.hidden = !me.admin;
  route(true);
}

function signedOut(message) {
  state.me = null;
  state.editing = null;
  $('nav').hidden = true;
  $('account').hidden = true;
  for (const form of document.querySelectorAll('form')) {
    form.reset();
    clearFormError(form);
  }
  $('key-shown').hidden = true;
  $('key-value').value = '';
  forgetEnrolmentCode();
  showScreen('sign-in');
  const form = $('sign-in-form');
  if (message) formError(form).textContent = message;
  $('sign-in-email').focus();
}

handleForm($('sign-in-form'), async (form) => {
  const email = value(form, 'email');
  const password = form.elements.namedItem('password').value;
  if (!email) throw mistake('Enter your email address.', 'email');
  if (!password) throw mistake('Enter your password.', 'password');
  const me = await api('POST', '/api/v1/sign-in', { email, password });
  form.reset();
  announce(`Signed in as ${me.name}.`);
  signedIn(me);
});

$('sign-out').addEventListener('click', async () => {
  try {
    await api('POST', '/api/v1/sign-out');
  } catch {
    // Signed out here either way; the cookie ends by itself.
  }
  signedOut('');
  announce('Signed out.');
});

// ---- Screens ----

function showScreen(name) {
  for (const section of document.querySelectorAll('.screen')) section.hidden = section.id !== `screen-${name}`;
  for (const link of document.querySelectorAll('#nav a')) {
    if (link.dataset.screen === name) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  const heading = document.querySelector(`#screen-${name} h1`);
  document.title = `${heading?.textContent ?? 'Sign in'} · multistream control`;
}

/** Shows the screen the fragment names and loads its data; `first` after signing in. */
function route(first = false) {
  if (!state.me) {
    showScreen('sign-in');
    return;
  }
  let name = location.hash.slice(1);
  if (!SCREENS.includes(name) || (ADMIN_SCREENS.has(name) && !state.me.admin)) name = SCREENS[0];
  showScreen(name);
  // Moving between screens moves focus to the new screen's heading, so a screen reader says
  // where it is; right after signing in too.
  document.querySelector(`#screen-${name} h1`)?.focus({ preventScroll: first });
  load(name);
}

window.addEventListener('hashchange', () => {
  $('status').textContent = '';
  route();
});

async function load(name) {
  switch (name) {
    case 'sessions':
      return loadSessionsScreen();
    case 'courses':
      return loadCoursesScreen();
    case 'people':
      return loadPeople();
    case 'edges':
      return Promise.all([loadEdges(), loadEnrolmentCodes()]);
    case 'plugins':
      return loadPlugins();
    case 'keys':
      return loadKeys();
    default:
      return undefined;
  }
}

// ---- Data shared by screens ----

async function fetchCourses() {
  state.courses = (await api('GET', '/api/v1/courses')).courses;
}

async function fetchUsers() {
  if (!state.me?.admin) {
    state.users = [{ id: state.me.id, name: state.me.name, email: state.me.email }];
    return;
  }
  state.users = (await api('GET', '/api/v1/users')).users;
}

async function fetchEdges() {
  if (!state.me?.admin) {
    state.edges = [];
    return;
  }
  state.edges = (await api('GET', '/api/v1/edges')).edges;
}

function fillSelect(select, options, placeholder) {
  const previous = select.value;
  const nodes = options.map(([optionValue, label, disabled]) => el('option', { value: optionValue, text: label, disabled }));
  if (placeholder !== undefined) nodes.unshift(el('option', { value: '', text: placeholder }));
  select.replaceChildren(...nodes);
  if (options.some(([optionValue]) => optionValue === previous)) select.value = previous;
}

const courseLabel = (course) => `${course.code} — ${course.title}`;
const userLabel = (user) => `${user.name} <${user.email}>`;

// ---- Courses and members ----

async function loadCoursesScreen() {
  try {
    await Promise.all([fetchCourses(), state.me.admin ? fetchUsers() : null]);
    listError('course-list-error', null);
  } catch (error) {
    listError('course-list-error', error);
    return;
  }
  renderCourses();
  if (state.me.admin) {
    fillSelect($('member-course'), state.courses.map((course) => [course.id, courseLabel(course)]));
    fillSelect($('member-user'), state.users.filter((user) => !user.disabled).map((user) => [user.id, userLabel(user)]));
    await loadMembers();
  }
}

function renderCourses() {
  const rows = state.courses.map((course) =>
    el(
      'tr',
      {},
      el('td', { text: course.code }),
      el('td', { text: course.title }),
      el('td', { text: course.roles.map((role) => ROLE_NAMES[role] ?? role).join(', ') || (state.me.admin ? 'administrator' : '—') }),
    ),
  );
  replaceRows($('course-table'), rows, $('course-empty'));
}

async function loadMembers() {
  const course = $('member-course').value;
  const form = $('member-form');
  if (!course) {
    replaceRows($('member-table'), [], $('member-empty'));
    return;
  }
  try {
    const { members } = await api('GET', `/api/v1/courses/${encodeURIComponent(course)}/members`);
    const rows = members.map((member) =>
      el('tr', {}, el('td', { text: member.name }), el('td', { text: member.email }), el('td', { text: ROLE_NAMES[member.role] ?? member.role })),
    );
    replaceRows($('member-table'), rows, $('member-empty'));
  } catch (error) {
    showFormError(form, error.message);
  }
}

$('member-course').addEventListener('change', () => {
  clearFormError($('member-form'));
  loadMembers();
});

handleForm($('course-form'), async (form) => {
  const course = await api('POST', '/api/v1/courses', { code: value(form, 'code'), title: value(form, 'title') });
  form.reset();
  announce(`Created the course ${course.code}.`);
  await loadCoursesScreen();
  $('member-course').value = course.id;
  await loadMembers();
});

handleForm($('member-form'), async (form) => {
  const course = value(form, 'course');
  const userId = value(form, 'user_id');
  if (!course) throw mistake('Create a course first.', 'course');
  if (!userId) throw mistake('Add a person first (under People).', 'user_id');
  const role = value(form, 'role');
  await api('POST', `/api/v1/courses/${encodeURIComponent(course)}/members`, { user_id: userId, role });
  const user = state.users.find((u) => u.id === userId);
  const courseCode = state.courses.find((c) => c.id === course)?.code ?? 'the course';
  announce(`Added ${user?.name ?? 'them'} to ${courseCode} as ${(ROLE_NAMES[role] ?? role).toLowerCase()}.`);
  await loadMembers();
});

// ---- People ----

async function loadPeople() {
  try {
    await fetchUsers();
    listError('people-list-error', null);
  } catch (error) {
    listError('people-list-error', error);
    return;
  }
  const rows = state.users.map((user) =>
    el('tr', {}, el('td', { text: user.name }), el('td', { text: user.email }), el('td', { text: user.disabled ? 'disabled' : 'active' })),
  );
  replaceRows($('people-table'), rows);
}

handleForm($('person-form'), async (form) => {
  const body = { name: value(form, 'name'), email: value(form, 'email'), admin: form.elements.namedItem('admin').checked };
  const password = form.elements.namedItem('password').value;
  if (password) body.password = password;
  const user = await api('POST', '/api/v1/users', body);
  form.reset();
  announce(`Added ${user.name}${user.admin ? ' as an administrator' : ''}.`);
  await loadPeople();
});

// ---- Edges ----

const STATUS_ACTIONS = [
  ['draining', 'Drain'],
  ['disabled', 'Disable'],
  ['active', 'Activate'],
];

async function loadEdges() {
  try {
    await fetchEdges();
    listError('edge-list-error', null);
  } catch (error) {
    listError('edge-list-error', error);
    return;
  }
  const rows = state.edges.map((edge) => {
    const actions = STATUS_ACTIONS.filter(([status]) => status !== edge.status).map(([status, label]) =>
      actionButton(label, edge.name, () => setEdgeStatus(edge, status, label)),
    );
    return el(
      'tr',
      { 'data-edge': edge.id },
      el('td', {}, el('span', { text: edge.name }), el('br'), el('code', { class: 'id', title: edge.id, text: `${edge.id.slice(0, 12)}…` })),
      el('td', {}, ...edgeStatus(edge)),
      el('td', { text: `${edge.load} / ${edge.capacity}` }),
      el('td', { text: String(edge.sessions) }),
      el('td', {}, timeElement(edge.last_seen_at)),
      el('td', { text: edge.version || '—' }),
      el('td', {}, el('span', { text: edge.public_url }), el('br'), el('span', { class: 'hint', text: edge.peer_addr })),
      el('td', { class: 'row-actions' }, ...actions),
    );
  });
  replaceRows($('edge-table'), rows, $('edge-empty'));
}

/** How each health an edge may be reported in is shown: its words, and what they mean. */
const EDGE_HEALTH = {
  healthy: ['healthy', 'It has checked in recently.'],
  stale: ['stale', 'It has not checked in for three heartbeat intervals.'],
  never_seen: ['never seen', 'It has never checked in.'],
};

/** An edge's status cell: the status an administrator set, its health (when the API reports it)
 * and whether it needs a restart, each in words (the colours only repeat them). */
function edgeStatus(edge) {
  const parts = [el('span', { class: `badge ${edge.status}`, text: edge.status })];
  if (typeof edge.health === 'string' && edge.health) {
    const [words, meaning] = EDGE_HEALTH[edge.health] ?? [edge.health.replaceAll('_', ' '), ''];
    parts.push(' ', el('span', { class: `badge health-${edge.health}`, title: meaning || undefined, text: words }));
  }
  if (edge.restart_needed === true) {
    parts.push(
      el('br'),
      el('span', {
        class: 'note',
        title: 'Edges joined or left the cluster since it started; it links with them after a restart.',
        text: 'restart needed',
      }),
    );
  }
  return parts;
}

async function setEdgeStatus(edge, status, label) {
  listError('edge-list-error', null);
  try {
    await api('POST', `/api/v1/edges/${encodeURIComponent(edge.id)}/status`, { status });
    announce(`${label === 'Drain' ? 'Draining' : label === 'Disable' ? 'Disabled' : 'Activated'} ${edge.name}.`);
  } catch (error) {
    listError('edge-list-error', error);
  }
  await loadEdges();
}

handleForm($('edge-form'), async (form) => {
  const capacity = Number(value(form, 'capacity'));
  if (!Number.isInteger(capacity)) throw mistake('Capacity is a whole number of participants.', 'capacity');
  const edge = await api('POST', '/api/v1/edges', {
    id: value(form, 'id'),
    name: value(form, 'name'),
    peer_addr: value(form, 'peer_addr'),
    public_url: value(form, 'public_url'),
    capacity,
  });
  form.reset();
  announce(`Registered the edge ${edge.name}.`);
  await loadEdges();
});

// ---- Enrolment codes ----

/** The command that starts a new edge and enrols it here (node/src/main.rs's flags). */
const enrolmentCommand = (code) => `multistream-node --control-url ${location.origin} --enrolment-code ${code}`;

/** What a listed code's state is called. */
const CODE_STATES = { open: 'open', used: 'used', expired: 'expired' };

async function loadEnrolmentCodes() {
  let codes;
  try {
    codes = (await api('GET', '/api/v1/enrolment-codes')).enrolment_codes;
    listError('enrolment-list-error', null);
  } catch (error) {
    listError('enrolment-list-error', error);
    return;
  }
  const rows = codes.map((code) =>
    el(
      'tr',
      { 'data-code': code.id },
      el('td', {}, el('code', { class: 'id', text: code.id })),
      el('td', {}, timeElement(code.created_at), code.created_by?.name ? ` by ${code.created_by.name}` : null),
      el('td', {}, timeElement(code.expires_at)),
      el('td', {}, ...codeState(code)),
    ),
  );
  replaceRows($('enrolment-table'), rows, $('enrolment-empty'));
}

/** A code's state in words: open, expired, or used (when, and by which edge). */
function codeState(code) {
  const badge = el('span', { class: `badge code-${code.state}`, text: CODE_STATES[code.state] ?? code.state });
  if (code.state !== 'used') return [badge];
  const edge = code.used_by ? (code.used_by.name ?? `${code.used_by.id.slice(0, 12)}…`) : null;
  return [badge, ' ', timeElement(code.used_at), edge ? ` by ${edge}` : null];
}

function forgetEnrolmentCode() {
  $('enrolment-code').value = '';
  $('enrolment-command').value = '';
  $('enrolment-expires').replaceChildren();
  $('enrolment-shown').hidden = true;
}

handleForm($('enrolment-form'), async (form) => {
  const text = value(form, 'minutes');
  const minutes = Number(text);
  if (!text || !Number.isInteger(minutes)) throw mistake('Valid for is a whole number of minutes.', 'minutes');
  const made = await api('POST', '/api/v1/enrolment-codes', { minutes });
  form.reset();
  $('enrolment-code').value = made.code;
  $('enrolment-command').value = enrolmentCommand(made.code);
  $('enrolment-expires').replaceChildren(timeElement(made.expires_at));
  $('enrolment-shown').hidden = false;
  $('enrolment-shown').focus();
  announce('Made an enrolment code. Copy it now: it is shown only once.');
  await loadEnrolmentCodes();
});

$('enrolment-copy-command').addEventListener('click', () => copyField($('enrolment-command'), 'command'));
$('enrolment-copy-code').addEventListener('click', () => copyField($('enrolment-code'), 'enrolment code'));

$('enrolment-done').addEventListener('click', () => {
  forgetEnrolmentCode();
  $('enrolment-minutes').focus();
});

// ---- Plugins ----

/** What each capability a manifest asks for lets the plugin do, for people (wit/plugin.wit). */
const CAPABILITY_WORDS = {
  'emit-events': 'Add its own entries to the class record (kept on every edge)',
  'show-panel': 'Show panels to teachers and students',
  'post-chat': 'Write in the class chat under its own name',
  'store-state': 'Keep its own saved data for each class',
};

/** Class events a plugin may ask to see besides its own, for people (proto's event kinds). */
const EVENT_WORDS = {
  joined: 'people joining',
  left: 'people leaving',
  chat: 'chat messages',
  hand_raised: 'raised hands',
  hand_lowered: 'lowered hands',
  all_hands_lowered: 'all hands lowered',
  scene_set: 'scene changes',
  deck_opened: 'slides opened',
  page_shown: 'slide changes',
  drawn: 'whiteboard drawing',
  erased: 'whiteboard erasing',
  board_cleared: 'the whiteboard cleared',
  granted: 'permissions granted',
  revoked: 'permissions taken back',
  removed: 'people removed',
};

/** The largest package the API takes (multistream_plugin_host::package::PACKAGE_BYTES_MAX). */
const PACKAGE_BYTES_MAX = 32 * 1024 * 1024;

const pluginLabel = (plugin) => `${plugin.name} ${plugin.version}`;

/** What a manifest lets the plugin do, in words, and which class events it sees. */
function pluginPowers(manifest) {
  if (!manifest || typeof manifest !== 'object') return [el('p', { class: 'powers', text: 'Not known: its manifest could not be read.' })];
  const capabilities = Array.isArray(manifest?.capabilities) ? manifest.capabilities : [];
  const subscribes = Array.isArray(manifest?.subscribes) ? manifest.subscribes : [];
  const list = capabilities.length
    ? el('ul', { class: 'powers' }, ...capabilities.map((c) => el('li', { title: c, text: CAPABILITY_WORDS[c] ?? `Something this page does not know: “${c}”` })))
    : el('p', { class: 'powers', text: 'Nothing but follow its own events: it asks for no capabilities.' });
  const sees = subscribes.length ? el('p', { class: 'hint', text: `Also sees: ${subscribes.map((kind) => EVENT_WORDS[kind] ?? kind.replaceAll('_', ' ')).join(', ')}.` }) : null;
  return [list, sees];
}

/** Who a package was approved by, from whatever the API says (a name, or a person). */
function approver(by) {
  if (!by) return null;
  if (typeof by === 'object') return by.name ?? by.email ?? by.id ?? null;
  return state.users.find((user) => user.id === by)?.name ?? String(by);
}

function pluginApproval(plugin) {
  if (!plugin.approved) return [el('span', { class: 'badge pending', text: 'not approved' })];
  const by = approver(plugin.approved_by);
  return [
    el('span', { class: 'badge approved', text: 'approved' }),
    plugin.approved_at ? ' ' : null,
    plugin.approved_at ? timeElement(plugin.approved_at) : null,
    by ? ` by ${by}` : null,
  ];
}

/** Whether this version is the one the edges run, or which one is. */
function pluginRollout(plugin, rolledOut) {
  if (plugin.rolled_out) return [el('span', { class: 'badge rolled-out', text: 'rolled out' })];
  const running = rolledOut.get(plugin.name);
  return [el('span', { text: running ? `not rolled out (the edges run ${running})` : 'not rolled out' })];
}

/** Lists the packages; `focusOn` (a package id) gets focus on its row's first button, or the
 * list when it has none, so keyboard users keep their place after a row's button goes away. */
async function loadPlugins(focusOn) {
  let plugins;
  try {
    plugins = (await api('GET', '/api/v1/plugins')).plugins;
    listError('plugin-list-error', null);
  } catch (error) {
    listError('plugin-list-error', error);
    return;
  }
  const rolledOut = new Map(plugins.filter((plugin) => plugin.rolled_out).map((plugin) => [plugin.name, plugin.version]));
  const rows = plugins.map((plugin) => {
    const label = pluginLabel(plugin);
    const actions = [];
    if (!plugin.approved) actions.push(actionButton('Approve', label, () => pluginAction(plugin, 'approve')));
    else if (!plugin.rolled_out) actions.push(actionButton('Roll out', label, () => pluginAction(plugin, 'rollout')));
    return el(
      'tr',
      { 'data-plugin': plugin.id },
      el('td', {}, el('strong', { text: plugin.manifest?.title || plugin.name }), el('br'), el('span', { text: label })),
      el('td', {}, ...pluginPowers(plugin.manifest)),
      el('td', {}, shortHex(plugin.signer)),
      el('td', {}, shortHex(plugin.sha256)),
      el('td', {}, ...pluginApproval(plugin)),
      el('td', {}, ...pluginRollout(plugin, rolledOut)),
      el('td', { class: 'row-actions' }, ...actions),
    );
  });
  replaceRows($('plugin-table'), rows, $('plugin-empty'));
  if (focusOn) {
    const row = [...$('plugin-table').tBodies[0].rows].find((r) => r.dataset.plugin === focusOn);
    (row?.querySelector('button') ?? $('plugin-table').closest('.table-wrap')).focus();
  }
}

async function pluginAction(plugin, action) {
  listError('plugin-list-error', null);
  const label = pluginLabel(plugin);
  try {
    await api('POST', `/api/v1/plugins/${encodeURIComponent(plugin.id)}/${action}`);
    announce(
      action === 'approve'
        ? `Approved ${label}: edges trust its signer. Roll it out to have them run it.`
        : `Rolled out ${label}: edges fetch it at their next check-in.`,
    );
  } catch (error) {
    listError('plugin-list-error', error);
  }
  await loadPlugins(plugin.id);
}

handleForm($('plugin-form'), async (form) => {
  const file = form.elements.namedItem('package').files?.[0];
  if (!file) throw mistake('Choose a signed package (.msplugin) to upload.', 'package');
  if (file.size > PACKAGE_BYTES_MAX) throw mistake(`The package is ${file.size} bytes; the limit is ${PACKAGE_BYTES_MAX} (32 MiB).`, 'package');
  const uploaded = await api('POST', '/api/v1/plugins', file);
  form.reset();
  announce(`Uploaded ${pluginLabel(uploaded)}. Approve it to let the edges run it.`);
  await loadPlugins();
});

// ---- Sessions ----

async function loadSessionsScreen() {
  try {
    await Promise.all([fetchCourses(), fetchUsers(), fetchEdges()]);
    listError('session-list-error', null);
  } catch (error) {
    listError('session-list-error', error);
  }
  $('time-zone').textContent = Intl.DateTimeFormat().resolvedOptions().timeZone ?? 'local time';
  fillSelect($('session-course'), state.courses.map((course) => [course.id, courseLabel(course)]));
  fillSelect($('session-filter'), state.courses.map((course) => [course.id, courseLabel(course)]), 'All courses');
  const admin = state.me.admin;
  // Only administrators may list edges; anyone else types the edge's id. Whichever field is
  // shown is the one named home_edge_id.
  $('session-edge-choice').hidden = !admin;
  $('session-edge-typed').hidden = admin;
  $('session-edge').name = admin ? 'home_edge_id' : 'home_edge_id_chosen';
  $('session-edge-id').name = admin ? 'home_edge_id_typed' : 'home_edge_id';
  fillSelect(
    $('session-edge'),
    state.edges.map((edge) => [edge.id, edge.status === 'active' ? `${edge.name} (${edge.capacity} places)` : `${edge.name} (${edge.status})`]),
  );
  if (!state.editing) await loadTeachers();
  await loadSessions();
}

/** The teacher choice: the chosen course's teachers (for an administrator), or oneself. */
async function loadTeachers() {
  const select = $('session-teacher');
  const course = $('session-course').value;
  if (!state.me.admin) {
    fillSelect(select, [[state.me.id, state.me.name]]);
    return;
  }
  if (!course) {
    fillSelect(select, [], 'Create a course first');
    return;
  }
  try {
    const { members } = await api('GET', `/api/v1/courses/${encodeURIComponent(course)}/members`);
    const teachers = members.filter((member) => member.role === 'teacher');
    if (teachers.length) fillSelect(select, teachers.map((teacher) => [teacher.user_id, teacher.name]));
    else fillSelect(select, [], 'No teacher in this course yet (add one under Courses)');
  } catch (error) {
    fillSelect(select, [], 'Teachers could not be listed');
    showFormError($('session-form'), error.message);
  }
}

$('session-course').addEventListener('change', () => loadTeachers());

async function loadSessions() {
  const course = $('session-filter').value;
  try {
    const query = course ? `?course=${encodeURIComponent(course)}` : '';
    state.sessions = (await api('GET', `/api/v1/sessions${query}`)).sessions;
  } catch (error) {
    listError('session-list-error', error);
    return;
  }
  const courses = new Map(state.courses.map((c) => [c.id, c]));
  const users = new Map(state.users.map((u) => [u.id, u]));
  const edges = new Map(state.edges.map((e) => [e.id, e]));
  const rows = state.sessions.map((session) => {
    const scheduled = session.status === 'scheduled';
    const title = `“${session.title}”`;
    const join = ['scheduled', 'live'].includes(session.status)
      ? [actionButton('Teacher link', title, () => teacherLink(session))]
      : [];
    const actions = scheduled
      ? [
          actionButton('Edit', title, () => editSession(session)),
          actionButton('Start', title, () => sessionAction(session, 'start', 'Started')),
          ...join,
          actionButton('Cancel', title, () => sessionAction(session, 'cancel', 'Cancelled'), 'small danger'),
        ]
      : join;
    const sameDay = new Date(session.starts_at).toDateString() === new Date(session.ends_at).toDateString();
    return el(
      'tr',
      { 'data-session': session.id },
      el('td', { class: 'session-title', text: session.title }),
      el('td', { text: courses.get(session.course_id)?.code ?? session.course_id }),
      el('td', {}, timeElement(session.starts_at), ' – ', timeElement(session.ends_at, sameDay ? timeFormat : dateTimeFormat)),
      el('td', { text: users.get(session.teacher_id)?.name ?? session.teacher_id }),
      el('td', { text: edges.get(session.home_edge_id)?.name ?? `${session.home_edge_id.slice(0, 12)}…` }),
      el('td', { text: session.room ?? '—' }),
      el('td', {}, el('span', { class: `badge ${session.status}`, text: session.status })),
      el('td', { class: 'row-actions' }, ...actions),
    );
  });
  replaceRows($('session-table'), rows, $('session-empty'));
}

$('session-filter').addEventListener('change', () => {
  listError('session-list-error', null);
  loadSessions();
});

/** Issues the session's teacher a join token and shows the link that opens the class on its
 * home edge (signed by the control plane; the edge checks it without asking back). */
async function teacherLink(session) {
  listError('session-list-error', null);
  const holder = $('session-link');
  try {
    const join = await api('POST', `/api/v1/sessions/${encodeURIComponent(session.id)}/join-token`, {
      user_id: session.teacher_id,
    });
    const teacher = state.users.find((u) => u.id === session.teacher_id)?.name ?? 'the teacher';
    holder.replaceChildren(
      `Join link for ${teacher} (good until ${new Date(join.expires_at).toLocaleString()}; give it only to them): `,
      el('a', { href: join.link, target: '_blank', rel: 'noopener', id: 'teacher-link', text: `Open “${session.title}” on ${join.edge.name}` }),
    );
    holder.hidden = false;
    announce(`A join link for ${teacher} is ready.`);
  } catch (error) {
    listError('session-list-error', error);
  }
}

async function sessionAction(session, action, done) {
  listError('session-list-error', null);
  try {
    await api('POST', `/api/v1/sessions/${encodeURIComponent(session.id)}/${action}`);
    announce(`${done} “${session.title}”.`);
    if (state.editing?.id === session.id) stopEditing();
  } catch (error) {
    listError('session-list-error', error);
  }
  await loadSessions();
}

/** Puts `session` in the form to be changed. */
async function editSession(session) {
  const form = $('session-form');
  state.editing = session;
  clearFormError(form);
  const course = $('session-course');
  course.value = session.course_id;
  // A session stays in its course.
  course.disabled = true;
  await loadTeachersFor(session);
  $('session-form-heading').textContent = `Edit “${session.title}”`;
  $('session-submit').textContent = 'Save changes';
  $('session-edit-stop').hidden = false;
  form.elements.namedItem('title').value = session.title;
  form.elements.namedItem('starts_at').value = rfc3339ToLocal(session.starts_at);
  form.elements.namedItem('ends_at').value = rfc3339ToLocal(session.ends_at);
  form.elements.namedItem('home_edge_id').value = session.home_edge_id;
  form.elements.namedItem('room').value = session.room ?? '';
  form.elements.namedItem('capacity').value = String(session.capacity);
  form.elements.namedItem('recording_policy').value = session.recording_policy;
  form.elements.namedItem('plugins').value = session.plugins.join(', ');
  form.scrollIntoView({ block: 'start' });
  $('session-title').focus({ preventScroll: true });
  announce(`Editing “${session.title}”.`);
}

async function loadTeachersFor(session) {
  await loadTeachers();
  const select = $('session-teacher');
  if (![...select.options].some((option) => option.value === session.teacher_id)) {
    const teacher = state.users.find((u) => u.id === session.teacher_id);
    select.append(el('option', { value: session.teacher_id, text: teacher?.name ?? session.teacher_id }));
  }
  select.value = session.teacher_id;
}

function stopEditing() {
  const form = $('session-form');
  state.editing = null;
  form.reset();
  clearFormError(form);
  $('session-course').disabled = false;
  $('session-form-heading').textContent = 'Schedule a session';
  $('session-submit').textContent = 'Schedule';
  $('session-edit-stop').hidden = true;
  loadTeachers();
}

$('session-edit-stop').addEventListener('click', () => {
  stopEditing();
  announce('Stopped editing; nothing was changed.');
  $('session-title').focus();
});

/** The form's fields as the API's session body. */
function sessionBody(form) {
  const startsAt = value(form, 'starts_at');
  const endsAt = value(form, 'ends_at');
  const capacityText = value(form, 'capacity');
  const body = {
    title: value(form, 'title'),
    home_edge_id: value(form, 'home_edge_id'),
    recording_policy: value(form, 'recording_policy'),
    plugins: value(form, 'plugins')
      .split(',')
      .map((name) => name.trim())
      .filter(Boolean),
  };
  if (!body.title) throw mistake('Give the session a title.', 'title');
  if (!startsAt) throw mistake('Enter the date and time the session starts.', 'starts_at');
  if (!endsAt) throw mistake('Enter the date and time the session ends.', 'ends_at');
  body.starts_at = localToRfc3339(startsAt);
  body.ends_at = localToRfc3339(endsAt);
  if (!body.starts_at) throw mistake('The start is not a date and time.', 'starts_at');
  if (!body.ends_at) throw mistake('The end is not a date and time.', 'ends_at');
  if (!body.home_edge_id) throw mistake(state.me.admin ? 'Register an edge first (under Edges).' : 'Enter the home edge’s id.', 'home_edge_id');
  const capacity = Number(capacityText);
  if (!capacityText || !Number.isInteger(capacity)) throw mistake('Capacity is a whole number of participants.', 'capacity');
  body.capacity = capacity;
  const teacher = value(form, 'teacher_id');
  if (teacher) body.teacher_id = teacher;
  const room = value(form, 'room');
  if (room) body.room = room;
  return body;
}

handleForm($('session-form'), async (form) => {
  const body = sessionBody(form);
  if (state.editing) {
    const saved = await api('PATCH', `/api/v1/sessions/${encodeURIComponent(state.editing.id)}`, body);
    stopEditing();
    announce(`Saved “${saved.title}”.`);
  } else {
    body.course_id = value(form, 'course_id');
    if (!body.course_id) throw mistake('Create a course first (under Courses).', 'course_id');
    const session = await api('POST', '/api/v1/sessions', body);
    const course = value(form, 'course_id');
    form.reset();
    $('session-course').value = course;
    await loadTeachers();
    announce(`Scheduled “${session.title}”.`);
  }
  await loadSessions();
});

// ---- API keys ----

async function loadKeys() {
  let keys;
  try {
    keys = (await api('GET', '/api/v1/api-keys')).api_keys;
    listError('key-list-error', null);
  } catch (error) {
    listError('key-list-error', error);
    return;
  }
  const rows = keys.map((key) =>
    el(
      'tr',
      { 'data-key': key.id },
      el('td', { text: key.name }),
      el('td', { text: key.owner.name }),
      el('td', {}, timeElement(key.created_at)),
      el('td', {}, timeElement(key.last_used_at)),
      el('td', {}, key.revoked_at ? el('span', {}, 'revoked ', timeElement(key.revoked_at)) : el('span', { class: 'badge active', text: 'active' })),
      el('td', { class: 'row-actions' }, key.revoked_at ? null : actionButton('Revoke', `the key “${key.name}”`, () => revokeKey(key), 'small danger')),
    ),
  );
  replaceRows($('key-table'), rows, $('key-empty'));
}

async function revokeKey(key) {
  listError('key-list-error', null);
  try {
    await api('DELETE', `/api/v1/api-keys/${encodeURIComponent(key.id)}`);
    announce(`Revoked the key “${key.name}”.`);
  } catch (error) {
    listError('key-list-error', error);
  }
  await loadKeys();
}

handleForm($('key-form'), async (form) => {
  const created = await api('POST', '/api/v1/api-keys', { name: value(form, 'name') });
  form.reset();
  $('key-value').value = created.key;
  $('key-shown').hidden = false;
  $('key-shown').focus();
  announce(`Made the key “${created.name}”. Copy it now: it is shown only once.`);
  await loadKeys();
});

$('key-copy').addEventListener('click', () => copyField($('key-value'), 'key'));

$('key-done').addEventListener('click', () => {
  $('key-value').value = '';
  $('key-shown').hidden = true;
  $('key-name').focus();
});

// ---- Start ----

async function start() {
  try {
    signedIn(await api('GET', '/api/v1/me'));
  } catch (error) {
    signedOut(error.status === 401 ? '' : sentence(error.message));
  }
}

start();
