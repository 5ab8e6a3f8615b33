#!/usr/bin/env node
// Renders the Pack Monitor dashboard in headless Chromium (playwright-core + Debian's chromium, no
// browser download), driven step by step so a test can publish MQTT messages while the page is open:
//
//   node render.js URL
//   stdin, one JSON object per line:  {"expect": ["3.312 V", ...], "absent": ["62.5 %"], "screenshot": "out.png",
//                                      "reload": false, "click": "css selector", "timeout": 30}
//   stdout, one JSON line per step:   {"ok", "missing", "text", "charts", "notifications", "weakestRows",
//                                      "outputLevels", "resetButtons", "pageErrors"}
//
// Prints {"ready": true} once the page has loaded. A step waits until every expected text is on the
// page (texts of the echarts charts count: echarts writes a chart's data into an aria-label) and every
// "absent" text is gone from the page's text, then
// takes the screenshot (also when texts are missing, to see why). Exits when stdin closes.
// playwright-core is looked up in PACKMON_NODE_RED_DIR (the folder tools/node-red/install.sh fills).
'use strict';
const path = require('path');
const os = require('os');
const readline = require('readline');

function loadPlaywright() {
  const dir = process.env.PACKMON_NODE_RED_DIR || path.join(os.homedir(), '.cache', 'packmonitor-node-red');
  try {
    return require(path.join(dir, 'node_modules', 'playwright-core'));
  } catch (e) {
    return require('playwright-core');
  }
}

function say(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

async function snapshot(page) {
  return page.evaluate(() => ({
    text: document.body.innerText,
    charts: Array.from(document.querySelectorAll('[aria-label]'))
      .map((e) => e.getAttribute('aria-label'))
      .filter((s) => s && s.startsWith('This is a chart')),
    notifications: Array.from(document.querySelectorAll('.v-snackbar__content, .nrdb-ui-notification'))
      .map((e) => e.innerText.trim())
      .filter(Boolean),
    // what colour/highlight says and text alone does not: the highlighted health rows, output levels
    weakestRows: Array.from(document.querySelectorAll('tr[data-weakest="true"]')).map((e) => e.getAttribute('data-pack')),
    resetButtons: Array.from(document.querySelectorAll('[data-output] button')).map((b) =>
      b.closest('[data-output]').getAttribute('data-output')
    ),
    outputLevels: Object.fromEntries(
      Array.from(document.querySelectorAll('[data-output]')).map((e) => [e.getAttribute('data-output'), e.getAttribute('data-level')])
    ),
  }));
}

async function step(page, cmd, errors) {
  const timeout = (cmd.timeout || 30) * 1000;
  const expect = cmd.expect || [];
  const absent = cmd.absent || [];
  const deadline = Date.now() + timeout;
  if (cmd.reload) {
    // a browser opening the page now: the widgets replay their stored messages (and echarts writes the
    // aria-label of a chart whose data came while the page was open only when it is drawn afresh)
    await page.reload({ waitUntil: 'domcontentloaded', timeout: timeout });
    await page.waitForSelector('text=Pack Monitor', { timeout: timeout });
  }
  if (cmd.click) await page.click(cmd.click, { timeout: timeout });
  let snap = await snapshot(page);
  let missing = expect;
  let present = absent;
  for (;;) {
    const all = [snap.text].concat(snap.charts, snap.notifications).join('\n');
    missing = expect.filter((t) => !all.includes(t));
    present = absent.filter((t) => snap.text.includes(t));
    if ((!missing.length && !present.length) || Date.now() > deadline) break;
    await page.waitForTimeout(200);
    snap = await snapshot(page);
  }
  if (cmd.screenshot) {
    await page.waitForTimeout(cmd.settle_ms === undefined ? 1500 : cmd.settle_ms); // chart animations
    await page.screenshot({ path: cmd.screenshot, fullPage: true });
  }
  return Object.assign({ ok: missing.length === 0 && present.length === 0, missing: missing, present: present, pageErrors: errors.slice() }, snap);
}

async function main() {
  const url = process.argv[2];
  if (!url) throw new Error('usage: render.js URL  (steps as JSON lines on stdin)');
  const { chromium } = loadPlaywright();
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
  try {
    const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
    const errors = [];
    page.on('pageerror', (e) => errors.push(String(e)));
    await page.goto(url, { waitUntil: 'domcontentloaded', timeout: 60000 });
    await page.waitForSelector('text=Pack Monitor', { timeout: 60000 });
    say({ ready: true });
    const rl = readline.createInterface({ input: process.stdin });
    for await (const line of rl) {
      if (!line.trim()) continue;
      say(await step(page, JSON.parse(line), errors));
    }
  } finally {
    await browser.close();
  }
}

main().catch((e) => {
  say({ ok: false, error: String(e && e.stack ? e.stack : e) });
  process.exit(2);
});
