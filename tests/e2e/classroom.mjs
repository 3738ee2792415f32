#!/usr/bin/env node
// Browser end-to-end test of one classroom: a teacher publishes camera and microphone
// (simulcast WHIP) and two students watch (WHEP), in real Chromium driven by playwright-core,
// against a node that is already running. Then the class itself, through the page's controls:
// the teacher switches the scene to the whiteboard, draws, uploads two PNG slides, opens them
// and turns to page 2, and writes in the chat; every student sees all of it; a student raises a
// hand and the teacher sees it; a student's scene change (sent without a button) is refused and
// the refusal is shown; a reloaded student gets the class back from a snapshot; the teacher lets
// a student draw, and removes another, who is told so.
//
//   MULTISTREAM_URL=http://127.0.0.1:PORT \
//   TEACHER_LINK='http://127.0.0.1:PORT/s/demo#token=…' \
//   STUDENT_LINK='http://127.0.0.1:PORT/s/demo#invite=…' \
//   node tests/e2e/classroom.mjs            (CHROMIUM=/path/to/chromium to override)
//
// Every wait polls for a condition with a bound; nothing sleeps and hopes. Prints one line per
// step ("ok - …"); on failure prints what it observed and exits 1. A browser that cannot be
// launched is a failure, never a skip.

import { chromium } from 'playwright-core';

import { CHROMIUM_ARGS, Failure, drawOnBoard, metricSum, sha256, slidePng } from './common.mjs';

/** The whole run, launch to close; a normal run takes about 15 s on 2 busy cores. */
const TOTAL_TIMEOUT_MS = 90_000;
/** Bound on media reaching a page (first decoded frame is ~0.5 s on loopback). */
const MEDIA_TIMEOUT_MS = 20_000;
/** Bound on the node noticing that a student left. */
const METRICS_TIMEOUT_MS = 15_000;
/** Bound on a page loading or a step in the join flow. */
const PAGE_TIMEOUT_MS = 15_000;
/** How often conditions are polled; also the precision of the printed timings. */
const POLL_INTERVAL_MS = 100;
/** How much of each page's console is printed on failure. */
const CONSOLE_LINES_MAX = 40;
/** Bound on a class change (a command, its event) reaching every page; on loopback it takes
 * milliseconds, an upload of two small images a few more. */
const CLASS_TIMEOUT_MS = 10_000;
/** The chat line the teacher sends. */
const CHAT_LINE = 'Welcome! Today: light and lenses.';

const pages = new Map(); // label -> {page, console: string[], errors: string[]}
let browser = null;

function environment() {
  const missing = ['MULTISTREAM_URL', 'TEACHER_LINK', 'STUDENT_LINK'].filter((name) => !process.env[name]);
  if (missing.length) {
    throw new Failure(`missing environment: ${missing.join(', ')} (see the header of tests/e2e/classroom.mjs)`);
  }
  const env = {
    baseUrl: process.env.MULTISTREAM_URL.replace(/\/+$/, ''),
    teacherLink: process.env.TEACHER_LINK,
    studentLink: process.env.STUDENT_LINK,
    chromiumPath: process.env.CHROMIUM || '/usr/bin/chromium',
  };
  if (!env.teacherLink.includes('#token=')) throw new Failure('TEACHER_LINK has no #token= fragment');
  if (!env.studentLink.includes('#invite=')) throw new Failure('STUDENT_LINK has no #invite= fragment');
  return env;
}

const delay = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Polls `probe` until it reports ok; returns the elapsed time and what it saw. */
async function waitFor(description, timeoutMs, probe) {
  const started = Date.now();
  for (;;) {
    const { ok, observed } = await probe();
    const elapsedMs = Date.now() - started;
    if (ok) return { elapsedMs, observed };
    if (elapsedMs > timeoutMs) throw new Failure(`${description}: not within ${timeoutMs} ms`, observed);
    await delay(POLL_INTERVAL_MS);
  }
}

