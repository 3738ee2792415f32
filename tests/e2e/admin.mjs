#!/usr/bin/env node
// Browser end-to-end test of the control plane's admin UI, in real Chromium driven by
// playwright-core, against a control plane that is already running (with a fresh database and
// its first administrator). Through the page's own controls: a wrong password is refused and the
// page says so; the administrator signs in with the keyboard only, creates a course (keyboard
// only too), a teacher with a password, adds the teacher to the course, is refused an edge with
// a bad id and registers one (its health shown in words when the API reports it), makes an
// enrolment code (shown once, with the edge's command line, then listed as open), is refused a
// garbage plugin package (the API's message on the page) and uploads a signed one (its manifest
// listed in words), approves it and rolls it out (the keyboard carrying on from one to the
// other), schedules a session in the form (local times sent as RFC 3339), sees it listed, is refused a session that ends before it starts (the API's message on the
// page, the end field marked), edits the session's title and room, opens the teacher's join link
// on the edge (a real node that trusts the control plane's key) and lands in the class as its
// teacher, makes and revokes an API key, drains the edge; a phone-sized page shows the sessions without scrolling sideways; signing out
// ends the cookie. No page may throw or break its Content-Security-Policy.
//
//   CONTROL_URL=http://127.0.0.1:PORT ADMIN_EMAIL=… ADMIN_PASSWORD=… \
//   EDGE_ID=<the edge's node id> EDGE_URL=http://127.0.0.1:PORT \
//   PLUGIN_PACKAGE=<a signed .msplugin> PLUGIN_NAME=polls PLUGIN_VERSION=… PLUGIN_SIGNER=<its key> \
//   node tests/e2e/admin.mjs
//   (CHROMIUM=/path/to/chromium to override)
//
// Every wait polls for a condition with a bound; nothing sleeps and hopes. Prints one line per
// step ("ok - …"); on failure prints what was expected, what the page showed, and exits 1.

import { chromium } from 'playwright-core';

import { CHROMIUM_ARGS, Failure, pollUntil } from './common.mjs';

/** The whole run, launch to close; a normal run takes a few seconds. */
const TOTAL_TIMEOUT_MS = 60_000;
/** Bound on one step: a page load, a request and the page showing its answer (milliseconds on
 * loopback; argon2 makes signing in and adding a person with a password take longer). */
const STEP_TIMEOUT_MS = 10_000;
/** How often conditions are polled. */
const POLL_INTERVAL_MS = 50;
/** Tab presses allowed to reach a field from where focus starts. */
const TAB_PRESSES_MAX = 6;
/** A phone in portrait. */
const PHONE_VIEWPORT = { width: 390, height: 844 };
const DESKTOP_VIEWPORT = { width: 1280, height: 900 };

const COURSE = { code: 'PHY-101', title: 'Physics' };
const TEACHER = { name: 'Grace Hopper', email: 'grace@school.example', password: 'teacher passphrase 1' };
/** A real edge that trusts the control plane's key (EDGE_ID, EDGE_URL): the teacher's link is
 * opened on it. */
const EDGE = { id: process.env.EDGE_ID ?? '', name: 'Central', peer: '127.0.0.1:7000', url: process.env.EDGE_URL ?? '', capacity: '200' };
/** How the page words an edge's health (the API's `health`, when it reports one). */
const HEALTH_WORDS = { healthy: 'healthy', stale: 'stale', never_seen: 'never seen' };
/** A signed plugin package (PLUGIN_PACKAGE) and what it is; uploaded through the page. */
const PLUGIN = {
  path: process.env.PLUGIN_PACKAGE ?? '',
  name: process.env.PLUGIN_NAME ?? '',
  version: process.env.PLUGIN_VERSION ?? '',
  signer: process.env.PLUGIN_SIGNER ?? '',
};

const pages = []; // {label, page, problems: string[]}
let browser = null;

function environment() {
  const missing = ['CONTROL_URL', 'ADMIN_EMAIL', 'ADMIN_PASSWORD', 'EDGE_ID', 'EDGE_URL', 'PLUGIN_PACKAGE', 'PLUGIN_NAME', 'PLUGIN_VERSION', 'PLUGIN_SIGNER'].filter(
    (name) => !process.env[name],
  );
  if (missing.length) throw new Failure(`missing environment: ${missing.join(', ')} (see the header of tests/e2e/admin.mjs)`);
  return {
    baseUrl: process.env.CONTROL_URL.replace(/\/+$/, ''),
    email: process.env.ADMIN_EMAIL,
    password: process.env.ADMIN_PASSWORD,
    chromiumPath: process.env.CHROMIUM || '/usr/bin/chromium',
  };
}

