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
