#!/usr/bin/env node
// Browser end-to-end test of one class across two edges: the teacher's page is served by edge 0
// and two students' pages by edge 1 (each page talks only to its own edge), in real Chromium
// driven by playwright-core, against two nodes that are already running and list each other.
// The teacher turns on camera and microphone (simulcast WHIP to edge 0) with the page's button;
// the two students join through the invitation on edge 1, each in its own browser context, and
// both must decode the teacher's video (a growing framesDecoded, frames in the <video>) and
// receive its audio, which edge 1 gets from edge 0 over QUIC, one copy for both students: the
// edges' /metrics must show two tracks (audio, video) exported by edge 0 and imported by edge 1
// while edge 1 has two subscribers; and the students' rosters show the teacher live with camera
// (what the page's status line and the watching of a shared screen go by). The class state
// follows between
// the edges too: through the page's controls the teacher switches the scene to the whiteboard,
// draws a stroke, uploads two PNG slides and turns to page 2, and writes in the chat; both
// students, on the other edge, see all of it, including the slide image, which edge 1 serves
// after fetching it from edge 0 by its content address. Then a student writes in the chat and
// the teacher sees it. Both students still decode more frames after all that; when they leave,
// edge 1 stops importing and edge 0 stops exporting.
//
// Each page shows the edge serving it ("Server: North campus") and, once the class spans both
// edges, the edge beside each person in "Who is here" ("via South campus"); alone on one edge
// the teacher's roster has no such labels, and they go again when the students leave.
//
//   TEACHER_URL=http://127.0.0.1:PORT0 TEACHER_LINK='http://127.0.0.1:PORT0/s/demo#token=…' \
//   STUDENT_URL=http://127.0.0.1:PORT1 STUDENT_LINK='http://127.0.0.1:PORT1/s/demo#invite=…' \
//   node tests/e2e/two_edges.mjs            (CHROMIUM=/path/to/chromium to override)
//
// Both students join through STUDENT_LINK's invitation (one invitation serves a whole class);
// STUDENT_TWO_LINK, if set, is the second student's link instead (an invitation on edge 1 too).
//
// The edges are expected to be started with `--edge-name "North campus"` (edge 0) and
// `--edge-name "South campus"` (edge 1); TEACHER_EDGE_NAME and STUDENT_EDGE_NAME override these.
//
// Every wait polls for a condition with a bound; nothing sleeps and hopes. Prints one line per
// step ("ok - …"); on failure prints what it observed and exits 1. A browser that cannot be
// launched is a failure, never a skip.

import { chromium } from 'playwright-core';

import {
  CHROMIUM_ARGS, Failure, drawOnBoard, fetchMetrics, mediaLinks, metricSum, pollUntil, sha256, slidePng,
} from './common.mjs';

/** The whole run, launch to close; a normal run takes about 20 s on 2 busy cores. */
const TOTAL_TIMEOUT_MS = 120_000;
/** Bound on a page loading or a step in the join flow. */
const PAGE_TIMEOUT_MS = 15_000;
/** Bound on a class change reaching a page. Across edges a change goes to the class's home edge
 * and back over QUIC, and a slide image is fetched from the peer on first use: on loopback that
 * is milliseconds, but the machine may be busy. */
const CLASS_TIMEOUT_MS = 20_000;
/** Bound on media reaching a page. On one edge the first frame decodes about 0.5 s after the
 * page joins; across edges edge 1 must also learn of the publisher, subscribe to its tracks on
 * edge 0 and get a keyframe through it, and on 2 shared cores four pages compete with the nodes. */
const MEDIA_TIMEOUT_MS = 30_000;
/** Bound on an edge's relay figures (/metrics) reaching what the test expects: imports end at
 * once when the last subscriber leaves, exports at the latest when they are not refreshed (7 s). */
const METRICS_TIMEOUT_MS = 20_000;
/** How often conditions are polled; also the precision of the printed timings. */
const POLL_INTERVAL_MS = 100;
/** Frames a student's page must decode beyond the first ones seen: the picture keeps coming
 * (a few seconds of video even when a busy publisher drops its frame rate). */