async function openPage(label, url) {
  // Over HTTPS the node serves a certificate made for the test: the browser is told to accept
  // it (Node's own requests trust it through NODE_EXTRA_CA_CERTS).
  const context = await browser.newContext({ ignoreHTTPSErrors: process.env.MULTISTREAM_URL?.startsWith('https:') });
  const page = await context.newPage();
  const record = { page, console: [], errors: [] };
  page.on('console', (message) => {
    record.console.push(`[${message.type()}] ${message.text()}`);
    // The node serves a strict Content-Security-Policy: anything it blocks is a client bug.
    if (/Content Security Policy/i.test(message.text())) record.errors.push(`CSP: ${message.text()}`);
    if (record.console.length > CONSOLE_LINES_MAX) record.console.shift();
  });
  // An uncaught exception in the client is a bug even when the media still flows.
  page.on('pageerror', (error) => record.errors.push(String(error.stack || error)));
  pages.set(label, record);
  await page.goto(url, { timeout: PAGE_TIMEOUT_MS });
  return page;
}

/** Connection states, RTP stats and roster of one page, read through window.multistream. */
function snapshot(page) {
  return page.evaluate(async () => {
    const hook = window.multistream;
    if (!hook) return { error: 'window.multistream is missing (app.js did not load?)' };
    const links = [];
    for (const { name, source, direction, pc } of hook.pcs()) {
      const inbound = [];
      const outbound = [];
      let transport = null;
      (await pc.getStats()).forEach((report) => {
        if (report.type === 'inbound-rtp') {
          inbound.push({ kind: report.kind, bytesReceived: report.bytesReceived ?? 0, framesDecoded: report.framesDecoded, packetsLost: report.packetsLost });
        } else if (report.type === 'outbound-rtp') {
          outbound.push({ kind: report.kind, rid: report.rid, bytesSent: report.bytesSent ?? 0, framesEncoded: report.framesEncoded });
        } else if (report.type === 'transport') {
          transport = { iceState: report.iceState, dtlsState: report.dtlsState, srtpCipher: report.srtpCipher };
        }
      });
      links.push({ name, source, direction, connectionState: pc.connectionState, transport, inbound, outbound });
    }
    const { connected, you, roster, ...classState } = hook.state();
    return {
      links,
      connected,
      you,
      roster,
      classState,
      status: document.getElementById('status')?.textContent ?? null,
      alert: document.getElementById('alert')?.textContent || null,
    };
  });
}

const findLink = (state, name) => state.links?.find((link) => link.name === name);

/** The student's camera WHEP connection is up and both audio and video arrive and decode. */
function decodesCamera(state) {
  const link = findLink(state, 'watch-camera');
  if (!link || link.connectionState !== 'connected') return false;
  const video = link.inbound.find((stat) => stat.kind === 'video');
  const audio = link.inbound.find((stat) => stat.kind === 'audio');
  return Boolean(video && video.bytesReceived > 0 && video.framesDecoded > 0 && audio && audio.bytesReceived > 0
    && usesGcm(link));
}

/** The node prefers AEAD-GCM SRTP; Chromium offers it, so it must be what was negotiated. */
const usesGcm = (link) => /GCM/.test(link.transport?.srtpCipher ?? '');

function publishesCamera(state) {
  const link = findLink(state, 'publish-camera');
  return Boolean(link && link.connectionState === 'connected' && usesGcm(link)
    && link.outbound.some((stat) => stat.kind === 'video' && stat.bytesSent > 0));
}

const teacherLiveInRoster = (state) =>
  Boolean(state.roster?.some((person) => person.role === 'teacher' && person.live?.includes('camera')));

async function waitForDecoding(label, page) {
  return waitFor(`${label} decodes the teacher's camera`, MEDIA_TIMEOUT_MS, async () => {
    const state = await snapshot(page);
    return { ok: decodesCamera(state), observed: state };
  });
}