const ok = (step) => console.log(`ok - ${step}`);

/** Polls `probe` (answering `{ok, observed}`) until ok, within a step's bound. */
const waitUntil = (description, probe) => pollUntil(description, STEP_TIMEOUT_MS, POLL_INTERVAL_MS, probe);

/** The text of every element matching `selector` as shown (table cells and lines separated by
 * one space), now (no waiting). */
const texts = (page, selector) =>
  page.evaluate((s) => [...document.querySelectorAll(s)].map((e) => (e.innerText ?? e.textContent).replace(/\s+/g, ' ').trim()), selector);

/** Waits until some element matching `selector` has text containing `text`. */
async function waitForText(page, selector, text, description) {
  return waitUntil(description ?? `${selector} shows "${text}"`, async () => {
    const found = await texts(page, selector);
    return { ok: found.some((t) => t.includes(text)), observed: found };
  });
}

/** Waits until the status line says `text`. */
const waitForStatus = (page, text) => waitForText(page, '#status', text, `the status line says "${text}"`);

/** The id of the focused element. */
const focusedId = (page) => page.evaluate(() => document.activeElement?.id ?? null);

/** The focused element's text (a button's name, with its hidden words). */
const focusedText = (page) => page.evaluate(() => (document.activeElement?.textContent ?? '').replace(/\s+/g, ' ').trim());

/** Presses Tab until the element `id` has focus (within a bound). */
async function tabTo(page, id) {
  const path = [];
  for (let press = 0; press <= TAB_PRESSES_MAX; press++) {
    const now = await focusedId(page);
    path.push(now);
    if (now === id) return;
    await page.keyboard.press('Tab');
  }
  throw new Failure(`#${id} is not reached with ${TAB_PRESSES_MAX} Tab presses`, path);
}

/** Waits until the element `id` has focus. */
async function expectFocus(page, id, why) {
  await waitUntil(`${why}: focus on #${id}`, async () => {
    const now = await focusedId(page);
    return { ok: now === id, observed: `focus is on #${now}` };
  });
}

async function openPage(label, context, baseUrl, hash = '') {
  const page = await context.newPage();
  const entry = { label, page, problems: [] };
  page.on('console', (message) => {
    const text = message.text();
    // A refusal's status is logged by Chromium for every 4xx answer; those are expected.
    if (message.type() === 'error' && !text.startsWith('Failed to load resource')) entry.problems.push(`console: ${text}`);
  });
  page.on('pageerror', (error) => entry.problems.push(`exception: ${error.message}`));
  pages.push(entry);
  page.setDefaultTimeout(STEP_TIMEOUT_MS);
  await page.goto(`${baseUrl}/${hash}`, { timeout: STEP_TIMEOUT_MS });
  return page;
}

/** Follows a link in the navigation and waits for its screen, focus on its heading. */
async function navigate(page, name, screen) {
  await page.getByRole('navigation', { name: 'Sections' }).getByRole('link', { name }).click();
  await page.locator(`#screen-${screen}`).waitFor({ state: 'visible' });
  await waitUntil(`focus moves to the ${name} heading`, async () => {
    const id = await focusedId(page);
    return { ok: id === `${screen}-heading`, observed: id };
  });
}

/** The form's error text, now. */
const formError = async (page, form) => (await texts(page, `#${form} [data-error]`))[0] ?? '';