const FRAMES_GROWTH = 20;
/** How much of each page's console is printed on failure. */
const CONSOLE_LINES_MAX = 40;
/** The chat line the teacher sends (on edge 0). */
const TEACHER_LINE = 'Good morning, both campuses! Today: refraction.';
/** The chat line the first student sends (on edge 1). */
const STUDENT_LINE = 'Hello from the south campus.';
/** The names the edges are started with (`--edge-name`), unless the environment says others. */
const TEACHER_EDGE_NAME = 'North campus';
const STUDENT_EDGE_NAME = 'South campus';
/** The names the students type on the invitation page. */
const STUDENT_NAMES = ['Student Far', 'Student Farther'];
/** Tracks of one camera publisher (audio and video): what edge 0 exports to edge 1 and edge 1
 * imports, once, however many students watch there (one remote publisher on edge 1). */
const CAMERA_TRACKS = 2;

const pages = new Map(); // label -> {page, console: string[], errors: string[]}
let browser = null;
/** The edges' base URLs once known, for the relay figures a failure prints. */
let edgeUrls = null;

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
    studentLinks: [process.env.STUDENT_LINK, process.env.STUDENT_TWO_LINK || process.env.STUDENT_LINK],
    homeEdge: process.env.CLASS_HOME_EDGE ?? null,
    teacherEdgeName: process.env.TEACHER_EDGE_NAME || TEACHER_EDGE_NAME,
    studentEdgeName: process.env.STUDENT_EDGE_NAME || STUDENT_EDGE_NAME,
    chromiumPath: process.env.CHROMIUM || '/usr/bin/chromium',
  };
  if (!env.teacherLink.includes('#token=')) throw new Failure('TEACHER_LINK has no #token= fragment');
  if (env.teacherEdgeName === env.studentEdgeName) throw new Failure('the two edges have the same name', env.teacherEdgeName);
  if (env.teacherUrl === env.studentUrl) throw new Failure('TEACHER_URL and STUDENT_URL are the same edge', env.teacherUrl);
  if (!env.teacherLink.startsWith(`${env.teacherUrl}/`)) throw new Failure('TEACHER_LINK is not on TEACHER_URL', env.teacherLink);
  for (const link of env.studentLinks) {
    if (!link.includes('#invite=')) throw new Failure('a student link has no #invite= fragment', link);
    if (!link.startsWith(`${env.studentUrl}/`)) throw new Failure('a student link is not on STUDENT_URL', link);
  }
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
  // Its own context: a page's token lives in its sessionStorage, so each person needs one.
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

/** A page's media as it stands: its connections' RTP counters, the teacher's <video> on a
 * student's page, who the roster shows live, and the status line. */
async function mediaView(page) {
  try {
    const links = await mediaLinks(page);
    const shown = await page.evaluate(() => {
      const video = document.getElementById('teacher-video');
      const quality = video?.getVideoPlaybackQuality?.();
      return {
        video: video ? {
          readyState: video.readyState,
          videoWidth: video.videoWidth,
          paused: video.paused,
          muted: video.muted,
          currentTime: video.currentTime,
          totalVideoFrames: quality?.totalVideoFrames ?? null,
        } : null,
        live: window.multistream.state().roster.filter((person) => person.live?.length)
          .map((person) => ({ name: person.name, role: person.role, live: person.live, edgeName: person.edgeName })),
        status: document.getElementById('status')?.textContent ?? null,
        cameraNote: document.getElementById('camera-note')?.checkVisibility() ? document.getElementById('camera-note').textContent : null,
        alert: document.getElementById('alert')?.textContent || null,
      };
    });
    return { links, ...shown };
  } catch (error) {
    return { error: error.message };
  }
}

const findLink = (view, name) => view.links?.find((link) => link.name === name);

/** The node prefers AEAD-GCM SRTP; Chromium offers it, so it must be what was negotiated. */
const usesGcm = (link) => /GCM/.test(link?.transport?.srtpCipher ?? '');

/** The counters of a student's camera connection: video bytes and decoded frames, audio bytes,
 * packets and samples (0 where a counter is missing). */