async function joinAsStudent(label, env, name) {
  const page = await openPage(label, env.studentLink);
  await page.locator('#name').fill(name, { timeout: PAGE_TIMEOUT_MS });
  await page.locator('#join-submit').click({ timeout: PAGE_TIMEOUT_MS });
  const { elapsedMs, observed } = await waitForDecoding(label, page);
  console.log(`ok - ${label} (${observed.you?.name ?? name}) decodes video and receives audio; first decoded frame ${elapsedMs} ms after joining (polled every ${POLL_INTERVAL_MS} ms)`);
  return page;
}

/** multistream_peers{kind="subscriber"} from /metrics; value is null while the node answers
 * 503 (its media task is busy), which callers treat as "not yet", not as a failure. */
async function subscriberCount(env) {
  const response = await fetch(`${env.baseUrl}/metrics`);
  const text = await response.text();
  if (response.status === 503) return { value: null, reason: `GET /metrics answered 503: ${text.trim()}` };
  if (!response.ok) throw new Failure(`GET /metrics answered ${response.status}`, text.slice(0, 2000));
  const value = metricSum(text, 'multistream_peers', { kind: 'subscriber' });
  if (value === null) {
    throw new Failure('GET /metrics has no multistream_peers{kind="subscriber"} series',
      text.split('\n').filter((line) => line.includes('multistream_peers')).join('\n') || text.slice(0, 2000));
  }
  return { value };
}

/** Polls /metrics until it reports the subscriber gauge and `accept(value)` holds. */
function waitForSubscribers(description, env, accept) {
  return waitFor(description, METRICS_TIMEOUT_MS, async () => {
    const count = await subscriberCount(env);
    return { ok: count.value !== null && accept(count.value), observed: count };
  });
}

async function leave(page) {
  const button = page.locator('#leave');
  if (await button.isVisible()) await button.click({ timeout: PAGE_TIMEOUT_MS });
}

/** The class as a page shows it (window.multistream.state() without the media), with the
 * notice and alert texts: what a failure prints. */
function classView(page) {
  return page.evaluate(() => {
    const { roster, ...state } = window.multistream?.state() ?? {};
    const image = document.getElementById('slide-image');
    return {
      ...state,
      people: roster?.length,
      slideImage: image ? { src: image.getAttribute('src'), hidden: image.hidden, complete: image.complete, naturalWidth: image.naturalWidth } : null,
      alert: document.getElementById('alert')?.textContent || null,
      status: document.getElementById('status')?.textContent ?? null,
    };
  }).catch((error) => ({ error: error.message }));
}

/** Waits, inside the page, for `predicate(arg)` to hold; returns the time it took. */
async function waitInPage(label, page, description, predicate, arg) {
  const started = Date.now();
  try {
    await page.waitForFunction(predicate, arg, { timeout: CLASS_TIMEOUT_MS, polling: POLL_INTERVAL_MS });
  } catch (error) {
    throw new Failure(`${label}: ${description}: not within ${CLASS_TIMEOUT_MS} ms (${error.message.split('\n')[0]})`, await classView(page));
  }
  return Date.now() - started;
}

/** The class through the page's controls: scene, whiteboard, slides, chat, hands, refusals,
 * a reload, permissions and a removal. */
