#!/usr/bin/env node
// Browser end-to-end test of one class across two edges: the teacher's page is served by edge 0
// and the student's by edge 1 (each page talks only to its own edge); the class state follows
// between the edges over QUIC. In real Chromium driven by playwright-core, against two nodes that
// are already running and list each other. Through the page's controls the teacher switches the
// scene to the whiteboard, draws a stroke, uploads two PNG slides and turns to page 2, and
// writes in the chat; the student, on the other edge, sees all of it, including the slide image,
// which edge 1 serves after fetching it from edge 0 by its content address. Then the student
// writes in the chat and the teacher sees it. Media does not cross edges yet: nothing here
// publishes or asserts video or audio.
//
// Each page shows the edge serving it ("Server: North campus") and, once the class spans both
// edges, the edge beside each person in "Who is here" ("via South campus"); alone on one edge
// the teacher's roster has no such labels, and they go again when the student leaves.
//
//   TEACHER_URL=http://127.0.0.1:PORT0 TEACHER_LINK='http://127.0.0.1:PORT0/s/demo#token=…' \
//   STUDENT_URL=http://127.0.0.1:PORT1 STUDENT_LINK='http://127.0.0.1:PORT1/s/demo#invite=…' \
//   node tests/e2e/two_edges.mjs            (CHROMIUM=/path/to/chromium to override)
//
// The edges are expected to be started with `--edge-name "North campus"` (edge 0) and
// `--edge-name "South campus"` (edge 1); TEACHER_EDGE_NAME and STUDENT_EDGE_NAME override these.
//
// Every wait polls for a condition with a bound; nothing sleeps and hopes. Prints one line per
// step ("ok - …"); on failure prints what it observed and exits 1. A browser that cannot be
// launched is a failure, never a skip.

import { chromium } from 'playwright-core';

import { CHROMIUM_ARGS, Failure, drawOnBoard, sha256, slidePng } from './common.mjs';

/** The whole run, launch to close; a normal run takes a few seconds. */
const TOTAL_TIMEOUT_MS = 90_000;
/** Bound on a page loading or a step in the join flow. */
const PAGE_TIMEOUT_MS = 15_000;
/** Bound on a class change reaching a page. Across edges a change goes to the class's home edge
 * and back over QUIC, and a slide image is fetched from the peer on first use: on loopback that
 * is milliseconds, but the machine may be busy. */
const CLASS_TIMEOUT_MS = 20_000;
/** How often in-page conditions are polled. */
const POLL_INTERVAL_MS = 100;
/** How much of each page's console is printed on failure. */
const CONSOLE_LINES_MAX = 40;
/** The chat line the teacher sends (on edge 0). */
const TEACHER_LINE = 'Good morning, both campuses! Today: refraction.';
/** The chat line the student sends (on edge 1). */
const STUDENT_LINE = 'Hello from the south campus.';
/** The names the edges are started with (`--edge-name`), unless the environment says others. */
const TEACHER_EDGE_NAME = 'North campus';
const STUDENT_EDGE_NAME = 'South campus';
/** The name the student types on the invitation page. */
const STUDENT_NAME = 'Student Far';

const pages = new Map(); // label -> {page, console: string[], errors: string[]}
let browser = null;

const trimUrl = (url) => url.replace(/\/+$/, '');