function cameraCounts(view) {
  const link = findLink(view, 'watch-camera');
  const video = link?.inbound.find((stat) => stat.kind === 'video');
  const audio = link?.inbound.find((stat) => stat.kind === 'audio');
  return {
    connected: link?.connectionState === 'connected',
    gcm: usesGcm(link),
    videoBytes: video?.bytesReceived ?? 0,
    frames: video?.framesDecoded ?? 0,
    audioBytes: audio?.bytesReceived ?? 0,
    audioPackets: audio?.packetsReceived ?? 0,
    samples: audio?.totalSamplesReceived ?? 0,
    shownFrames: view.video?.totalVideoFrames ?? 0,
    width: view.video?.videoWidth ?? 0,
  };
}

/** The camera connection is up, the video decodes and reaches the <video>, and audio arrives. */
function decodes(view) {
  const c = cameraCounts(view);
  return c.connected && c.gcm && c.videoBytes > 0 && c.frames > 0 && c.width > 0 && c.audioBytes > 0;
}

function publishesCamera(view) {
  const link = findLink(view, 'publish-camera');
  return Boolean(link && link.connectionState === 'connected' && usesGcm(link)
    && link.outbound.some((stat) => stat.kind === 'video' && stat.bytesSent > 0)
    && link.outbound.some((stat) => stat.kind === 'audio' && stat.bytesSent > 0));
}

/** Polls a page's media until `accept(view)` holds, within MEDIA_TIMEOUT_MS. */
function waitForMedia(label, page, description, accept) {
  return pollUntil(`${label}: ${description}`, MEDIA_TIMEOUT_MS, POLL_INTERVAL_MS, async () => {
    const view = await mediaView(page);
    return { ok: !view.error && accept(view), observed: view };
  });
}

/** An edge's relay and peer figures from its /metrics, or null while it answers 503. */
async function relayFigures(baseUrl) {
  const metrics = await fetchMetrics(baseUrl);
  if (metrics.busy) return null;
  const value = (name, labels) => metricSum(metrics.text, name, labels);
  return {
    publishers: value('multistream_peers', { kind: 'publisher' }),
    subscribers: value('multistream_peers', { kind: 'subscriber' }),
    linksUp: value('multistream_relay_link_up'),
    imports: value('multistream_relay_imports'),
    exports: value('multistream_relay_exports'),
    remotePublishers: value('multistream_relay_remote_publishers'),
    packetsOut: value('multistream_relay_packets_out_total'),
    packetsIn: value('multistream_relay_packets_in_total'),
    delivered: value('multistream_relay_packets_delivered_total'),
    unknown: value('multistream_relay_packets_unknown_total'),
    unknownCodec: value('multistream_relay_packets_unknown_codec_total'),
    malformed: value('multistream_relay_packets_malformed_total'),
    refused: value('multistream_relay_subscriptions_refused_total'),
    keyframeRequests: value('multistream_relay_keyframe_requests_total'),
    stalls: value('multistream_relay_stalls_total'),
    bytesSent: value('multistream_relay_bytes_sent_total'),
    bytesReceived: value('multistream_relay_bytes_received_total'),
  };
}