async function classScenario(teacher, students) {
  const everyone = [['teacher', teacher], ...students];
  for (const [label, page] of everyone) {
    await waitInPage(label, page, 'has the class state (a snapshot)', () => window.multistream.state().synced);
  }

  await teacher.locator('#scene-whiteboard').click({ timeout: PAGE_TIMEOUT_MS });
  await waitInPage('teacher', teacher, 'shows the whiteboard scene', () => window.multistream.state().scene === 'whiteboard_and_camera');
  await drawOnBoard(teacher, PAGE_TIMEOUT_MS);
  await waitInPage('teacher', teacher, 'has its stroke on the board', () => window.multistream.state().board >= 1);
  console.log('ok - teacher switched the scene to the whiteboard and drew a stroke with the mouse');

  const slides = [await slidePng(teacher, 1, '#1d4ed8'), await slidePng(teacher, 2, '#b91c1c')];
  await teacher.locator('#slides-file').setInputFiles([
    { name: 'lenses-1.png', mimeType: 'image/png', buffer: slides[0] },
    { name: 'lenses-2.png', mimeType: 'image/png', buffer: slides[1] },
  ], { timeout: PAGE_TIMEOUT_MS });
  const uploadMs = await waitInPage('teacher', teacher, 'has the uploaded deck open at page 1',
    () => window.multistream.state().deck?.pages === 2 && window.multistream.state().page === 1);
  await teacher.locator('#slides-next').click({ timeout: PAGE_TIMEOUT_MS });
  await waitInPage('teacher', teacher, 'shows page 2', () => window.multistream.state().page === 2);
  console.log(`ok - teacher uploaded two PNG slides (deck open ${uploadMs} ms after choosing the files) and turned to page 2`);

  await teacher.locator('#chat-input').fill(CHAT_LINE, { timeout: PAGE_TIMEOUT_MS });
  await teacher.locator('#chat-input').press('Enter', { timeout: PAGE_TIMEOUT_MS });
  await waitInPage('teacher', teacher, 'has its chat line in the class', (text) => window.multistream.state().chat.includes(text), CHAT_LINE);

  /** What every student must see after the teacher's steps. */
  const seesTheClass = ([text, page2]) => {
    const state = window.multistream.state();
    const image = document.getElementById('slide-image');
    return state.scene === 'whiteboard_and_camera' && state.board >= 1
      && state.deck?.pages === 2 && state.page === 2 && state.chat.includes(text)
      && Boolean(image?.getAttribute('src')?.endsWith(page2)) && image.complete && image.naturalWidth > 0;
  };
  for (const [label, page] of students) {
    const ms = await waitInPage(label, page, 'sees the whiteboard scene, the stroke, slide 2 (loaded) and the chat line', seesTheClass, [CHAT_LINE, sha256(slides[1])]);
    console.log(`ok - ${label} sees the whiteboard scene, the stroke, page 2 of 2 with its image loaded, and the chat line (${ms} ms)`);
  }

  const [, studentOne] = students[0];
  const [, studentTwo] = students[1];
  const oneId = (await studentOne.evaluate(() => window.multistream.state().you.id));
  await studentOne.locator('#raise-hand').click({ timeout: PAGE_TIMEOUT_MS });
  await waitInPage('teacher', teacher, 'sees student one\'s raised hand in the queue',
    (id) => window.multistream.state().hands.includes(id) && document.getElementById('hands-list').textContent.includes('Student One'), oneId);
  console.log('ok - student one raised a hand and the teacher sees it in the hands queue');

  const refused = await studentTwo.evaluate(() => window.multistream.command({ type: 'set_scene', scene: 'camera' }));
  if (refused.ok || refused.code !== 'not_permitted' || !refused.message) {
    throw new Failure('a student\'s set_scene was not refused with not_permitted', { refused, studentTwo: await classView(studentTwo) });
  }
  await waitInPage('student two', studentTwo, 'shows the refusal', (message) => document.getElementById('notice-text').textContent.includes(message), refused.message);
  const teacherScene = await teacher.evaluate(() => window.multistream.state().scene);
  if (teacherScene !== 'whiteboard_and_camera') throw new Failure('a refused scene change changed the scene', teacherScene);
  console.log(`ok - student two's scene change was refused (not_permitted: "${refused.message}") and the page says so`);

  await studentOne.reload({ timeout: PAGE_TIMEOUT_MS });
  const reloadMs = await waitInPage('student one', studentOne, 'has the chat, the board and the slides again after a reload',
    ([text, page2]) => {
      const state = window.multistream.state();
      const image = document.getElementById('slide-image');
      return state.synced && state.chat.includes(text) && state.board >= 1 && state.scene === 'whiteboard_and_camera'
        && state.page === 2 && Boolean(image?.getAttribute('src')?.endsWith(page2)) && image.naturalWidth > 0;
    }, [CHAT_LINE, sha256(slides[1])]);
  console.log(`ok - student one reloaded the page and got the chat, the board and slide 2 back from the snapshot (${reloadMs} ms)`);

  await teacher.locator(`#roster-list button[data-action="draw"][data-participant="${oneId}"]`).click({ timeout: PAGE_TIMEOUT_MS });
  await waitInPage('student one', studentOne, 'may draw (tools shown) once the teacher allows it',
    (id) => window.multistream.state().members[id]?.permissions.includes('draw') && !document.getElementById('board-tools').hidden, oneId);
  await drawOnBoard(studentOne, PAGE_TIMEOUT_MS);
  await waitInPage('teacher', teacher, 'sees student one\'s stroke', () => window.multistream.state().board >= 2);
  console.log('ok - the teacher allowed student one to draw, and student one\'s stroke reached the teacher');

  const twoId = (await studentTwo.evaluate(() => window.multistream.state().you.id));
  teacher.once('dialog', (dialog) => dialog.accept());
  await teacher.locator(`#roster-list button[data-action="remove"][data-participant="${twoId}"]`).click({ timeout: PAGE_TIMEOUT_MS });
  await waitInPage('student two', studentTwo, 'is told that the teacher removed them',
    () => !document.getElementById('problem').hidden && /removed you/.test(document.getElementById('problem-title').textContent)
      && window.multistream.pcs().length === 0);
  await waitInPage('teacher', teacher, 'no longer lists student two', (id) => window.multistream.state().members[id]?.removed === true
    && !document.querySelector(`#roster-list [data-participant="${id}"]`), twoId);
  console.log('ok - the teacher removed student two, whose page says so and holds no media connection');
}