function environment() {
  const names = ['TEACHER_URL', 'TEACHER_LINK', 'STUDENT_URL', 'STUDENT_LINK'];
  const missing = names.filter((name) => !process.env[name]);
  if (missing.length) {
    throw new Failure(`missing environment: ${missing.join(', ')} (see the header of tests/e2e/two_edges.mjs)`);
  }
  const env = {
    teacherUrl: trimUrl(process.env.TEACHER_URL),
    teacherLink: process.env.TEACHER_LINK,
    studentUrl: trimUrl(process.env.STUDENT_URL),
    studentLink: process.env.STUDENT_LINK,
    homeEdge: process.env.CLASS_HOME_EDGE ?? null,
    teacherEdgeName: process.env.TEACHER_EDGE_NAME || TEACHER_EDGE_NAME,
    studentEdgeName: process.env.STUDENT_EDGE_NAME || STUDENT_EDGE_NAME,
    chromiumPath: process.env.CHROMIUM || '/usr/bin/chromium',
  };
  if (!env.teacherLink.includes('#token=')) throw new Failure('TEACHER_LINK has no #token= fragment');
  if (!env.studentLink.includes('#invite=')) throw new Failure('STUDENT_LINK has no #invite= fragment');
  if (env.teacherEdgeName === env.studentEdgeName) throw new Failure('the two edges have the same name', env.teacherEdgeName);
  if (env.teacherUrl === env.studentUrl) throw new Failure('TEACHER_URL and STUDENT_URL are the same edge', env.teacherUrl);
  if (!env.teacherLink.startsWith(`${env.teacherUrl}/`)) throw new Failure('TEACHER_LINK is not on TEACHER_URL', env.teacherLink);
  if (!env.studentLink.startsWith(`${env.studentUrl}/`)) throw new Failure('STUDENT_LINK is not on STUDENT_URL', env.studentLink);
  return env;
}

const delay = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function healthy(label, baseUrl) {
  try {
    const health = await fetch(`${baseUrl}/healthz`);
    if (!health.ok) throw new Error(`status ${health.status}`);
  } catch (error) {
    throw new Failure(`${label} is not reachable at ${baseUrl}/healthz (${error.cause?.message ?? error.message})`);
  }
}

async function openPage(label, url) {
  const context = await browser.newContext();
  const page = await context.newPage();
  const record = { page, console: [], errors: [] };
  page.on('console', (message) => {
    record.console.push(`[${message.type()}] ${message.text()}`);
    if (record.console.length > CONSOLE_LINES_MAX) record.console.shift();
  });
  // An uncaught exception in the client is a bug.
  page.on('pageerror', (error) => record.errors.push(String(error.stack || error)));
  // Failed requests (a slide the edge could not get from its peer, say) explain a failure.
  page.on('response', (response) => {
    if (response.status() >= 400) {
      record.console.push(`[http] ${response.request().method()} ${response.url()} -> ${response.status()}`);
      if (record.console.length > CONSOLE_LINES_MAX) record.console.shift();
    }
  });
  pages.set(label, record);
  await page.goto(url, { timeout: PAGE_TIMEOUT_MS });
  return page;
}

/** The class as a page shows it (window.multistream.state() without the roster), with the slide
 * image, the chat list and the notice texts: what a failure prints. */
