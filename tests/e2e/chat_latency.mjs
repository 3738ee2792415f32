#!/usr/bin/env node
// Benchmark: chat latency from one browser page to another, in real Chromium. The sender is a
// teacher page, the receiver a student page (joined through an invitation link); they may be
// served by the same node or by two edges of a cluster. The sender writes chat lines through the
// page's own command path (window.multistream.command, what the chat box uses); the receiver's
// page notes when each line's event arrives on its WebSocket. Both pages run in one browser on
// one machine, so their clocks (performance.timeOrigin + performance.now()) agree.
//
//   SENDER_LINK='http://…/s/demo#token=…' RECEIVER_LINK='http://…/s/demo#invite=…' \
//   SAMPLES=200 node tests/e2e/chat_latency.mjs          (CHROMIUM=/path/to/chromium to override)
//
// Prints one JSON line: {"samples":N,"p50_ms":…,"p99_ms":…,"max_ms":…}. Exits 1 on failure.

import { chromium } from 'playwright-core';

import { CHROMIUM_ARGS } from './common.mjs';

/** Lines per second the sender writes: under the client's own limit of 10 commands/s. */
const LINES_PER_SECOND = 8;
/** Bound on one line arriving; far above any real latency. */
const LINE_TIMEOUT_MS = 10_000;
const PAGE_TIMEOUT_MS = 15_000;

function fail(message) {
  console.error(`chat_latency: ${message}`);
  process.exit(1);
}

const senderLink = process.env.SENDER_LINK;
const receiverLink = process.env.RECEIVER_LINK;
const samples = Number(process.env.SAMPLES ?? 200);
if (!senderLink?.includes('#token=')) fail('SENDER_LINK must be a teacher link with #token=');
if (!receiverLink?.includes('#invite=')) fail('RECEIVER_LINK must be an invitation link with #invite=');
if (!Number.isInteger(samples) || samples < 10) fail('SAMPLES must be an integer of at least 10');

/** Runs in the receiver page before its scripts: notes when each chat event arrives. */
function noteChatArrivals() {
  window.__chatArrivals = new Map();
  const Native = window.WebSocket;
  window.WebSocket = class extends Native {
    constructor(...args) {
      super(...args);
      this.addEventListener('message', (message) => {
        const at = performance.timeOrigin + performance.now();
        try {
          const parsed = JSON.parse(message.data);
          const body = parsed?.event?.body;
          if (parsed?.type === 'event' && body?.type === 'chat') window.__chatArrivals.set(body.text, at);
        } catch {
          // Not JSON: not ours to time.
        }
      });
    }
  };
}

const ready = () => window.multistream?.state().connected && window.multistream.state().synced
  && Boolean(window.multistream.state().you);

let browser;
try {
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: CHROMIUM_ARGS,
  });
} catch (error) {
  fail(`Chromium could not be launched: ${error.message.split('\n')[0]}`);
}
try {
  const sender = await (await browser.newContext()).newPage();
  await sender.goto(senderLink, { timeout: PAGE_TIMEOUT_MS });
  await sender.waitForFunction(ready, null, { timeout: PAGE_TIMEOUT_MS });
  const receiverContext = await browser.newContext();
  await receiverContext.addInitScript(noteChatArrivals);
  const receiver = await receiverContext.newPage();
  await receiver.goto(receiverLink, { timeout: PAGE_TIMEOUT_MS });
  await receiver.locator('#name').fill('Latency Probe', { timeout: PAGE_TIMEOUT_MS });
  await receiver.locator('#join-submit').click({ timeout: PAGE_TIMEOUT_MS });
  await receiver.waitForFunction(ready, null, { timeout: PAGE_TIMEOUT_MS });

  const delays = [];
  const started = Date.now();
  for (let n = 0; n < samples; n += 1) {
    // Paced from the start time, so a slow line does not shift the rest.
    const due = started + (n * 1000) / LINES_PER_SECOND;
    const wait = due - Date.now();
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
    const text = `latency probe ${n} ${Math.random().toString(36).slice(2)}`;
    const sentAt = await sender.evaluate((line) => {
      const at = performance.timeOrigin + performance.now();
      window.multistream.command({ type: 'chat', text: line });
      return at;
    }, text);
    const handle = await receiver.waitForFunction(
      (line) => window.__chatArrivals.get(line) ?? false,
      text,
      { timeout: LINE_TIMEOUT_MS, polling: 'raf' },
    );
    delays.push((await handle.jsonValue()) - sentAt);
  }
  delays.sort((a, b) => a - b);
  const pick = (q) => delays[Math.min(delays.length - 1, Math.floor(delays.length * q))];
  console.log(JSON.stringify({
    samples: delays.length,
    p50_ms: Number(pick(0.5).toFixed(2)),
    p99_ms: Number(pick(0.99).toFixed(2)),
    max_ms: Number(delays[delays.length - 1].toFixed(2)),
  }));
} catch (error) {
  fail(error.message.split('\n')[0]);
} finally {
  await browser.close();
}
