#!/usr/bin/env node
// Browser end-to-end test of the feature plugins built into the node (polls and Q&A), in real
// Chromium driven by playwright-core, against a node that is already running. A teacher and two
// students join (the second on a phone-sized screen, voting with the keyboard). Through the
// pages' own controls: the teacher switches Polls on under "Features", creates a single-choice
// poll with three answers and opens it; both students vote for different answers and one
// changes their vote; the teacher's panel shows the exact live counts (with names); the teacher
// shows the results and the students see the bars (without names). Then Q&A: an empty question
// is refused and the refusal shows in the asker's panel; each student asks, the second upvotes
// the first's question; the teacher sees them sorted by votes and marks the first answered, and
// the students' lists follow. A reloaded student gets both panels back from the snapshot. Every
// page stays in step with the class log (the events not addressed to it arrive as `hidden`), and
// no page throws or breaks its Content-Security-Policy.
//
//   MULTISTREAM_URL=http://127.0.0.1:PORT \
//   TEACHER_LINK='http://127.0.0.1:PORT/s/demo#token=…' \
//   STUDENT_LINK='http://127.0.0.1:PORT/s/demo#invite=…' \
//   node tests/e2e/plugins.mjs            (CHROMIUM=/path/to/chromium to override)
//
// Every wait polls for a condition with a bound; nothing sleeps and hopes. Prints one line per
// step ("ok - …"); on failure prints what was expected, what each page showed, and exits 1.

import { chromium } from 'playwright-core';

import { CHROMIUM_ARGS, Failure } from './common.mjs';

/** The whole run, launch to close; a normal run takes about 10 s on 2 busy cores. */
const TOTAL_TIMEOUT_MS = 90_000;
/** Bound on a page loading or a step in the join flow. */
const PAGE_TIMEOUT_MS = 15_000;
/** Bound on a class change (a command, the plugin's answer, its view) reaching every page; on
 * loopback it takes milliseconds. */
const CLASS_TIMEOUT_MS = 10_000;
/** How often conditions are polled. */
const POLL_INTERVAL_MS = 100;
/** How much of each page's console is printed on failure. */
const CONSOLE_LINES_MAX = 40;
/** A phone in portrait: the second student's screen. */
const PHONE_VIEWPORT = { width: 390, height: 844 };

const QUESTION = 'Which city is the capital of France?';
const ANSWERS = ['Paris', 'Lyon', 'Marseille'];
const SKY = 'Why is the sky blue?';
const PHOTON = 'What is a photon?';

const pages = new Map(); // label -> {page, console: string[], errors: string[]}
let browser = null;