async function run() {
  const env = environment();

  try {
    const health = await fetch(`${env.baseUrl}/healthz`);
    if (!health.ok) throw new Error(`status ${health.status}`);
  } catch (error) {
    throw new Failure(`the node is not reachable at ${env.baseUrl}/healthz (${error.cause?.message ?? error.message})`);
  }
  console.log(`ok - node answers at ${env.baseUrl}`);

  try {
    browser = await chromium.launch({ executablePath: env.chromiumPath, headless: true, args: CHROMIUM_ARGS, timeout: PAGE_TIMEOUT_MS });
  } catch (error) {
    throw new Failure(`Chromium could not be launched from ${env.chromiumPath}: ${error.message.split('\n')[0]}\n`
      + 'Install it with `apt-get install -y chromium`, or set CHROMIUM to its path.');
  }
  console.log(`ok - launched Chromium ${browser.version()}`);

  const teacher = await openPage('teacher', env.teacherLink);
  await teacher.locator('#start-camera').click({ timeout: PAGE_TIMEOUT_MS });
  const published = await waitFor('teacher publishes the camera', MEDIA_TIMEOUT_MS, async () => {
    const state = await snapshot(teacher);
    return { ok: publishesCamera(state), observed: state };
  });
  const layers = findLink(published.observed, 'publish-camera').outbound.filter((stat) => stat.kind === 'video').map((stat) => stat.rid).join(',');
  console.log(`ok - teacher publishes camera and microphone, connected after ${published.elapsedMs} ms (simulcast layers: ${layers || 'none reported'})`);

  const [studentOne, studentTwo] = await Promise.all([
    joinAsStudent('student one', env, 'Student One'),
    joinAsStudent('student two', env, 'Student Two'),
  ]);

  for (const [label, page] of [['student one', studentOne], ['student two', studentTwo]]) {
    await waitFor(`${label}'s roster shows the teacher live with camera`, PAGE_TIMEOUT_MS, async () => {
      const state = await snapshot(page);
      return { ok: state.connected && teacherLiveInRoster(state), observed: state };
    });
  }
  console.log('ok - both students see the teacher live with camera in the roster');

  const before = (await waitForSubscribers('GET /metrics reports multistream_peers{kind="subscriber"}', env, () => true)).observed.value;
  console.log(`ok - metrics: multistream_peers{kind="subscriber"} = ${before}`);

  await studentTwo.locator('#leave').click({ timeout: PAGE_TIMEOUT_MS });
  const left = await waitForSubscribers('the node counts one subscriber fewer after student two left', env, (now) => now <= before - 1)
    .catch(async (error) => {
      error.observed = { subscribersBefore: before, metrics: error.observed, studentTwo: await snapshot(studentTwo) };
      throw error;
    });
  const studentTwoAfter = await snapshot(studentTwo);
  if (studentTwoAfter.links.length) throw new Failure('student two still has peer connections after leaving', studentTwoAfter);
  console.log(`ok - student two left: subscribers ${before} -> ${left.observed.value} after ${left.elapsedMs} ms`);

  await studentTwo.locator('#rejoin').click({ timeout: PAGE_TIMEOUT_MS });
  const rejoined = await waitForDecoding('student two after rejoining', studentTwo);
  console.log(`ok - student two rejoined and decodes video again; first decoded frame ${rejoined.elapsedMs} ms after rejoining`);

  const oneStill = await snapshot(studentOne);
  if (!decodesCamera(oneStill)) throw new Failure('student one stopped decoding while student two left and rejoined', oneStill);
  console.log('ok - student one kept watching throughout');

  await classScenario(teacher, [['student one', studentOne], ['student two', studentTwo]]);

  for (const [label, record] of pages) {
    if (record.errors.length) throw new Failure(`uncaught errors in the ${label} page`, record.errors);
  }
  console.log('ok - no uncaught errors in any page');

  for (const { page } of pages.values()) await leave(page);
  const after = await subscriberCount(env);
  console.log(`ok - everyone left (subscribers now ${after.value ?? 'unknown: node busy'}); closing`);
  await browser.close();
  browser = null;
}

