#!/usr/bin/env node
// Browser end-to-end test of placement and of moving to another edge, in real Chromium driven by
// playwright-core, against two edges that share a cluster issuer and list each other: edge 0
// ("Central") and edge 1 ("North campus", whose campus network is the browser's own address,
// 127.0.0.1/32). The class's home is edge 0.
//
// First a personal link to edge 0 (an access token, as a control plane's join link carries): the
// page times both edges, asks edge 0 where it belongs, and moves to edge 1 (campus) with the same
// token, saying why; that student leaves.
//
// A student opens the invitation link of edge 0 and types a name. The page times both edges'
// /healthz, joins through edge 0, and is sent on to edge 1 (campus), carrying its token in the
// fragment; edge 1's page says "Joined through North campus (your campus network)." The student
// writes in the chat. Then edge 1 is killed (SIGKILL, EDGE1_PID): the page finds edge 1 gone,
// tries edge 0 with the same token and its position in the class log, says so, and carries on
// there (the earlier chat line still shown once, a new one acknowledged by edge 0).
//
//   INVITE_LINK='http://127.0.0.1:PORT0/s/class#invite=…' EDGE0_URL=http://127.0.0.1:PORT0 \
//   PERSONAL_LINK='http://127.0.0.1:PORT0/s/class#token=…' \
//   EDGE1_URL=http://127.0.0.1:PORT1 EDGE1_PID=1234 node tests/e2e/nearest_edge.mjs
//
// Every wait polls for a condition with a bound; nothing sleeps and hopes. Prints one line per
// step ("ok - …"); on failure prints what it observed and exits 1.

import { chromium } from 'playwright-core';

import { CHROMIUM_ARGS, Failure } from './common.mjs';

/** The whole run, launch to close. */
const TOTAL_TIMEOUT_MS = 90_000;
/** Bound on a page loading or a step of the join flow. */
const PAGE_TIMEOUT_MS = 15_000;
/** Bound on moving to the other edge: the page waits FAILOVER_AFTER_MS (5 s) of failed
 * reconnections with backoff before it tries another edge. */
const MOVE_TIMEOUT_MS = 30_000;
const POLL_INTERVAL_MS = 100;
const CONSOLE_LINES_MAX = 40;
const STUDENT_NAME = 'Student Near';
const BEFORE_LINE = 'Written through the campus edge.';
const AFTER_LINE = 'Still here after it went away.';

let browser = null;
const consoleLines = [];

const trimUrl = (url) => url.replace(/\/+$/, '');

function environment() {
  const names = ['INVITE_LINK', 'PERSONAL_LINK', 'EDGE0_URL', 'EDGE1_URL', 'EDGE1_PID'];
  const missing = names.filter((name) => !process.env[name]);
  if (missing.length) throw new Failure(`missing environment: ${missing.join(', ')} (see the header of tests/e2e/nearest_edge.mjs)`);
  return {
    invite: process.env.INVITE_LINK,
    personal: process.env.PERSONAL_LINK,
    edge0: trimUrl(process.env.EDGE0_URL),
    edge1: trimUrl(process.env.EDGE1_URL),
    edge1Pid: Number(process.env.EDGE1_PID),
    chromiumPath: process.env.CHROMIUM || '/usr/bin/chromium',
  };
}

function view(page) {
  return page.evaluate(() => {
    const hook = window.multistream;
    if (!hook) return { origin: window.location.origin, error: 'window.multistream is missing' };
    const { roster, members, ...state } = hook.state();
    return {
      origin: window.location.origin,
      ...state,
      status: document.getElementById('status')?.textContent ?? null,
      notice: document.getElementById('notice-text')?.textContent ?? null,
      alert: document.getElementById('alert')?.textContent || null,
      nameError: document.getElementById('name-error')?.textContent || null,
    };
  }).catch((error) => ({ error: error.message }));
}

async function waitInPage(page, description, predicate, arg, timeout = PAGE_TIMEOUT_MS) {
  const started = Date.now();
  try {
    await page.waitForFunction(predicate, arg, { timeout, polling: POLL_INTERVAL_MS });
  } catch (error) {
    throw new Failure(`${description}: not within ${timeout} ms (${error.message.split('\n')[0]})`, await view(page));
  }
  return Date.now() - started;
}

async function sendChat(page, text) {
  await page.locator('#chat-input').fill(text, { timeout: PAGE_TIMEOUT_MS });
  await page.locator('#chat-input').press('Enter', { timeout: PAGE_TIMEOUT_MS });
}