function environment() {
  const missing = ['MULTISTREAM_URL', 'TEACHER_LINK', 'STUDENT_LINK'].filter((name) => !process.env[name]);
  if (missing.length) {
    throw new Failure(`missing environment: ${missing.join(', ')} (see the header of tests/e2e/plugins.mjs)`);
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

async function openPage(label, url, viewport = undefined) {
  const context = await browser.newContext({ viewport, ignoreHTTPSErrors: process.env.MULTISTREAM_URL?.startsWith('https:') });
  const page = await context.newPage();
  const record = { page, console: [], errors: [] };
  page.on('console', (message) => {
    record.console.push(`[${message.type()}] ${message.text()}`);
    // The node serves a strict Content-Security-Policy: anything it blocks is a client bug
    // (a bar's width set as a style attribute would be).
    if (/Content Security Policy/i.test(message.text())) record.errors.push(`CSP: ${message.text()}`);
    if (record.console.length > CONSOLE_LINES_MAX) record.console.shift();
  });
  page.on('pageerror', (error) => record.errors.push(String(error.stack || error)));
  pages.set(label, record);
  await page.goto(url, { timeout: PAGE_TIMEOUT_MS });
  return page;
}

/** What a page shows of the features and their panels: printed when a step fails. */
function pluginView(page) {
  return page.evaluate(() => {
    const state = window.multistream?.state() ?? {};
    const panels = [...document.querySelectorAll('#plugin-panels > section.plugin-panel')].map((panel) => ({
      plugin: panel.dataset.plugin,
      title: panel.querySelector('.plugin-title')?.textContent,
      health: panel.querySelector('.plugin-health')?.textContent || null,
      notice: panel.querySelector('.plugin-notice-text')?.textContent || null,
      seq: panel.querySelector('.plugin-view')?.dataset.seq,
      text: panel.querySelector('.plugin-view')?.innerText.split('\n').filter(Boolean),
    }));
    const switches = [...document.querySelectorAll('#features-list button[role="switch"]')]
      .map((button) => `${button.dataset.plugin}=${button.getAttribute('aria-checked')}${button.getAttribute('aria-disabled') === 'true' ? ' (busy)' : ''}`);
    return {
      connected: state.connected,
      synced: state.synced,
      seq: state.seq,
      resyncs: state.resyncs,
      you: state.you?.name,
      plugins: Object.fromEntries(Object.entries(state.plugins ?? {}).map(([name, p]) => [name, { enabled: p.enabled, health: p.health, seq: p.seq }])),
      features: state.features,
      switches,
      featuresStatus: document.getElementById('features-status')?.textContent || null,
      panels,
      notice: state.notice || null,
      lastRefusal: state.lastRefusal,
      alert: document.getElementById('alert')?.textContent || null,
      status: document.getElementById('status')?.textContent ?? null,
    };
  }).catch((error) => ({ error: error.message }));
}

/** Waits, inside the page, for `predicate(arg)` to hold. On timeout, fails with what was
 * expected and what the page showed. */
async function waitInPage(label, page, expected, predicate, arg) {
  const started = Date.now();
  try {
    await page.waitForFunction(predicate, arg, { timeout: CLASS_TIMEOUT_MS, polling: POLL_INTERVAL_MS });
  } catch (error) {
    throw new Failure(`${label}: expected ${expected}; not within ${CLASS_TIMEOUT_MS} ms (${error.message.split('\n')[0]})`,
      await pluginView(page));
  }
  return Date.now() - started;
}

const panel = (page, plugin) => page.locator(`#plugin-panels > section.plugin-panel[data-plugin="${plugin}"]`);

/** Waits until a page's panel shows exactly `rows` in its first bar chart: ["Paris — 1", …]. */
function waitForBars(label, page, plugin, rows, extra = '') {
  return waitInPage(label, page, `the ${plugin} panel's bars to read ${JSON.stringify(rows)}${extra ? ` ${extra}` : ''}`,
    ([name, expected]) => {
      const bars = document.querySelector(`#plugin-panels > section[data-plugin="${name}"] .plugin-bars`);
      const shown = bars ? [...bars.querySelectorAll('li .bar-text')].map((text) => text.textContent) : null;
      return JSON.stringify(shown) === JSON.stringify(expected);
    }, [plugin, rows]);
}

/** Waits until a page's Q&A panel shows exactly `lists`: [[[text, note], …] per list, in order]. */
function waitForLists(label, page, lists, description) {
  return waitInPage(label, page, `${description}: lists ${JSON.stringify(lists)}`,
    (expected) => {
      const section = document.querySelector('#plugin-panels > section[data-plugin="qa"]');
      const shown = section ? [...section.querySelectorAll('ul.plugin-list')].map((list) => [...list.querySelectorAll('li:not(.empty)')]
        .map((item) => [item.querySelector('.item-text')?.textContent ?? '', item.querySelector('.item-note')?.textContent ?? ''])) : null;
      return JSON.stringify(shown) === JSON.stringify(expected);
    }, lists);
}

async function joinAsStudent(label, env, name, viewport) {
  const page = await openPage(label, env.studentLink, viewport);
  await page.locator('#name').fill(name, { timeout: PAGE_TIMEOUT_MS });
  await page.locator('#join-submit').click({ timeout: PAGE_TIMEOUT_MS });
  await waitInPage(label, page, 'to be in the class with its state (a snapshot)', () => window.multistream.state().synced);
  return page;
}

async function switchFeature(teacher, plugin, everyone) {
  const toggle = teacher.locator(`#features-list button[role="switch"][data-plugin="${plugin}"]`);
  await toggle.click({ timeout: PAGE_TIMEOUT_MS });
  await waitInPage('teacher', teacher, `the ${plugin} switch to be on (aria-checked=true, not busy)`,
    (name) => {
      const button = document.querySelector(`#features-list button[role="switch"][data-plugin="${name}"]`);
      return button?.getAttribute('aria-checked') === 'true' && button.getAttribute('aria-disabled') !== 'true';
    }, plugin);
  for (const [label, page] of everyone) {
    await waitInPage(label, page, `a ${plugin} panel with its first view`,
      (name) => {
        const section = document.querySelector(`#plugin-panels > section[data-plugin="${name}"]`);
        return Boolean(section) && Number(section.querySelector('.plugin-view')?.dataset.seq) > 0;
      }, plugin);
  }
}

async function pollsScenario(teacher, studentOne, studentTwo, everyone) {
  await switchFeature(teacher, 'polls', everyone);
  const teacherPolls = panel(teacher, 'polls');
  const title = await teacherPolls.locator('h2.plugin-title').textContent();
  if (title !== 'Polls') throw new Failure(`the polls panel is titled ${JSON.stringify(title)}, expected "Polls"`, await pluginView(teacher));
  for (const [label, page] of [['student one', studentOne], ['student two', studentTwo]]) {
    await waitInPage(label, page, 'the polls panel to say "No poll is open."',
      () => document.querySelector('#plugin-panels > section[data-plugin="polls"] .plugin-view')?.textContent.includes('No poll is open.'));
  }
  console.log('ok - the teacher switched Polls on under "Features"; every page shows a Polls panel');

  await teacherPolls.getByLabel('Question', { exact: true }).fill(QUESTION, { timeout: PAGE_TIMEOUT_MS });
  await teacherPolls.getByLabel('Answers, one per line').fill(ANSWERS.join('\n'));
  await teacherPolls.getByRole('button', { name: 'Create poll' }).click();
  await waitInPage('teacher', teacher, `the new poll "${QUESTION} (not open yet)" and an emptied form`,
    (question) => {
      const section = document.querySelector('#plugin-panels > section[data-plugin="polls"]');
      const headings = [...section.querySelectorAll('h3.plugin-heading')].map((h) => h.textContent);
      return headings.includes(`${question} (not open yet)`) && section.querySelector('form.plugin-form input[type="text"]')?.value === '';
    }, QUESTION);
  await waitForBars('teacher', teacher, 'polls', ANSWERS.map((answer) => `${answer} — 0`), 'before anyone voted');
  console.log(`ok - the teacher created the poll "${QUESTION}" with ${ANSWERS.length} answers`);

  await teacherPolls.locator('button.plugin-button[data-action="open"]').click({ timeout: PAGE_TIMEOUT_MS });
  for (const [label, page] of [['student one', studentOne], ['student two', studentTwo]]) {
    await waitInPage(label, page, `radio buttons ${JSON.stringify(ANSWERS)} under "${QUESTION}", and no results`,
      ([question, answers]) => {
        const section = document.querySelector('#plugin-panels > section[data-plugin="polls"]');
        const form = section?.querySelector('form.plugin-choices[data-action="vote"]');
        const labels = form ? [...form.querySelectorAll('label.plugin-option')].map((label) => label.textContent) : [];
        return section.querySelector('h3.plugin-heading')?.textContent === question
          && form.querySelectorAll('input[type="radio"]').length === answers.length
          && JSON.stringify(labels) === JSON.stringify(answers)
          && form.querySelector('button[type="submit"]')?.textContent === 'Vote'
          && !section.querySelector('.plugin-bars');
      }, [QUESTION, ANSWERS]);
  }
  console.log('ok - the teacher opened the poll; both students see its answers as radio buttons');

  // Student one votes with the mouse.
  const onePolls = panel(studentOne, 'polls');
  await onePolls.getByLabel('Paris', { exact: true }).check({ timeout: PAGE_TIMEOUT_MS });
  await onePolls.getByRole('button', { name: 'Vote', exact: true }).click();
  await waitInPage('student one', studentOne, 'Paris still chosen and the button now "Change my vote"',
    () => {
      const form = document.querySelector('#plugin-panels > section[data-plugin="polls"] form.plugin-choices');
      return form?.querySelector('input[value="0"]')?.checked && form.querySelector('button[type="submit"]')?.textContent === 'Change my vote';
    });
  await waitForBars('teacher', teacher, 'polls', ['Paris — 1', 'Lyon — 0', 'Marseille — 0'], 'after student one\'s vote');

  // Student two, on a phone, votes with the keyboard: focus the answer, Space, Tab, Enter.
  const twoPolls = panel(studentTwo, 'polls');
  await twoPolls.getByLabel('Lyon', { exact: true }).focus({ timeout: PAGE_TIMEOUT_MS });
  await studentTwo.keyboard.press('Space');
  await studentTwo.keyboard.press('Tab');
  const focused = await studentTwo.evaluate(() => document.activeElement?.textContent);
  if (focused !== 'Vote') throw new Failure(`after Tab from an answer, the focus is on ${JSON.stringify(focused)}, expected the "Vote" button`, await pluginView(studentTwo));
  await studentTwo.keyboard.press('Enter');
  await waitForBars('teacher', teacher, 'polls', ['Paris — 1', 'Lyon — 1', 'Marseille — 0'], 'after student two\'s vote');
  console.log('ok - student one voted Paris with the mouse, student two Lyon with the keyboard; the teacher\'s counts follow live');

  await onePolls.getByLabel('Marseille', { exact: true }).check({ timeout: PAGE_TIMEOUT_MS });
  await onePolls.getByRole('button', { name: 'Change my vote' }).click();
  await waitForBars('teacher', teacher, 'polls', ['Paris — 0', 'Lyon — 1', 'Marseille — 1'], 'after student one changed their vote');
  await waitInPage('teacher', teacher, 'the voters\' names under their answers and "Total: 2"',
    () => {
      const rows = [...document.querySelectorAll('#plugin-panels > section[data-plugin="polls"] .plugin-bars li')];
      const names = Object.fromEntries(rows.map((row) => [row.dataset.label, row.querySelector('.bar-names')?.textContent ?? '']));
      const total = document.querySelector('#plugin-panels > section[data-plugin="polls"] .bar-total')?.textContent;
      return names.Paris === '' && names.Lyon === 'Student Two' && names.Marseille === 'Student One' && total === 'Total: 2';
    });
  for (const [label, page] of [['student one', studentOne], ['student two', studentTwo]]) {
    if (await panel(page, 'polls').locator('.plugin-bars').count()) {
      throw new Failure(`${label} sees results before the teacher showed them`, await pluginView(page));
    }
  }
  console.log('ok - student one changed their vote to Marseille: the teacher sees exactly Paris 0, Lyon 1, Marseille 1 (total 2, with names); students see no results yet');

  await teacherPolls.locator('button.plugin-button[data-action="show_results"]').click({ timeout: PAGE_TIMEOUT_MS });
  for (const [label, page] of [['student one', studentOne], ['student two', studentTwo]]) {
    await waitForBars(label, page, 'polls', ['Paris — 0', 'Lyon — 1', 'Marseille — 1'], 'once the teacher shows the results');
    const names = await panel(page, 'polls').locator('.bar-names').count();
    if (names) throw new Failure(`${label} sees who voted for what; students never should`, await pluginView(page));
    const width = await panel(page, 'polls').locator('.plugin-bars li[data-label="Lyon"] .bar-fill').evaluate((fill) => fill.getBoundingClientRect().width);
    if (!(width > 0)) throw new Failure(`${label}'s bar for Lyon has no width`, { width, page: await pluginView(page) });
  }
  await waitInPage('student one', studentOne, 'their own vote (Marseille) still chosen', () =>
    document.querySelector('#plugin-panels > section[data-plugin="polls"] form.plugin-choices input[value="2"]')?.checked === true);
  console.log('ok - the teacher showed the results: both students see the bars (Lyon 1, Marseille 1), without names');
}

async function qaScenario(teacher, studentOne, studentTwo, everyone) {
  await switchFeature(teacher, 'qa', everyone);
  await waitInPage('teacher', teacher, 'the Q&A panel titled "Q&A" with "0 open questions, 0 answered"',
    () => {
      const section = document.querySelector('#plugin-panels > section[data-plugin="qa"]');
      return section?.querySelector('h2.plugin-title')?.textContent === 'Q&A'
        && section.querySelector('h3.plugin-heading')?.textContent === '0 open questions, 0 answered';
    });
  const panels = await teacher.evaluate(() => [...document.querySelectorAll('#plugin-panels > section')].map((s) => s.dataset.plugin));
  if (JSON.stringify(panels) !== '["polls","qa"]') throw new Failure(`the teacher's panels are ${JSON.stringify(panels)}, expected ["polls","qa"]`, await pluginView(teacher));
  console.log('ok - the teacher switched Q&A on; its panel appears beside Polls on every page');

  // An empty question: the plugin refuses it, and the refusal shows in the asker's panel.
  const twoQa = panel(studentTwo, 'qa');
  await twoQa.getByRole('button', { name: 'Ask', exact: true }).click({ timeout: PAGE_TIMEOUT_MS });
  await waitInPage('student two', studentTwo, 'the notice "the question is empty" in the Q&A panel (role=alert)',
    () => {
      const notice = document.querySelector('#plugin-panels > section[data-plugin="qa"] .plugin-notice-text');
      return notice?.getAttribute('role') === 'alert' && /question is empty/.test(notice.textContent);
    });
  console.log('ok - an empty question is refused by the plugin, and student two\'s Q&A panel says why');

  const oneQa = panel(studentOne, 'qa');
  await oneQa.getByLabel('Your question').fill(SKY, { timeout: PAGE_TIMEOUT_MS });
  await oneQa.getByRole('button', { name: 'Ask', exact: true }).click();
  await waitForLists('student one', studentOne, [[[SKY, '0 votes']]], 'their question listed');
  // Student two asks with the keyboard: Enter in the field sends the form.
  await twoQa.getByLabel('Your question').fill(PHOTON, { timeout: PAGE_TIMEOUT_MS });
  await twoQa.getByLabel('Your question').press('Enter');
  await waitForLists('student two', studentTwo, [[[SKY, '0 votes'], [PHOTON, '0 votes']]], 'both questions, oldest first');
  const upvote = twoQa.locator('ul.plugin-list li').filter({ hasText: SKY }).getByRole('button', { name: /^Upvote\b/ });
  await upvote.click({ timeout: PAGE_TIMEOUT_MS });
  await waitForLists('teacher', teacher, [[[SKY, 'Student One · 1 vote'], [PHOTON, 'Student Two · 0 votes']]],
    'the questions sorted by votes, student one\'s first with 1 vote');
  await waitForLists('student two', studentTwo, [[[SKY, '1 vote · you upvoted'], [PHOTON, '0 votes']]], 'their upvote marked');
  console.log('ok - both students asked; student two upvoted student one\'s question; the teacher sees it first with 1 vote');

  await panel(teacher, 'qa').locator('ul.plugin-list li').filter({ hasText: SKY })
    .locator('button[data-action="answer"]').click({ timeout: PAGE_TIMEOUT_MS });
  await waitForLists('teacher', teacher, [[[PHOTON, 'Student Two · 0 votes']]], 'only the open question left');
  await waitInPage('teacher', teacher, 'the heading "1 open questions, 1 answered"', () =>
    document.querySelector('#plugin-panels > section[data-plugin="qa"] h3.plugin-heading')?.textContent === '1 open questions, 1 answered');
  await waitForLists('student one', studentOne, [[[PHOTON, '0 votes']], [[SKY, 'answered']]], 'the answered question moved under "Answered"');
  await waitForLists('student two', studentTwo, [[[PHOTON, '0 votes']], [[SKY, 'answered']]], 'the answered question moved under "Answered"');
  console.log('ok - the teacher marked student one\'s question answered; both students\' lists show it under "Answered"');
}

async function run() {
  const env = environment();

  let offered;
  try {
    const response = await fetch(`${env.baseUrl}/api/plugins`);
    if (!response.ok) throw new Error(`status ${response.status}: ${await response.text()}`);
    offered = (await response.json()).plugins?.map((plugin) => plugin.name) ?? [];
  } catch (error) {
    throw new Failure(`GET ${env.baseUrl}/api/plugins failed (${error.cause?.message ?? error.message})`);
  }
  if (!offered.includes('polls') || !offered.includes('qa')) {
    throw new Failure('the node does not offer the built-in plugins: expected polls and qa in GET /api/plugins', offered);
  }
  console.log(`ok - the node offers the plugins ${offered.join(', ')}`);

  try {
    browser = await chromium.launch({ executablePath: env.chromiumPath, headless: true, args: CHROMIUM_ARGS, timeout: PAGE_TIMEOUT_MS });
  } catch (error) {
    throw new Failure(`Chromium could not be launched from ${env.chromiumPath}: ${error.message.split('\n')[0]}\n`
      + 'Install it with `apt-get install -y chromium`, or set CHROMIUM to its path.');
  }
  console.log(`ok - launched Chromium ${browser.version()}`);

  const teacher = await openPage('teacher', env.teacherLink);
  await waitInPage('teacher', teacher, 'to be in the class with its state (a snapshot)', () => window.multistream.state().synced);
  await waitInPage('teacher', teacher, 'a "Features" list with an off switch for Polls and one for Q&A',
    () => {
      const switches = [...document.querySelectorAll('#features-list button[role="switch"]')];
      const by = Object.fromEntries(switches.map((button) => [button.dataset.plugin, button]));
      return !document.getElementById('features').hidden
        && by.polls?.getAttribute('aria-checked') === 'false' && by.polls.textContent.includes('Polls')
        && by.qa?.getAttribute('aria-checked') === 'false' && by.qa.textContent.includes('Q&A');
    });
  const [studentOne, studentTwo] = await Promise.all([
    joinAsStudent('student one', env, 'Student One'),
    joinAsStudent('student two', env, 'Student Two', PHONE_VIEWPORT),
  ]);
  for (const [label, page] of [['student one', studentOne], ['student two', studentTwo]]) {
    if (await page.locator('#features').isVisible()) throw new Failure(`${label} sees the teacher's "Features" switches`, await pluginView(page));
  }
  console.log('ok - the teacher sees "Features" with Polls and Q&A switched off; two students joined (one on a phone-sized screen)');

  const everyone = [['teacher', teacher], ['student one', studentOne], ['student two', studentTwo]];
  await pollsScenario(teacher, studentOne, studentTwo, everyone);
  await qaScenario(teacher, studentOne, studentTwo, everyone);

  // Every page is at the same place in the class log: the events not addressed to a page (the
  // plugins' own records, other people's panels) came as `hidden` and kept it in step.
  const teacherSeq = await teacher.evaluate(() => window.multistream.state().seq);
  for (const [label, page] of everyone) {
    await waitInPage(label, page, `to be at event ${teacherSeq} (or later) without ever starting over`,
      (seq) => window.multistream.state().seq >= seq && window.multistream.state().resyncs === 0, teacherSeq);
  }
  console.log(`ok - every page followed the class log to event ${teacherSeq} without a gap (hidden events counted in order)`);

  const overflow = await studentTwo.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  if (overflow > 0) throw new Failure(`on a ${PHONE_VIEWPORT.width} px wide screen the page is ${overflow} px too wide`, await pluginView(studentTwo));
  console.log(`ok - the panels fit a ${PHONE_VIEWPORT.width} px wide phone screen`);

  await studentOne.reload({ timeout: PAGE_TIMEOUT_MS });
  const reloadMs = await waitInPage('student one', studentOne, 'both panels back after a reload: the results and their own vote, the answered question',
    () => {
      const state = window.multistream.state();
      const polls = document.querySelector('#plugin-panels > section[data-plugin="polls"]');
      const qa = document.querySelector('#plugin-panels > section[data-plugin="qa"]');
      return state.synced && polls?.querySelector('form.plugin-choices input[value="2"]')?.checked === true
        && polls.querySelector('.plugin-bars li[data-label="Marseille"]')?.dataset.value === '1'
        && [...(qa?.querySelectorAll('.item-note') ?? [])].some((note) => note.textContent === 'answered');
    });
  console.log(`ok - student one reloaded and got both panels back from the snapshot (${reloadMs} ms)`);

  for (const [label, record] of pages) {
    if (record.errors.length) throw new Failure(`uncaught errors (or CSP violations) in the ${label} page`, record.errors);
  }
  console.log('ok - no uncaught errors or CSP violations in any page');
  await browser.close();
  browser = null;
}

async function report(error) {
  console.log(`not ok - ${error.message}`);
  if (error.observed !== undefined) console.log(`observed:\n${JSON.stringify(error.observed, null, 2)}`);
  else if (!(error instanceof Failure)) console.log(error.stack);
  // Best effort: what every page shows and its console, bounded so a hung browser cannot stall.
  for (const [label, record] of pages) {
    const state = await Promise.race([pluginView(record.page), delay(3_000).then(() => ({ error: 'page did not answer' }))]);
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
  console.log(`ok - plugins end-to-end test passed in ${((Date.now() - startedAt) / 1000).toFixed(1)} s`);
} catch (error) {
  clearTimeout(overall);
  await report(error);
  await shutdown(1);
}