async function report(error) {
  console.log(`not ok - ${error.message}`);
  if (error.observed !== undefined) console.log(`observed:\n${JSON.stringify(error.observed, null, 2)}`);
  else if (!(error instanceof Failure)) console.log(error.stack);
  // Best effort: the state of every page and its console, bounded so a hung browser cannot stall.
  for (const [label, record] of pages) {
    const state = await Promise.race([snapshot(record.page).catch((e) => ({ error: e.message })), delay(3_000).then(() => ({ error: 'page did not answer' }))]);
    console.log(`--- ${label}: ${JSON.stringify(state, null, 2)}`);
    if (record.errors.length) console.log(`--- ${label} uncaught errors:\n${record.errors.join('\n')}`);
    if (record.console.length) console.log(`--- ${label} console (last ${record.console.length} lines):\n${record.console.join('\n')}`);
  }
}

async function shutdown(code) {
  await Promise.race([browser?.close(), delay(5_000)]).catch(() => {});
  process.exit(code);
}

const startedAt = Date.now();
const overall = setTimeout(async () => {
  await report(new Failure(`the test did not finish within ${TOTAL_TIMEOUT_MS / 1000} s`));
  await shutdown(1);
}, TOTAL_TIMEOUT_MS);

try {
  await run();
  clearTimeout(overall);
  console.log(`ok - classroom end-to-end test passed in ${((Date.now() - startedAt) / 1000).toFixed(1)} s`);
} catch (error) {
  clearTimeout(overall);
  await report(error);
  await shutdown(1);
}