async function run() {
  const env = environment();
  try {
    browser = await chromium.launch({ executablePath: env.chromiumPath, headless: true, args: CHROMIUM_ARGS, timeout: PAGE_TIMEOUT_MS });
  } catch (error) {
    throw new Failure(`Chromium could not be launched from ${env.chromiumPath}: ${error.message.split('\n')[0]}`);
  }
  console.log(`ok - launched Chromium ${browser.version()}`);
  const errors = [];
  const placed = 'Joined through North campus (your campus network).';

  // A personal link to edge 0 lands on the campus edge, with its own token.
  const linked = await browser.newContext();
  const linkedPage = await linked.newPage();
  linkedPage.on('pageerror', (error) => errors.push(String(error.stack || error)));
  await linkedPage.goto(env.personal, { timeout: PAGE_TIMEOUT_MS });
  const linkedMs = await waitInPage(linkedPage, 'the personal link is sent to edge 1, connected and in step',
    (edge1) => window.location.origin === edge1 && window.multistream?.state().connected && window.multistream.state().synced,
    env.edge1);
  await waitInPage(linkedPage, `the personal link's page says "${placed}"`,
    (text) => window.multistream.state().placement === text
      && document.getElementById('edge-status').textContent === 'Server: North campus',
    placed);
  if (/#|token=/.test(linkedPage.url())) throw new Failure('the token stayed in the address bar', linkedPage.url());
  console.log(`ok - a personal link to edge 0 was placed on edge 1, its campus edge, with the same token (${linkedMs} ms)`);
  await linkedPage.locator('#leave').click({ timeout: PAGE_TIMEOUT_MS });
  await linked.close();

  const context = await browser.newContext();
  const page = await context.newPage();
  page.on('console', (message) => {
    consoleLines.push(`[${message.type()}] ${message.text()}`);
    if (consoleLines.length > CONSOLE_LINES_MAX) consoleLines.shift();
  });
  page.on('pageerror', (error) => errors.push(String(error.stack || error)));

  // The invitation of edge 0; the page times the edges, joins, and is sent to its campus edge.
  await page.goto(env.invite, { timeout: PAGE_TIMEOUT_MS });
  await page.locator('#name').fill(STUDENT_NAME, { timeout: PAGE_TIMEOUT_MS });
  await page.locator('#join-submit').click({ timeout: PAGE_TIMEOUT_MS });
  const joinMs = await waitInPage(page, 'sent to edge 1, connected and in step with the class',
    (edge1) => window.location.origin === edge1 && window.multistream?.state().connected && window.multistream.state().synced,
    env.edge1);
  await waitInPage(page, `says "${placed}"`,
    (text) => window.multistream.state().placement === text
      && document.getElementById('notice-text').textContent === text
      && document.getElementById('edge-status').textContent === 'Server: North campus',
    placed);
  if (/#|token=/.test(page.url())) throw new Failure('the token stayed in the address bar', page.url());
  console.log(`ok - joined through edge 0's invitation and was sent to edge 1, its campus edge (${joinMs} ms); the page says "${placed}"`);

  await sendChat(page, BEFORE_LINE);
  await waitInPage(page, 'has its chat line acknowledged',
    (line) => window.multistream.state().chat.includes(line) && window.multistream.state().waiting === 0, BEFORE_LINE);
  const seqBefore = await page.evaluate(() => window.multistream.state().seq);
  console.log(`ok - wrote in the chat through edge 1 (class event ${seqBefore})`);

  // Edge 1 dies: the page moves to edge 0 with its token and its place in the log.
  process.kill(env.edge1Pid, 'SIGKILL');
  const moveMs = await waitInPage(page, 'moved to edge 0 and is connected there',
    (edge0) => {
      const state = window.multistream.state();
      return state.connected && state.synced && state.base === edge0 && state.moves === 1
        && state.edge?.name === 'Central';
    }, env.edge0, MOVE_TIMEOUT_MS);
  await waitInPage(page, 'says it moved',
    () => /stopped answering; you are back in the class through Central/.test(document.getElementById('notice-text').textContent)
      && document.getElementById('edge-status').textContent === 'Server: Central');
  const chat = await page.evaluate(() => window.multistream.state().chat);
  if (chat.filter((line) => line === BEFORE_LINE).length !== 1) throw new Failure('the chat before the move is not shown exactly once', chat);
  await sendChat(page, AFTER_LINE);
  await waitInPage(page, 'has its chat line acknowledged by edge 0',
    (line) => window.multistream.state().chat.includes(line) && window.multistream.state().waiting === 0, AFTER_LINE);
  console.log(`ok - edge 1 killed; the page moved to edge 0 in ${moveMs} ms, said so, and wrote in the chat there`);

  if (errors.length) throw new Failure('the page threw', errors);
  await page.locator('#leave').click({ timeout: PAGE_TIMEOUT_MS });
  await context.close();
}

const timeout = setTimeout(() => {
  console.error(`not ok - the scenario took longer than ${TOTAL_TIMEOUT_MS} ms`);
  process.exit(1);
}, TOTAL_TIMEOUT_MS);

try {
  await run();
  console.log('ok - placement and moving to another edge work in Chromium');
} catch (error) {
  console.error(`not ok - ${error.message}`);
  if (error.observed !== undefined) console.error(JSON.stringify(error.observed, null, 2));
  if (!(error instanceof Failure)) console.error(error.stack);
  if (consoleLines.length) console.error(`page console:\n${consoleLines.join('\n')}`);
  process.exitCode = 1;
} finally {
  clearTimeout(timeout);
  await browser?.close().catch(() => {});
}
