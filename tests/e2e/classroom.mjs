#!/usr/bin/env node
// Browser end-to-end test of one classroom: a teacher publishes camera and microphone
// (simulcast WHIP) and two students watch (WHEP), in real Chromium driven by playwright-core,
// against a node that is already running.
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

/** The whole run, launch to close; a normal run takes about 10 s on 2 busy cores. */
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

/** Flags measured to work on these machines (see the browser-e2e notes). */
const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--use-fake-ui-for-media-stream', // grants camera and microphone without a prompt
  '--use-fake-device-for-media-stream', // synthetic video pattern and beep
  '--allow-loopback-in-peer-connection', // required where the machine has only `lo`
  '--autoplay-policy=no-user-gesture-required', // <video> plays with sound without a click
];

class Failure extends Error {
  constructor(message, observed) {
    super(message);
    this.observed = observed;
  }
}

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
    const { connected, you, roster } = hook.state();
    return {
      links,
      connected,
      you,
      roster,
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

/** Sum of a Prometheus gauge over the series whose labels include `labels`, or null if absent. */
function gauge(metricsText, name, labels) {
  let total = null;
  for (const line of metricsText.split('\n')) {
    const match = /^([A-Za-z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line.trim());
    if (!match || match[1] !== name) continue;
    const seriesLabels = Object.fromEntries([...(match[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((m) => [m[1], m[2]]));
    if (Object.entries(labels).every(([key, value]) => seriesLabels[key] === value)) {
      total = (total ?? 0) + Number(match[3]);
    }
  }
  return total;
}

/** multistream_peers{kind="subscriber"} from /metrics; value is null while the node answers
 * 503 (its media task is busy), which callers treat as "not yet", not as a failure. */
async function subscriberCount(env) {
  const response = await fetch(`${env.baseUrl}/metrics`);
  const text = await response.text();
  if (response.status === 503) return { value: null, reason: `GET /metrics answered 503: ${text.trim()}` };
  if (!response.ok) throw new Failure(`GET /metrics answered ${response.status}`, text.slice(0, 2000));
  const value = gauge(text, 'multistream_peers', { kind: 'subscriber' });
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

const overall = setTimeout(async () => {
  await report(new Failure(`the test did not finish within ${TOTAL_TIMEOUT_MS / 1000} s`));
  await shutdown(1);
}, TOTAL_TIMEOUT_MS);

try {
  await run();
  clearTimeout(overall);
  console.log('ok - classroom end-to-end test passed');
} catch (error) {
  clearTimeout(overall);
  await report(error);
  await shutdown(1);
}