async function run() {
  const env = environment();
  browser = await chromium.launch({ executablePath: env.chromiumPath, args: CHROMIUM_ARGS, headless: true });
  const context = await browser.newContext({ viewport: DESKTOP_VIEWPORT });
  const page = await openPage('admin', context, env.baseUrl);

  // ---- Signing in, keyboard only ----
  await page.locator('#sign-in-email').waitFor({ state: 'visible' });
  // From the top of the page: the skip link, then the form.
  await page.evaluate(() => document.activeElement?.blur());
  await tabTo(page, 'sign-in-email');
  await page.keyboard.type(env.email);
  await page.keyboard.press('Tab');
  await expectFocus(page, 'sign-in-password', 'Tab from the email');
  await page.keyboard.type('not the password at all');
  await page.keyboard.press('Enter');
  await waitForText(page, '#sign-in-form [data-error]', 'That email and password do not match.');
  ok('a wrong password is refused with the API\'s message');
  await page.locator('#sign-in-password').focus();
  await page.keyboard.press('Control+A');
  await page.keyboard.type(env.password);
  await page.keyboard.press('Enter');
  await page.locator('#nav').waitFor({ state: 'visible' });
  await waitForText(page, '#whoami', 'Signed in as Ada Admin (administrator)');
  ok('the administrator signs in with the keyboard');

  // ---- A course, keyboard only ----
  await navigate(page, 'Courses', 'courses');
  await tabTo(page, 'course-code');
  await page.keyboard.type(COURSE.code);
  await page.keyboard.press('Tab');
  await expectFocus(page, 'course-title', 'Tab from the code');
  await page.keyboard.type(COURSE.title);
  await page.keyboard.press('Enter');
  await waitForText(page, '#course-table tbody tr', `${COURSE.code} ${COURSE.title}`);
  await waitForStatus(page, `Created the course ${COURSE.code}.`);
  ok('a course is created with the keyboard');

  // ---- A teacher ----
  await navigate(page, 'People', 'people');
  const personForm = page.locator('#person-form');
  await personForm.getByLabel('Name', { exact: true }).fill(TEACHER.name);
  await personForm.getByLabel('Email', { exact: true }).fill(TEACHER.email);
  await personForm.getByLabel('Password (optional)', { exact: true }).fill(TEACHER.password);
  await personForm.getByRole('button', { name: 'Add person' }).click();
  await waitForText(page, '#people-table tbody tr', `${TEACHER.name} ${TEACHER.email} active`);
  await waitForStatus(page, `Added ${TEACHER.name}.`);
  ok('a teacher with a password is added');

  // ---- The teacher joins the course ----
  await navigate(page, 'Courses', 'courses');
  const memberForm = page.locator('#member-form');
  await waitForText(page, '#member-user option', TEACHER.email, 'the teacher can be chosen');
  await memberForm.getByLabel('Course', { exact: true }).selectOption({ label: `${COURSE.code} — ${COURSE.title}` });
  await memberForm.getByLabel('Person', { exact: true }).selectOption({ label: `${TEACHER.name} <${TEACHER.email}>` });
  await memberForm.getByLabel('Role', { exact: true }).selectOption('teacher');
  await memberForm.getByRole('button', { name: 'Add to course' }).click();
  await waitForText(page, '#member-table tbody tr', `${TEACHER.name} ${TEACHER.email} Teacher`);
  await waitForStatus(page, `Added ${TEACHER.name} to ${COURSE.code} as teacher.`);
  ok('the teacher is added to the course');

  // ---- An edge: a bad id is refused, then it is registered ----
  await navigate(page, 'Edges', 'edges');
  const edgeForm = page.locator('#edge-form');
  await edgeForm.getByLabel('Node id', { exact: true }).fill('abc');
  await edgeForm.getByLabel('Name', { exact: true }).fill(EDGE.name);
  await edgeForm.getByLabel('Peer address', { exact: true }).fill(EDGE.peer);
  await edgeForm.getByLabel('Public URL', { exact: true }).fill(EDGE.url);
  await edgeForm.getByLabel('Capacity', { exact: true }).fill(EDGE.capacity);
  await edgeForm.getByRole('button', { name: 'Register edge' }).click();
  await waitForText(page, '#edge-form [data-error]', 'Id is the edge\'s node id: 64 hex digits');
  await expectFocus(page, 'edge-id', 'the refused field');
  ok('an edge with a bad id is refused and its field focused');
  await edgeForm.getByLabel('Node id', { exact: true }).fill(EDGE.id);
  await edgeForm.getByRole('button', { name: 'Register edge' }).click();
  await waitForText(page, '#edge-table tbody tr', `${EDGE.name} ${EDGE.id.slice(0, 12)}… active`);
  await waitForText(page, '#edge-table tbody tr', `0 / ${EDGE.capacity}`);
  await waitUntil('the form forgets the edge', async () => {
    const error = await formError(page, 'edge-form');
    return { ok: error === '', observed: error };
  });
  ok('an edge is registered and listed with its status and load');

  // Its health, in words, as far as the API reports it (the fields may not be there yet).
  const reported = await page.evaluate(async (id) => {
    const { edges } = await (await fetch('/api/v1/edges')).json();
    const edge = edges.find((e) => e.id === id) ?? {};
    return { health: edge.health ?? null, restartNeeded: edge.restart_needed ?? null };
  }, EDGE.id);
  const statusCell = (await texts(page, `#edge-table tbody tr[data-edge="${EDGE.id}"] td:nth-child(2)`))[0] ?? '';
  if (reported.health !== null) {
    const words = HEALTH_WORDS[reported.health];
    if (!words || !statusCell.includes(words)) throw new Failure(`the edge's health (${reported.health}) is not shown in words`, statusCell);
  }
  if ((reported.restartNeeded === true) !== statusCell.includes('restart needed')) {
    throw new Failure(`"restart needed" is shown wrongly (the API says ${reported.restartNeeded})`, statusCell);
  }
  ok(`the edge's status cell shows what the API reports (health ${reported.health ?? 'not reported'}, restart needed ${reported.restartNeeded ?? 'not reported'})`);

  // ---- An enrolment code for a new edge: shown once, listed as open ----
  const enrolmentForm = page.locator('#enrolment-form');
  const minutes = enrolmentForm.getByLabel('Valid for (minutes)', { exact: true });
  if ((await minutes.inputValue()) !== '60') throw new Failure('a code is not valid for 60 minutes by default', await minutes.inputValue());
  await minutes.fill('0');
  await enrolmentForm.getByRole('button', { name: 'Make enrolment code' }).click();
  await waitForText(page, '#enrolment-form [data-error]', 'Minutes is between 1 and 10080.');
  await expectFocus(page, 'enrolment-minutes', 'the refused field');
  await minutes.fill('90');
  await enrolmentForm.getByRole('button', { name: 'Make enrolment code' }).click();
  await page.locator('#enrolment-shown').waitFor({ state: 'visible' });
  await expectFocus(page, 'enrolment-shown', 'the new code');
  await waitForStatus(page, 'Made an enrolment code.');
  const shown = page.locator('#enrolment-shown');
  const code = await shown.getByLabel('Code', { exact: true }).inputValue();
  if (!/^enrol_[0-9a-f]{32}$/.test(code)) throw new Failure('the new enrolment code is not shown', code);
  const command = await shown.getByLabel('Command to start the edge with', { exact: true }).inputValue();
  const expectedCommand = `multistream-node --control-url ${env.baseUrl} --enrolment-code ${code}`;
  if (command !== expectedCommand) throw new Failure(`the edge's command line is not ${expectedCommand}`, command);
  await waitForText(page, '#enrolment-table tbody tr', 'open');
  const codeRows = await texts(page, '#enrolment-table tbody tr');
  if (codeRows.length !== 1 || !/^[0-9a-f]{12} /.test(codeRows[0]) || !codeRows[0].includes('by Ada Admin')) {
    throw new Failure('the code is not listed once, by an opaque id, as made by the administrator', codeRows);
  }
  const expiry = await page.evaluate(async () => {
    const { enrolment_codes: codes } = await (await fetch('/api/v1/enrolment-codes')).json();
    return Date.parse(codes[0].expires_at) - Date.parse(codes[0].created_at);
  });
  if (expiry !== 90 * 60_000) throw new Failure('the code is not valid for the 90 minutes asked for', expiry);
  await shown.getByRole('button', { name: 'Done' }).click();
  await expectFocus(page, 'enrolment-minutes', 'done with the code');
  const shownAfter = await page.evaluate(() => document.documentElement.outerHTML + [...document.querySelectorAll('input, textarea')].map((e) => e.value).join(' '));
  if (shownAfter.includes(code.slice('enrol_'.length))) throw new Failure('the code is still on the page after Done', code);
  ok('an enrolment code is made (a duration out of range refused), shown once with the edge\'s command line, and listed as open');

  // ---- A plugin: a garbage file refused, a signed package uploaded, approved, rolled out ----
  await navigate(page, 'Plugins', 'plugins');
  const pluginForm = page.locator('#plugin-form');
  const packageField = pluginForm.getByLabel('Signed package (.msplugin)', { exact: true });
  await packageField.setInputFiles({ name: 'garbage.msplugin', mimeType: 'application/octet-stream', buffer: Buffer.from('not a package at all') });
  await pluginForm.getByRole('button', { name: 'Upload package' }).click();
  await waitForText(page, '#plugin-form [data-error]', 'Not a multistream plugin package');
  await expectFocus(page, 'plugin-file', 'the refused file');
  if ((await texts(page, '#plugin-table tbody tr')).length !== 0) throw new Failure('a refused package was listed', await texts(page, '#plugin-table tbody tr'));
  ok('a garbage file is refused with the API\'s message on the page');
  const label = `${PLUGIN.name} ${PLUGIN.version}`;
  await packageField.setInputFiles(PLUGIN.path);
  await pluginForm.getByRole('button', { name: 'Upload package' }).click();
  await waitForText(page, '#plugin-table tbody tr', label);
  await waitForStatus(page, `Uploaded ${label}.`);
  const uploadedRow = (await texts(page, '#plugin-table tbody tr'))[0];
  for (const expected of [
    'Polls',
    'Add its own entries to the class record',
    'Show panels to teachers and students',
    `${PLUGIN.signer.slice(0, 12)}…`,
    'not approved',
    'not rolled out',
  ]) {
    if (!uploadedRow.includes(expected)) throw new Failure(`the uploaded package's row does not show "${expected}"`, uploadedRow);
  }
  const signerTitle = await page.locator('#plugin-table tbody tr td:nth-child(3) code').getAttribute('title');
  if (signerTitle !== PLUGIN.signer) throw new Failure('the signer\'s full key is not in its title', signerTitle);
  if (await formError(page, 'plugin-form')) throw new Failure('the earlier refusal is still shown', await formError(page, 'plugin-form'));
  ok('a signed package is uploaded and listed with its manifest in words and its signer');
  await page.getByRole('button', { name: `Approve ${label}` }).click();
  await waitForStatus(page, `Approved ${label}`);
  await waitUntil('the list says approved, and by whom', async () => {
    const [row] = await texts(page, '#plugin-table tbody tr');
    return { ok: row?.includes('approved') && !row.includes('not approved') && row.includes('by Ada Admin'), observed: row };
  });
  // Focus moves to the row's next step, so the keyboard carries on from there.
  await waitUntil('focus is on the Roll out button', async () => {
    const text = await focusedText(page);
    return { ok: text === `Roll out ${label}`, observed: text };
  });
  await page.keyboard.press('Enter');
  await waitForStatus(page, `Rolled out ${label}`);
  await waitUntil('the list says approved and rolled out', async () => {
    const [row] = await texts(page, '#plugin-table tbody tr');
    return { ok: row?.includes('rolled out') && !row.includes('not rolled out') && !row.includes('not approved'), observed: row };
  });
  ok('the package is approved and rolled out (the keyboard carrying on from Approve to Roll out)');

  // ---- A session ----
  await navigate(page, 'Sessions', 'sessions');
  const sessionForm = page.locator('#session-form');
  await waitForText(page, '#session-teacher option', TEACHER.name, 'the course\'s teacher can be chosen');
  await waitForText(page, '#session-edge option', EDGE.name, 'the edge can be chosen');
  // Tomorrow, in the browser's own time zone.
  const day = await page.evaluate(() => {
    const d = new Date(Date.now() + 24 * 3600 * 1000);
    return `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, '0')}-${String(d.getDate()).padStart(2, '0')}`;
  });
  await sessionForm.getByLabel('Course', { exact: true }).selectOption({ label: `${COURSE.code} — ${COURSE.title}` });
  await sessionForm.getByLabel('Title', { exact: true }).fill('Waves');
  await sessionForm.getByLabel('Start', { exact: true }).fill(`${day}T10:00`);
  await sessionForm.getByLabel('End', { exact: true }).fill(`${day}T11:00`);
  await sessionForm.getByLabel('Teacher', { exact: true }).selectOption({ label: TEACHER.name });
  await sessionForm.getByLabel('Home edge', { exact: true }).selectOption({ value: EDGE.id });
  await sessionForm.getByLabel('Room (optional)', { exact: true }).fill('Lab 1');
  await sessionForm.getByLabel('Capacity', { exact: true }).fill('30');
  await sessionForm.getByLabel('Recording', { exact: true }).selectOption('optional');
  await sessionForm.getByLabel('Plugins (optional)', { exact: true }).fill('polls, questions');
  await sessionForm.getByRole('button', { name: 'Schedule' }).click();
  await waitForText(page, '#session-table tbody tr', `Waves ${COURSE.code}`);
  await waitForStatus(page, 'Scheduled “Waves”.');
  const row = await texts(page, '#session-table tbody tr');
  for (const expected of [TEACHER.name, EDGE.name, 'Lab 1', 'scheduled']) {
    if (!row[0].includes(expected)) throw new Failure(`the listed session does not show ${expected}`, row);
  }
  // The local times reached the API as the same instants.
  const times = await page.evaluate(async (d) => {
    const { sessions } = await (await fetch('/api/v1/sessions')).json();
    return {
      startsAt: Date.parse(sessions[0].starts_at),
      endsAt: Date.parse(sessions[0].ends_at),
      expectedStart: new Date(`${d}T10:00`).getTime(),
      expectedEnd: new Date(`${d}T11:00`).getTime(),
    };
  }, day);
  if (times.startsAt !== times.expectedStart || times.endsAt !== times.expectedEnd) {
    throw new Failure('the session\'s times are not the ones entered', times);
  }
  ok('a session is scheduled in the form and listed (local times sent as RFC 3339)');

  // ---- A refusal: an end before the start ----
  await sessionForm.getByLabel('Title', { exact: true }).fill('Backwards');
  await sessionForm.getByLabel('Start', { exact: true }).fill(`${day}T14:00`);
  await sessionForm.getByLabel('End', { exact: true }).fill(`${day}T13:00`);
  await sessionForm.getByRole('button', { name: 'Schedule' }).click();
  await waitForText(page, '#session-form [data-error]', 'The session ends before it starts.');
  await expectFocus(page, 'session-end', 'the refused field');
  const invalid = await page.locator('#session-end').getAttribute('aria-invalid');
  if (invalid !== 'true') throw new Failure('the end field is not marked invalid', invalid);
  const listed = await texts(page, '#session-table tbody tr');
  if (listed.length !== 1) throw new Failure('a refused session was listed', listed);
  ok('an end before the start is refused with the API\'s message, the end field marked');

  // ---- Editing ----
  await page.getByRole('button', { name: 'Edit “Waves”' }).click();
  await waitForText(page, '#session-form-heading', 'Edit “Waves”');
  await expectFocus(page, 'session-title', 'editing starts at the title');
  const filled = await sessionForm.getByLabel('Title', { exact: true }).inputValue();
  if (filled !== 'Waves') throw new Failure('the form does not hold the session', filled);
  const errorLeft = await formError(page, 'session-form');
  if (errorLeft) throw new Failure('the previous refusal is still shown', errorLeft);
  await sessionForm.getByLabel('Title', { exact: true }).fill('Waves and sound');
  await sessionForm.getByLabel('Room (optional)', { exact: true }).fill('Lab 2');
  await sessionForm.getByRole('button', { name: 'Save changes' }).click();
  await waitForText(page, '#session-table tbody tr', 'Waves and sound');
  await waitForStatus(page, 'Saved “Waves and sound”.');
  await waitForText(page, '#session-form-heading', 'Schedule a session');
  const edited = await texts(page, '#session-table tbody tr');
  if (edited.length !== 1 || !edited[0].includes('Lab 2')) throw new Failure('the edit is not listed', edited);
  ok('the session\'s title and room are edited');

  // ---- The teacher's join link opens the class on its edge ----
  await page.getByRole('button', { name: 'Teacher link “Waves and sound”' }).click();
  await page.locator('#teacher-link').waitFor({ state: 'visible', timeout: STEP_TIMEOUT_MS });
  await waitForStatus(page, `A join link for ${TEACHER.name} is ready.`);
  const href = await page.locator('#teacher-link').getAttribute('href');
  if (!href?.startsWith(`${EDGE.url}/s/`) || !href.includes('#token=')) throw new Failure('the join link does not lead to the edge', href);
  const classroom = await context.newPage();
  await classroom.goto(href);
  await classroom.locator('#start-camera').waitFor({ state: 'visible', timeout: STEP_TIMEOUT_MS });
  await classroom.close();
  ok('the teacher\'s join link opens the class on its edge, as its teacher');

  // ---- An API key, shown once, then revoked ----
  await navigate(page, 'API keys', 'keys');
  await page.locator('#key-form').getByLabel('Name', { exact: true }).fill('timetable import');
  await page.getByRole('button', { name: 'Make key' }).click();
  await page.locator('#key-shown').waitFor({ state: 'visible' });
  const key = await page.locator('#key-value').inputValue();
  if (!/^mskey_[0-9a-f]{48}$/.test(key)) throw new Failure('the new key is not shown', key);
  await waitForText(page, '#key-table tbody tr', 'timetable import Ada Admin');
  await page.getByRole('button', { name: 'Done' }).click();
  await page.getByRole('button', { name: 'Revoke the key “timetable import”' }).click();
  await waitForText(page, '#key-table tbody tr', 'revoked');
  await waitForStatus(page, 'Revoked the key “timetable import”.');
  ok('an API key is made, shown once and revoked');

  // ---- Draining the edge ----
  await navigate(page, 'Edges', 'edges');
  await page.getByRole('button', { name: `Drain ${EDGE.name}` }).click();
  await waitForText(page, '#edge-table tbody tr', `${EDGE.name} ${EDGE.id.slice(0, 12)}… draining`);
  await waitForStatus(page, `Draining ${EDGE.name}.`);
  ok('the edge is drained');

  // ---- A phone-sized screen ----
  const phoneContext = await browser.newContext({ viewport: PHONE_VIEWPORT, storageState: await context.storageState() });
  const phone = await openPage('phone', phoneContext, env.baseUrl, '#sessions');
  await waitForText(phone, '#session-table tbody tr', 'Waves and sound');
  const fit = await phone.evaluate(() => ({
    pageWidth: document.documentElement.scrollWidth,
    viewportWidth: window.innerWidth,
    buttonRight: document.getElementById('session-submit').getBoundingClientRect().right,
    // What sticks out, for the failure's report.
    tooWide: [...document.querySelectorAll('body *')]
      .filter((e) => e.getBoundingClientRect().right > window.innerWidth + 1 && !e.closest('.table-wrap'))
      .slice(0, 8)
      .map((e) => `${e.tagName.toLowerCase()}#${e.id}.${e.className} right=${Math.round(e.getBoundingClientRect().right)}`),
  }));
  if (fit.pageWidth > fit.viewportWidth || fit.buttonRight > fit.viewportWidth) {
    throw new Failure('the page does not fit a phone-sized screen', fit);
  }
  ok('a phone-sized screen shows the sessions without scrolling sideways');
  await phoneContext.close();

  // ---- Signing out ----
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.locator('#sign-in-form').waitFor({ state: 'visible' });
  await waitForStatus(page, 'Signed out.');
  const after = await page.evaluate(async () => (await fetch('/api/v1/me')).status);
  if (after !== 401) throw new Failure('the cookie still works after signing out', after);
  ok('signing out ends the session');

  const problems = pages.flatMap(({ label, problems: p }) => p.map((line) => `${label}: ${line}`));
  if (problems.length) throw new Failure('a page threw or broke its policy', problems);
  ok('no page threw or broke its Content-Security-Policy');
}

async function describePages() {
  for (const { label, page, problems } of pages) {
    try {
      const text = await page.evaluate(() => document.querySelector('main')?.innerText ?? '');
      console.error(`--- ${label}: ${page.url()}\n${text.slice(0, 3000)}`);
    } catch {
      console.error(`--- ${label}: (closed)`);
    }
    if (problems.length) console.error(`problems:\n  ${problems.join('\n  ')}`);
  }
}

const deadline = setTimeout(async () => {
  console.error(`not ok - the scenario did not finish within ${TOTAL_TIMEOUT_MS} ms`);
  await describePages();
  process.exit(1);
}, TOTAL_TIMEOUT_MS);

try {
  await run();
  console.log('# the admin UI works in Chromium');
} catch (error) {
  console.error(`not ok - ${error.message}`);
  if (error.observed !== undefined) console.error(`observed: ${JSON.stringify(error.observed, null, 2)}`);
  if (!(error instanceof Failure)) console.error(error.stack);
  await describePages();
  process.exitCode = 1;
} finally {
  clearTimeout(deadline);
  await browser?.close();
}