function classView(page) {
  return page.evaluate(() => {
    const hook = window.multistream;
    if (!hook) return { error: 'window.multistream is missing (app.js did not load?)', location: window.location.origin };
    const { roster, ...state } = hook.state();
    const image = document.getElementById('slide-image');
    return {
      origin: window.location.origin,
      ...state,
      people: roster?.length,
      dataScene: document.getElementById('classroom')?.dataset.scene ?? null,
      slideImage: image ? { src: image.getAttribute('src'), currentSrc: image.currentSrc, hidden: image.hidden, complete: image.complete, naturalWidth: image.naturalWidth } : null,
      slideFallback: document.getElementById('slide-fallback')?.textContent || null,
      chatList: [...document.querySelectorAll('#chat-list li')].map((item) => item.textContent),
      media: hook.pcs().map(({ name, pc }) => `${name}: ${pc.connectionState}`),
      syncStatus: document.getElementById('sync-status')?.textContent ?? null,
      alert: document.getElementById('alert')?.textContent || null,
      status: document.getElementById('status')?.textContent ?? null,
      edgeStatus: document.getElementById('edge-status')?.textContent ?? null,
      whoIsHere: [...document.querySelectorAll('#roster-list li')].map((item) => item.textContent),
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

/** In the page: the "Who is here" entry of `id` shows, visibly, that they are connected "via
 * <edgeName>", marked as on this page's edge (`same`) or on another, with the words for screen
 * readers; and #edge-status shows, visibly, the edge serving this page. */
function edgesShown([people, pageEdge]) {
  const status = document.getElementById('edge-status');
  if (!status || !status.checkVisibility() || status.textContent !== `Server: ${pageEdge}`) return false;
  if (window.multistream.state().edge?.name !== pageEdge) return false;
  return people.every(({ id, edgeName, same }) => {
    const label = document.querySelector(`#roster-list li[data-participant="${CSS.escape(id)}"] .person-edge`);
    return label !== null && label.checkVisibility()
      && label.textContent.startsWith(`via ${edgeName}`)
      && label.classList.contains(same ? 'same-edge' : 'other-edge')
      && label.textContent.includes(same ? '(your server)' : '(another server)')
      && window.multistream.state().members[id]?.edgeName === edgeName;
  });
}

/** Types a chat line and sends it with Enter, as a person does. */
async function sendChat(page, text) {
  await page.locator('#chat-input').fill(text, { timeout: PAGE_TIMEOUT_MS });
  await page.locator('#chat-input').press('Enter', { timeout: PAGE_TIMEOUT_MS });
}

/** Leaves the class (closing the page's media connections and socket), closes any connection
 * that is still open, and closes the page. */
async function closePage(page) {
  const button = page.locator('#leave');
  if (await button.isVisible()) await button.click({ timeout: PAGE_TIMEOUT_MS });
  await page.evaluate(() => {
    for (const { pc } of window.multistream?.pcs() ?? []) pc.close();
  });
  await page.context().close();
}

async function run() {
  const env = environment();
  await healthy('edge 0 (teacher)', env.teacherUrl);
  await healthy('edge 1 (student)', env.studentUrl);
  console.log(`ok - edge 0 answers at ${env.teacherUrl}, edge 1 at ${env.studentUrl}`
    + (env.homeEdge !== null ? ` (the class's home is edge ${env.homeEdge})` : ''));

  try {
    browser = await chromium.launch({ executablePath: env.chromiumPath, headless: true, args: CHROMIUM_ARGS, timeout: PAGE_TIMEOUT_MS });
  } catch (error) {
    throw new Failure(`Chromium could not be launched from ${env.chromiumPath}: ${error.message.split('\n')[0]}\n`
      + 'Install it with `apt-get install -y chromium`, or set CHROMIUM to its path.');
  }
  console.log(`ok - launched Chromium ${browser.version()}`);

  // The teacher on edge 0, the student on edge 1: each page talks only to its own edge.
  const teacher = await openPage('teacher (edge 0)', env.teacherLink);
  await waitInPage('teacher (edge 0)', teacher, 'is connected and has the class state',
    () => window.multistream.state().connected && window.multistream.state().synced);
  const teacherId = await teacher.evaluate(() => window.multistream.state().you.id);
  // Alone on edge 0 the class has one edge: the page names its server, the roster names none.
  await waitInPage('teacher (edge 0)', teacher, `shows "Server: ${env.teacherEdgeName}" and no edge in "Who is here"`,
    ([id, name]) => document.getElementById('edge-status').textContent === `Server: ${name}`
      && document.getElementById('edge-status').checkVisibility()
      && document.querySelector(`#roster-list li[data-participant="${CSS.escape(id)}"]`) !== null
      && document.querySelector('#roster-list .person-edge') === null
      && window.multistream.state().edges === 1,
    [teacherId, env.teacherEdgeName]);
  console.log(`ok - teacher's page on edge 0 shows "Server: ${env.teacherEdgeName}"; alone on one edge, no edge labels in "Who is here"`);
  const student = await openPage('student (edge 1)', env.studentLink);
  await student.locator('#name').fill(STUDENT_NAME, { timeout: PAGE_TIMEOUT_MS });
  await student.locator('#join-submit').click({ timeout: PAGE_TIMEOUT_MS });
  const joinMs = await waitInPage('student (edge 1)', student, 'joined and has the class state',
    () => window.multistream?.state().connected && window.multistream.state().synced && Boolean(window.multistream.state().you));
  for (const [label, page, url] of [['teacher', teacher, env.teacherUrl], ['student', student, env.studentUrl]]) {
    const origin = await page.evaluate(() => window.location.origin);
    if (origin !== url) throw new Failure(`the ${label}'s page is not on its edge`, { origin, expected: url });
  }
  const studentId = await student.evaluate(() => window.multistream.state().you.id);
  console.log(`ok - teacher joined on edge 0; student "${STUDENT_NAME}" (${studentId}) joined through the invitation on edge 1 (${joinMs} ms)`);

  // Now the class spans both edges: each page says where everyone is connected.
  const teacherSeesMs = await waitInPage('teacher (edge 0)', teacher,
    `shows the student "via ${env.studentEdgeName}" (another server) and itself "via ${env.teacherEdgeName}" on "Server: ${env.teacherEdgeName}"`,
    edgesShown, [[
      { id: studentId, edgeName: env.studentEdgeName, same: false },
      { id: teacherId, edgeName: env.teacherEdgeName, same: true },
    ], env.teacherEdgeName]);
  const studentSeesMs = await waitInPage('student (edge 1)', student,
    `shows the teacher "via ${env.teacherEdgeName}" (another server) and itself "via ${env.studentEdgeName}" on "Server: ${env.studentEdgeName}"`,
    edgesShown, [[
      { id: teacherId, edgeName: env.teacherEdgeName, same: false },
      { id: studentId, edgeName: env.studentEdgeName, same: true },
    ], env.studentEdgeName]);
  console.log(`ok - the teacher's page shows the student "via ${env.studentEdgeName}" (${teacherSeesMs} ms); `
    + `the student's page shows the teacher "via ${env.teacherEdgeName}" (${studentSeesMs} ms); each names its own server`);

  await teacher.locator('#scene-whiteboard').click({ timeout: PAGE_TIMEOUT_MS });
  await waitInPage('teacher (edge 0)', teacher, 'shows the whiteboard scene', () => window.multistream.state().scene === 'whiteboard_and_camera');
  await drawOnBoard(teacher, PAGE_TIMEOUT_MS);
  await waitInPage('teacher (edge 0)', teacher, 'has its stroke on the board', () => window.multistream.state().board >= 1);
  console.log('ok - teacher switched the scene to the whiteboard and drew a stroke with the mouse');

  const slides = [await slidePng(teacher, 1, '#1d4ed8'), await slidePng(teacher, 2, '#b91c1c')];
  await teacher.locator('#slides-file').setInputFiles([
    { name: 'refraction-1.png', mimeType: 'image/png', buffer: slides[0] },
    { name: 'refraction-2.png', mimeType: 'image/png', buffer: slides[1] },
  ], { timeout: PAGE_TIMEOUT_MS });
  const uploadMs = await waitInPage('teacher (edge 0)', teacher, 'has the uploaded deck open at page 1',
    () => window.multistream.state().deck?.pages === 2 && window.multistream.state().page === 1);
  await teacher.locator('#slides-next').click({ timeout: PAGE_TIMEOUT_MS });
  await waitInPage('teacher (edge 0)', teacher, 'shows page 2', () => window.multistream.state().page === 2);
  console.log(`ok - teacher uploaded two PNG slides to edge 0 (deck open ${uploadMs} ms after choosing the files) and turned to page 2`);

  await sendChat(teacher, TEACHER_LINE);
  await waitInPage('teacher (edge 0)', teacher, 'has its chat line in the class',
    (text) => window.multistream.state().chat.includes(text), TEACHER_LINE);
  console.log('ok - teacher wrote in the chat');

  // The student's edge has none of it locally: the events come over QUIC, and the slide image is
  // asked of edge 1, which fetches it from edge 0 by its address.
  const page2 = sha256(slides[1]);
  const seenMs = await waitInPage('student (edge 1)', student,
    'sees the whiteboard scene, the stroke, page 2 of 2 with its image loaded from edge 1, and the teacher\'s chat line',
    ([text, address]) => {
      const state = window.multistream.state();
      const image = document.getElementById('slide-image');
      const shown = [...document.querySelectorAll('#chat-list li[data-seq]:not(.pending)')].some((item) => item.textContent.includes(text));
      return state.scene === 'whiteboard_and_camera' && document.getElementById('classroom').dataset.scene === 'whiteboard_and_camera'
        && state.board >= 1
        && state.deck?.pages === 2 && state.page === 2
        && state.chat.includes(text) && shown
        && image?.getAttribute('src') === `/api/assets/${address}`
        && image.currentSrc === `${window.location.origin}/api/assets/${address}`
        && image.complete && image.naturalWidth > 0;
    }, [TEACHER_LINE, page2]);
  const image = await student.evaluate(() => {
    const slide = document.getElementById('slide-image');
    return { currentSrc: slide.currentSrc, width: slide.naturalWidth, height: slide.naturalHeight };
  });
  if (image.width !== 320 || image.height !== 180) throw new Failure('the student\'s slide is not the uploaded 320x180 image', image);
  console.log(`ok - student on edge 1 sees the whiteboard scene, the stroke, page 2 of 2 (${image.width}x${image.height}, from ${image.currentSrc}) and the teacher's chat line (${seenMs} ms)`);

  await sendChat(student, STUDENT_LINE);
  await waitInPage('student (edge 1)', student, 'has its chat line confirmed by the class',
    (text) => window.multistream.state().chat.includes(text), STUDENT_LINE);
  const replyMs = await waitInPage('teacher (edge 0)', teacher, 'sees the student\'s chat line, with the student\'s name',
    ([text, name]) => window.multistream.state().chat.includes(text)
      && [...document.querySelectorAll('#chat-list li[data-seq]:not(.pending)')]
        .some((item) => item.textContent.includes(text) && item.textContent.includes(name)),
    [STUDENT_LINE, STUDENT_NAME]);
  console.log(`ok - student on edge 1 wrote in the chat and the teacher on edge 0 sees it under "${STUDENT_NAME}" (${replyMs} ms)`);

  for (const [label, record] of pages) {
    if (record.errors.length) throw new Failure(`uncaught errors in the ${label} page`, record.errors);
  }
  console.log('ok - no uncaught errors in either page');

  // The student leaves: the class is on one edge again, and the teacher's roster drops the labels.
  await closePage(student);
  const singleMs = await waitInPage('teacher (edge 0)', teacher,
    'shows the student away and no edge labels once the student has left',
    (id) => window.multistream.state().members[id]?.present === false
      && window.multistream.state().edges === 1
      && document.querySelector('#roster-list .person-edge') === null
      && document.getElementById('edge-status').checkVisibility(),
    studentId);
  console.log(`ok - the student left; the teacher's roster has no edge labels again (${singleMs} ms)`);

  await closePage(teacher);
  await browser.close();
  browser = null;
  console.log('ok - both pages left the class; browser closed');
}

async function report(error) {
  console.log(`not ok - ${error.message}`);
  if (error.observed !== undefined) console.log(`observed:\n${JSON.stringify(error.observed, null, 2)}`);
  else if (!(error instanceof Failure)) console.log(error.stack);
  // Best effort: the state of every page and its console, bounded so a hung browser cannot stall.
  for (const [label, record] of pages) {
    const state = await Promise.race([classView(record.page), delay(3_000).then(() => ({ error: 'page did not answer' }))]);
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
  console.log(`ok - two-edge class end-to-end test passed in ${((Date.now() - startedAt) / 1000).toFixed(1)} s`);
} catch (error) {
  clearTimeout(overall);
  await report(error);
  await shutdown(1);
}