/** Polls both edges' relay figures until `accept(edge0, edge1)` holds. */
function waitForRelay(env, description, accept) {
  return pollUntil(description, METRICS_TIMEOUT_MS, POLL_INTERVAL_MS, async () => {
    const [edge0, edge1] = await Promise.all([relayFigures(env.teacherUrl), relayFigures(env.studentUrl)]);
    return { ok: edge0 !== null && edge1 !== null && accept(edge0, edge1), observed: { edge0, edge1 } };
  });
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

/** A student opens the invitation on edge 1 and joins under `name`; resolves when the page has
 * the class state, with the moment the join was submitted. */
async function joinStudent(label, link, name) {
  const page = await openPage(label, link);
  await page.locator('#name').fill(name, { timeout: PAGE_TIMEOUT_MS });
  const joinedAt = Date.now();
  await page.locator('#join-submit').click({ timeout: PAGE_TIMEOUT_MS });
  const joinMs = await waitInPage(label, page, 'joined and has the class state',
    () => window.multistream?.state().connected && window.multistream.state().synced && Boolean(window.multistream.state().you));
  return { label, name, page, joinedAt, joinMs };
}

/** Waits for a student's first decoded frame of the teacher's camera (timed from the join), then
 * for the picture to keep coming: FRAMES_GROWTH more frames decoded, and more audio. */
async function watchesTheTeacher(student) {
  await waitForMedia(student.label, student.page, 'has its camera connection (WHEP to edge 1) connected',
    (view) => cameraCounts(view).connected);
  const connectedMs = Date.now() - student.joinedAt;
  const first = await waitForMedia(student.label, student.page, 'decodes the teacher\'s video (from edge 0) and receives audio', decodes);
  const firstMs = Date.now() - student.joinedAt;
  const at = cameraCounts(first.observed);
  const started = Date.now();
  const grown = await waitForMedia(student.label, student.page,
    `keeps decoding (${FRAMES_GROWTH} frames beyond the ${at.frames} first seen) and receiving and decoding audio`,
    (view) => {
      const now = cameraCounts(view);
      return decodes(view) && now.frames >= at.frames + FRAMES_GROWTH && now.audioPackets > at.audioPackets
        && now.audioBytes > at.audioBytes && now.samples > at.samples;
    });
  const now = cameraCounts(grown.observed);
  const seconds = (Date.now() - started) / 1000;
  return { connectedMs, firstMs, first: at, now, fps: (now.frames - at.frames) / seconds, view: grown.observed };
}

async function run() {
  const env = environment();
  edgeUrls = [env.teacherUrl, env.studentUrl];
  await healthy('edge 0 (teacher)', env.teacherUrl);
  await healthy('edge 1 (students)', env.studentUrl);
  console.log(`ok - edge 0 answers at ${env.teacherUrl}, edge 1 at ${env.studentUrl}`
    + (env.homeEdge !== null ? ` (the class's home is edge ${env.homeEdge})` : ''));

  try {
    browser = await chromium.launch({ executablePath: env.chromiumPath, headless: true, args: CHROMIUM_ARGS, timeout: PAGE_TIMEOUT_MS });
  } catch (error) {
    throw new Failure(`Chromium could not be launched from ${env.chromiumPath}: ${error.message.split('\n')[0]}\n`
      + 'Install it with `apt-get install -y chromium`, or set CHROMIUM to its path.');
  }
  console.log(`ok - launched Chromium ${browser.version()}`);

  // The teacher on edge 0, the students on edge 1: each page talks only to its own edge.
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

  await teacher.locator('#start-camera').click({ timeout: PAGE_TIMEOUT_MS });
  const published = await waitForMedia('teacher (edge 0)', teacher, 'publishes camera and microphone to edge 0', publishesCamera);
  const layers = findLink(published.observed, 'publish-camera').outbound
    .filter((stat) => stat.kind === 'video').map((stat) => stat.rid).join(',');
  console.log(`ok - teacher turned on camera and microphone with the page's button: publishing to edge 0, connected after ${published.elapsedMs} ms (simulcast layers: ${layers || 'none reported'})`);

  // Two students, each in its own browser context, join through the invitation on edge 1 at once.
  const students = await Promise.all(STUDENT_NAMES.map((name, i) =>
    joinStudent(`student ${i + 1} (edge 1)`, env.studentLinks[i], name)));
  for (const [label, page, url] of [['teacher', teacher, env.teacherUrl], ...students.map((s) => [s.label, s.page, env.studentUrl])]) {
    const origin = await page.evaluate(() => window.location.origin);
    if (origin !== url) throw new Failure(`the ${label}'s page is not on its edge`, { origin, expected: url });
  }
  for (const student of students) {
    student.id = await student.page.evaluate(() => window.multistream.state().you.id);
  }
  if (students[0].id === students[1].id) throw new Failure('the two students joined as the same participant', students[0].id);
  for (const student of students) {
    console.log(`ok - student "${student.name}" (${student.id}) joined through the invitation on edge 1 (${student.joinMs} ms)`);
  }

  // Media across the edges: edge 1 has no publisher of its own; the teacher's camera comes from
  // edge 0, and both students must decode it.
  const watching = await Promise.all(students.map(watchesTheTeacher));
  for (const [i, student] of students.entries()) {
    const { connectedMs, firstMs, first, now, fps } = watching[i];
    console.log(`ok - ${student.label} decodes the teacher's video from edge 0: first decoded frame ${firstMs} ms after joining `
      + `(connected ${connectedMs} ms after joining; polled every ${POLL_INTERVAL_MS} ms); frames decoded ${first.frames} -> ${now.frames} (${fps.toFixed(1)} fps), `
      + `${now.width}px wide in the <video> (${now.shownFrames} frames shown); audio ${now.audioPackets} packets, `
      + `${now.audioBytes} bytes, ${now.samples} samples; SRTP ${findLink(watching[i].view, 'watch-camera').transport?.srtpCipher}`);
  }
  // One copy per edge: edge 0 exports the teacher's two tracks to edge 1 once, edge 1 imports
  // them once and hands every relayed packet to both its subscribers.
  const relay = await waitForRelay(env, `edge 0 exports ${CAMERA_TRACKS} tracks and edge 1 imports ${CAMERA_TRACKS} for its 2 subscribers`,
    (edge0, edge1) => edge0.exports === CAMERA_TRACKS && edge1.imports === CAMERA_TRACKS
      && edge1.subscribers === 2 && edge1.remotePublishers === 1 && edge0.publishers === 1
      && edge0.packetsOut > 0 && edge1.packetsIn > 0 && edge1.delivered > 0);
  const { edge0, edge1 } = relay.observed;
  console.log(`ok - metrics: edge 0 exports ${edge0.exports} tracks (1 publisher, ${edge0.packetsOut} packets out, ${edge0.bytesSent} bytes sent); `
    + `edge 1 imports ${edge1.imports} (${edge1.remotePublishers} remote publisher, ${edge1.packetsIn} packets in, `
    + `${edge1.delivered} handed to its SFU for its ${edge1.subscribers} subscribers; `
    + `${edge1.keyframeRequests} keyframe requests sent upstream; unknown ${edge1.unknown}, unknown codec ${edge1.unknownCodec}, malformed ${edge1.malformed})`);

  // Now the class spans both edges: each page says where everyone is connected.
  const everyone = (pageEdge) => [
    { id: teacherId, edgeName: env.teacherEdgeName, same: pageEdge === env.teacherEdgeName },
    ...students.map(({ id }) => ({ id, edgeName: env.studentEdgeName, same: pageEdge === env.studentEdgeName })),
  ];
  const teacherSeesMs = await waitInPage('teacher (edge 0)', teacher,
    `shows both students "via ${env.studentEdgeName}" (another server) and itself "via ${env.teacherEdgeName}" on "Server: ${env.teacherEdgeName}"`,
    edgesShown, [everyone(env.teacherEdgeName), env.teacherEdgeName]);
  const studentSeesMs = [];
  for (const student of students) {
    studentSeesMs.push(await waitInPage(student.label, student.page,
      `shows the teacher "via ${env.teacherEdgeName}" (another server) and both students "via ${env.studentEdgeName}" on "Server: ${env.studentEdgeName}"`,
      edgesShown, [everyone(env.studentEdgeName), env.studentEdgeName]));
  }
  console.log(`ok - the teacher's page shows both students "via ${env.studentEdgeName}" (${teacherSeesMs} ms); `
    + `the students' pages show the teacher "via ${env.teacherEdgeName}" (${studentSeesMs.join(' ms, ')} ms); each names its own server`);

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

  // The students' edge has none of it locally: the events come over QUIC, and the slide image is
  // asked of edge 1, which fetches it from edge 0 by its address.
  const page2 = sha256(slides[1]);
  for (const student of students) {
    const seenMs = await waitInPage(student.label, student.page,
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
    const image = await student.page.evaluate(() => {
      const slide = document.getElementById('slide-image');
      return { currentSrc: slide.currentSrc, width: slide.naturalWidth, height: slide.naturalHeight };
    });
    if (image.width !== 320 || image.height !== 180) throw new Failure(`the ${student.label}'s slide is not the uploaded 320x180 image`, image);
    console.log(`ok - ${student.label} sees the whiteboard scene, the stroke, page 2 of 2 (${image.width}x${image.height}, from ${image.currentSrc}) and the teacher's chat line (${seenMs} ms)`);
  }

  const [writer] = students;
  await sendChat(writer.page, STUDENT_LINE);
  await waitInPage(writer.label, writer.page, 'has its chat line confirmed by the class',
    (text) => window.multistream.state().chat.includes(text), STUDENT_LINE);
  const replyMs = await waitInPage('teacher (edge 0)', teacher, 'sees the student\'s chat line, with the student\'s name',
    ([text, name]) => window.multistream.state().chat.includes(text)
      && [...document.querySelectorAll('#chat-list li[data-seq]:not(.pending)')]
        .some((item) => item.textContent.includes(text) && item.textContent.includes(name)),
    [STUDENT_LINE, writer.name]);
  console.log(`ok - ${writer.label} wrote in the chat and the teacher on edge 0 sees it under "${writer.name}" (${replyMs} ms)`);

  // The picture kept coming to both students through all of that.
  for (const [i, student] of students.entries()) {
    const before = watching[i].now;
    const still = await waitForMedia(student.label, student.page, `still decodes new frames (beyond ${before.frames}) and receives audio`,
      (view) => decodes(view) && cameraCounts(view).frames > before.frames && cameraCounts(view).audioPackets > before.audioPackets);
    const now = cameraCounts(still.observed);
    console.log(`ok - ${student.label} still decodes: ${now.frames} frames decoded in all, ${now.audioPackets} audio packets`);
  }

  // What the students' pages say about the picture: the roster shows the teacher (on the other
  // edge) live with camera, as on one edge, so the status line names who is watched and no
  // "Waiting for the teacher to start" covers the video.
  for (const student of students) {
    await waitForMedia(student.label, student.page, 'shows the teacher (on edge 0) live with camera in the roster while the picture plays',
      (view) => decodes(view) && view.live?.some((person) => person.role === 'teacher' && person.live.includes('camera'))
        && view.cameraNote === null);
  }
  console.log('ok - both students\' rosters show the teacher live with camera, and no "waiting" note covers the picture');

  for (const [label, record] of pages) {
    if (record.errors.length) throw new Failure(`uncaught errors in the ${label} page`, record.errors);
  }
  console.log('ok - no uncaught errors in any page');

  // The students leave: the class is on one edge again, the teacher's roster drops the labels,
  // and with no subscriber left on edge 1 the relay between the edges stops.
  for (const student of students) await closePage(student.page);
  const singleMs = await waitInPage('teacher (edge 0)', teacher,
    'shows both students away and no edge labels once they have left',
    (ids) => ids.every((id) => window.multistream.state().members[id]?.present === false)
      && window.multistream.state().edges === 1
      && document.querySelector('#roster-list .person-edge') === null
      && document.getElementById('edge-status').checkVisibility(),
    students.map(({ id }) => id));
  console.log(`ok - the students left; the teacher's roster has no edge labels again (${singleMs} ms)`);
  const stopped = await waitForRelay(env, 'edge 1 stops importing and edge 0 stops exporting once no student watches on edge 1',
    (edge0, edge1) => edge1.subscribers === 0 && edge1.imports === 0 && edge0.exports === 0);
  console.log(`ok - metrics: no subscriber left on edge 1; its imports and edge 0's exports are 0 (${stopped.elapsedMs} ms after the teacher saw them leave)`);

  await closePage(teacher);
  await browser.close();
  browser = null;
  console.log('ok - every page left the class; browser closed');
}

async function report(error) {
  console.log(`not ok - ${error.message}`);
  if (error.observed !== undefined) console.log(`observed:\n${JSON.stringify(error.observed, null, 2)}`);
  else if (!(error instanceof Failure)) console.log(error.stack);
  // Best effort: the state and media of every page and its console, and the edges' relay
  // figures, bounded so a hung browser or node cannot stall.
  const bounded = (promise) => Promise.race([promise.catch((e) => ({ error: e.message })), delay(3_000).then(() => ({ error: 'did not answer' }))]);
  for (const [i, url] of (edgeUrls ?? []).entries()) {
    console.log(`--- edge ${i} (${url}) relay figures: ${JSON.stringify(await bounded(relayFigures(url)))}`);
  }
  for (const [label, record] of pages) {
    const state = await bounded(classView(record.page));
    console.log(`--- ${label}: ${JSON.stringify(state, null, 2)}`);
    console.log(`--- ${label} media: ${JSON.stringify(await bounded(mediaView(record.page)), null, 2)}`);
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
