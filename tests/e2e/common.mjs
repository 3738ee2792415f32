// Shared by the browser scripts: Chromium's flags on these machines, the failure type, and
// helpers that drive the classroom page (a slide made by the page, a stroke on the whiteboard).

import { createHash } from 'node:crypto';

/** Flags measured to work on these machines (see the browser-e2e notes). */
export const CHROMIUM_ARGS = [
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

/** A failure with what was observed, printed by the script before it exits 1. */
export class Failure extends Error {
  constructor(message, observed) {
    super(message);
    this.observed = observed;
  }
}

/** A PNG drawn by the page's own canvas: a coloured slide with a number, as bytes. */
export async function slidePng(page, number, color) {
  const base64 = await page.evaluate(([n, fill]) => {
    const canvas = document.createElement('canvas');
    canvas.width = 320;
    canvas.height = 180;
    const context = canvas.getContext('2d');
    context.fillStyle = fill;
    context.fillRect(0, 0, 320, 180);
    context.fillStyle = '#ffffff';
    context.font = 'bold 48px sans-serif';
    context.fillText(`Slide ${n}`, 60, 110);
    return canvas.toDataURL('image/png').split(',')[1];
  }, [number, color]);
  return Buffer.from(base64, 'base64');
}

/** Draws a zigzag across the middle of the whiteboard with the mouse (pointer events). */
export async function drawOnBoard(page, timeoutMs = 15_000) {
  const canvas = page.locator('#board-canvas');
  await canvas.waitFor({ state: 'visible', timeout: timeoutMs });
  const box = await canvas.boundingBox();
  if (!box || box.width < 50 || box.height < 50) throw new Failure('the whiteboard has no room to draw on', box);
  const at = (fx, fy) => [box.x + box.width * fx, box.y + box.height * fy];
  await page.mouse.move(...at(0.2, 0.5));
  await page.mouse.down();
  for (const [fx, fy] of [[0.3, 0.3], [0.4, 0.7], [0.5, 0.3], [0.6, 0.7], [0.7, 0.5]]) {
    await page.mouse.move(...at(fx, fy), { steps: 4 });
  }
  await page.mouse.up();
}

export const sha256 = (bytes) => createHash('sha256').update(bytes).digest('hex');

/** Polls `probe` (async, answering `{ok, observed}`) every `intervalMs` until it reports ok;
 * returns the elapsed time and what it last saw, or throws a Failure with that after
 * `timeoutMs`. */
export async function pollUntil(description, timeoutMs, intervalMs, probe) {
  const started = Date.now();
  for (;;) {
    const { ok, observed } = await probe();
    const elapsedMs = Date.now() - started;
    if (ok) return { elapsedMs, observed };
    if (elapsedMs > timeoutMs) throw new Failure(`${description}: not within ${timeoutMs} ms`, observed);
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}

/** Every media connection of a classroom page (window.multistream.pcs()) with its state and
 * RTP counters from getStats: inbound {kind, bytesReceived, packetsReceived, framesDecoded,
 * totalSamplesReceived, packetsLost}, outbound {kind, rid, bytesSent, framesEncoded}, and the
 * transport's ICE/DTLS state and SRTP cipher. */
export function mediaLinks(page) {
  return page.evaluate(async () => {
    const links = [];
    for (const { name, source, direction, pc } of window.multistream?.pcs() ?? []) {
      const inbound = [];
      const outbound = [];
      let transport = null;
      (await pc.getStats()).forEach((report) => {
        if (report.type === 'inbound-rtp') {
          inbound.push({
            kind: report.kind,
            bytesReceived: report.bytesReceived ?? 0,
            packetsReceived: report.packetsReceived ?? 0,
            framesDecoded: report.framesDecoded,
            totalSamplesReceived: report.totalSamplesReceived,
            packetsLost: report.packetsLost,
          });
        } else if (report.type === 'outbound-rtp') {
          outbound.push({ kind: report.kind, rid: report.rid, bytesSent: report.bytesSent ?? 0, framesEncoded: report.framesEncoded });
        } else if (report.type === 'transport') {
          transport = { iceState: report.iceState, dtlsState: report.dtlsState, srtpCipher: report.srtpCipher };
        }
      });
      links.push({ name, source, direction, connectionState: pc.connectionState, transport, inbound, outbound });
    }
    return links;
  });
}

/** Sum of a Prometheus metric over the series whose labels include `labels` (all series when
 * empty), or null when the text has no such series. */
export function metricSum(metricsText, name, labels = {}) {
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

/** GET `${baseUrl}/metrics`: `{text}`, or `{busy: reason}` while the node answers 503 (callers
 * polling treat that as "not yet"); any other refusal is a Failure. */
export async function fetchMetrics(baseUrl) {
  const response = await fetch(`${baseUrl}/metrics`);
  const text = await response.text();
  if (response.status === 503) return { busy: `GET /metrics answered 503: ${text.trim()}` };
  if (!response.ok) throw new Failure(`GET ${baseUrl}/metrics answered ${response.status}`, text.slice(0, 2000));
  return { text };
}
