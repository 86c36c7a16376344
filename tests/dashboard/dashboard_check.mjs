// Drives the aggregator dashboard in headless Chromium over the DevTools protocol (no npm
// packages: Node's WebSocket, run with `node --experimental-websocket` on Node 20).
//
// Checks: the page loads with no console errors, uncaught exceptions or failed requests; the live
// numbers change while a fleet runs; the devices table is paginated (never all devices at once).
// Optionally writes a screenshot and measures time to first render and update latency.
//
// Usage: node --experimental-websocket dashboard_check.mjs --url URL [--chromium BIN]
//          [--min-devices N] [--screenshot FILE] [--width 1600 --height 1000]
//          [--measure SECONDS] [--timeout SECONDS] [--no-change-check]
//          [--device ID [--min-sensors N] [--device-screenshot FILE]] [--cluster-members N]
// With --device: the device page (#/device/ID, opened by clicking the device's row) must show at
// least N sensors with a value and a sparkline each, refresh, and cost a bounded number of
// requests (3 per 2 s refresh, whatever the fleet size); "back" returns to the overview.
// With --cluster-members: the Cluster panel must show N members (the process role's group).
// Prints one JSON line with the results; exit 0 when every check passed, 1 otherwise.
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const args = Object.fromEntries(process.argv.slice(2).reduce((acc, a, i, all) => {
  if (a.startsWith('--')) acc.push([a.slice(2), all[i + 1] && !all[i + 1].startsWith('--') ? all[i + 1] : 'true']);
  return acc;
}, []));
const url = args.url;
if (!url) { console.error('--url is required'); process.exit(2); }
const chromiumBin = args.chromium || 'chromium';
const minDevices = Number(args['min-devices'] || 1);
const timeoutS = Number(args.timeout || 40);
const measureS = Number(args.measure || 0);
const width = Number(args.width || 1600), height = Number(args.height || 1000);

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const deadline = Date.now() + timeoutS * 1000 + measureS * 1000;
const failures = [];
const consoleErrors = [];
const profile = mkdtempSync(join(tmpdir(), 'outpost-chromium-'));
const chrome = spawn(chromiumBin, [
  '--headless=new', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--no-first-run',
  '--no-default-browser-check', '--disable-extensions', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--metrics-recording-only', '--mute-audio',
  `--user-data-dir=${profile}`, '--remote-debugging-port=0', '--remote-debugging-address=127.0.0.1',
  `--window-size=${width},${height}`, 'about:blank',
], { stdio: ['ignore', 'ignore', 'pipe'] });
let chromeErr = '';
chrome.stderr.on('data', (d) => { chromeErr += d; if (chromeErr.length > 20000) chromeErr = chromeErr.slice(-10000); });

function finish(code, result) {
  try { chrome.kill('SIGTERM'); } catch (e) { /* gone */ }
  setTimeout(() => { try { chrome.kill('SIGKILL'); } catch (e) { /* gone */ } rmSync(profile, { recursive: true, force: true }); process.exit(code); }, 1500);
  console.log(JSON.stringify(result));
}
const watchdog = setTimeout(() => {
  finish(1, { ok: false, failures: ['timed out'], consoleErrors });
}, (timeoutS + measureS + 30) * 1000);

async function devtoolsPort() {
  const f = join(profile, 'DevToolsActivePort');
  while (Date.now() < deadline) {
    if (existsSync(f)) {
      const [port] = readFileSync(f, 'utf8').split('\n');
      if (port) return Number(port);
    }
    if (chrome.exitCode !== null) throw new Error('chromium exited: ' + chromeErr.slice(-2000));
    await sleep(50);
  }
  throw new Error('chromium did not open its DevTools port');
}

let ws, nextId = 1;
const pending = new Map();
function send(method, params = {}) {
  const id = nextId++;
  ws.send(JSON.stringify({ id, method, params }));
  return new Promise((resolve, reject) => pending.set(id, { resolve, reject, method }));
}
async function evaluate(expr) {
  const r = await send('Runtime.evaluate', { expression: expr, returnByValue: true, awaitPromise: true });
  if (r.exceptionDetails) throw new Error('evaluate failed: ' + JSON.stringify(r.exceptionDetails).slice(0, 500));
  return r.result.value;
}
function onEvent(msg) {
  if (msg.method === 'Runtime.consoleAPICalled' && ['error', 'assert'].includes(msg.params.type)) {
    consoleErrors.push('console.' + msg.params.type + ': ' + msg.params.args.map((a) => a.value ?? a.description).join(' '));
  } else if (msg.method === 'Runtime.exceptionThrown') {
    const d = msg.params.exceptionDetails;
    consoleErrors.push('exception: ' + (d.exception && d.exception.description || d.text));
  } else if (msg.method === 'Log.entryAdded' && msg.params.entry.level === 'error') {
    consoleErrors.push('log: ' + msg.params.entry.text + (msg.params.entry.url ? ' (' + msg.params.entry.url + ')' : ''));
  }
}

const median = (a) => { const s = [...a].sort((x, y) => x - y); return s.length ? s[Math.floor((s.length - 1) / 2)] : null; };
const pct = (a, p) => { const s = [...a].sort((x, y) => x - y); return s.length ? s[Math.min(s.length - 1, Math.ceil(p * s.length) - 1)] : null; };

try {
  const port = await devtoolsPort();
  let target;
  while (!target && Date.now() < deadline) {
    const list = await (await fetch(`http://127.0.0.1:${port}/json/list`)).json();
    target = list.find((t) => t.type === 'page');
    if (!target) await sleep(50);
  }
  ws = new WebSocket(target.webSocketDebuggerUrl);
  await new Promise((resolve, reject) => { ws.onopen = resolve; ws.onerror = () => reject(new Error('CDP websocket failed')); });
  ws.onmessage = (ev) => {
    const msg = JSON.parse(ev.data);
    if (msg.id && pending.has(msg.id)) {
      const p = pending.get(msg.id);
      pending.delete(msg.id);
      if (msg.error) p.reject(new Error(p.method + ': ' + msg.error.message)); else p.resolve(msg.result);
    } else if (msg.method) onEvent(msg);
  };
  await send('Runtime.enable');
  await send('Log.enable');
  await send('Page.enable');
  await send('Emulation.setDeviceMetricsOverride', { width, height, deviceScaleFactor: 1, mobile: false });
  const navStart = Date.now();
  await send('Page.navigate', { url });

  // First render: snapshot rendered and the first devices page shown (page-side timestamp,
  // relative to navigation start).
  let state = null;
  while (Date.now() < deadline) {
    state = await evaluate(`(() => { const o = window.__outpost; return o ? { fr: o.firstRenderMs, updates: o.updates, errors: o.errors } : null; })()`).catch(() => null);
    if (state && state.fr != null) break;
    await sleep(50);
  }
  if (!state || state.fr == null) throw new Error('the dashboard never rendered (no snapshot or no devices page)');
  const firstRenderMs = state.fr;
  const wallFirstRenderMs = Date.now() - navStart;

  const read = () => evaluate(`(() => ({
    updates: window.__outpost.updates,
    readingsTotal: document.getElementById('t-in-total').textContent,
    rate: document.getElementById('t-in').textContent,
    online: document.getElementById('t-online').textContent,
    page: document.getElementById('page').textContent,
    rows: document.querySelectorAll('#devices tr').length,
    ready: document.getElementById('ready').textContent,
    errors: window.__outpost.errors,
  }))()`);
  const first = await read();
  let last = first;
  if (args['no-change-check'] !== 'true') {
    while (Date.now() < deadline) {
      await sleep(500);
      last = await read();
      if (last.updates >= first.updates + 2 && last.readingsTotal !== first.readingsTotal) break;
    }
    if (!(last.updates >= first.updates + 2)) failures.push(`no live updates (${first.updates} -> ${last.updates})`);
    if (last.readingsTotal === first.readingsTotal) failures.push(`readings total did not change: ${first.readingsTotal}`);
  }
  const m = /of ([\d,]+)/.exec(last.page);
  const total = m ? Number(m[1].replace(/,/g, '')) : 0;
  if (total < minDevices) failures.push(`devices page says '${last.page}', wanted at least ${minDevices} devices`);
  if (last.rows < 1 || last.rows > 50) failures.push(`devices table has ${last.rows} rows (1..50 expected)`);

  const result = { ok: false, firstRenderMs: Math.round(firstRenderMs), wallFirstRenderMs, first, last };
  if (measureS > 0) {
    await evaluate('window.__outpost.updateAgeMs.length = 0; window.__outpost.renderMs.length = 0; 0');
    await sleep(measureS * 1000);
    const lat = await evaluate('({ age: window.__outpost.updateAgeMs, render: window.__outpost.renderMs })');
    // One devices page and one search over every device, as the page fetches them.
    const api = await evaluate(`(async () => {
      const t = []; const s = [];
      for (let i = 0; i < 10; i++) {
        let t0 = performance.now(); await (await fetch('/api/devices?offset=' + (i * 50) + '&limit=50', {cache: 'no-store'})).json(); t.push(performance.now() - t0);
        t0 = performance.now(); await (await fetch('/api/devices?limit=50&q=' + (100 + i), {cache: 'no-store'})).json(); s.push(performance.now() - t0);
      }
      return { page: t, search: s };
    })()`);
    result.measure = {
      seconds: measureS, updates: lat.age.length,
      updateAgeMs: { median: median(lat.age), p95: pct(lat.age, 0.95) },
      renderMs: { median: median(lat.render), p95: pct(lat.render, 0.95) },
      devicesPageMs: { median: median(api.page) }, devicesSearchMs: { median: median(api.search) },
    };
  }
  if (args.device) {
    const id = args.device, minSensors = Number(args['min-sensors'] || 1);
    // Open it the way a user does: the row's link in the devices table (search narrows to it).
    await evaluate(`(() => { const q = document.getElementById('q'); q.value = ${JSON.stringify(id)};
      q.dispatchEvent(new Event('input')); return 0; })()`);
    let clicked = false;
    while (Date.now() < deadline && !clicked) {
      await sleep(200);
      clicked = await evaluate(`(() => { const a = [...document.querySelectorAll('#devices a')]
        .find((x) => x.textContent === ${JSON.stringify(id)}); if (a) a.click(); return !!a; })()`);
    }
    if (!clicked) failures.push(`device ${id} not found in the devices table`);
    const dv = () => evaluate(`(() => ({ ...window.__outpost.deviceView,
      overviewHidden: [...document.querySelectorAll('.overview')].every((e) => getComputedStyle(e).display === 'none'),
      rows: document.querySelectorAll('#dv-sensors tr').length,
      canvases: document.querySelectorAll('#dv-sensors td.spark canvas').length,
      values: [...document.querySelectorAll('#dv-sensors tr')].map((tr) => tr.children[1].textContent),
      requests: performance.getEntriesByType('resource').filter((e) => e.name.includes('/api/')).length }))()`);
    let d = await dv();
    while (Date.now() < deadline && !(d.id === id && d.renders >= 1 && d.sensors >= minSensors)) {
      await sleep(200);
      d = await dv();
    }
    const r0 = d.renders, q0 = d.requests, t0 = Date.now();
    await sleep(4500);
    d = await dv();
    const reqPerRefresh = (d.requests - q0) / Math.max(1, d.renders - r0);
    result.devicePage = { id, sensors: d.sensors, sparklines: d.canvases, rows: d.rows,
      refreshes: d.renders - r0, seconds: (Date.now() - t0) / 1000, apiRequests: d.requests - q0,
      requestsPerRefresh: reqPerRefresh, anomalies: d.anomalies, values: d.values };
    if (d.id !== id) failures.push(`device page shows ${d.id}, wanted ${id}`);
    if (!d.overviewHidden) failures.push('device page: the overview is still shown');
    if (d.sensors < minSensors || d.rows !== d.sensors) failures.push(`device page: ${d.sensors} sensors, ${d.rows} rows (want >= ${minSensors})`);
    if (d.canvases < d.sensors) failures.push(`device page: ${d.canvases} sparklines for ${d.sensors} sensors`);
    if (d.values.some((v) => v === '–' || v === '')) failures.push(`device page: a sensor without a value: ${d.values}`);
    if (d.renders - r0 < 1) failures.push('device page did not refresh');
    // 3 requests per refresh (device, sensors, its anomalies) plus the live snapshot stream.
    if (reqPerRefresh > 4) failures.push(`device page: ${reqPerRefresh} API requests per refresh`);
    if (args['device-screenshot']) {
      const shot = await send('Page.captureScreenshot', { format: 'png' });
      writeFileSync(args['device-screenshot'], Buffer.from(shot.data, 'base64'));
    }
    await evaluate(`(() => { document.getElementById('dv-back').click(); return 0; })()`);
    await sleep(500);
    const back = await evaluate(`(() => ({ overview: [...document.querySelectorAll('.overview')].every((e) => getComputedStyle(e).display !== 'none'),
      device: getComputedStyle(document.getElementById('device-view')).display !== 'none' }))()`);
    if (!back.overview || back.device) failures.push('back link did not return to the overview');
    await evaluate(`(() => { const q = document.getElementById('q'); q.value = '';
      q.dispatchEvent(new Event('input')); return 0; })()`);
  }
  if (args['cluster-members']) {
    // The Cluster panel (issue 19): shown, one row per member of the process role's group.
    const want = Number(args['cluster-members']);
    const cl = () => evaluate(`(() => ({ shown: getComputedStyle(document.getElementById('cluster')).display !== 'none',
      rows: [...document.querySelectorAll('#cl-members tr')].map((tr) => [...tr.children].map((td) => td.textContent)),
      sub: document.getElementById('cl-sub').textContent }))()`);
    let c = await cl();
    while (Date.now() < deadline && !(c.shown && c.rows.length === want)) {
      await sleep(250);
      c = await cl();
    }
    result.cluster = c;
    if (!c.shown || c.rows.length !== want) failures.push(`Cluster panel: shown ${c.shown}, ${c.rows.length} members (want ${want})`);
  }
  if (args.screenshot) {
    const shot = await send('Page.captureScreenshot', { format: 'png' });
    writeFileSync(args.screenshot, Buffer.from(shot.data, 'base64'));
    result.screenshot = args.screenshot;
  }
  const pageErrors = await evaluate('window.__outpost.errors');
  consoleErrors.push(...pageErrors.map((e) => 'page: ' + e));
  if (consoleErrors.length) failures.push(`${consoleErrors.length} console errors`);
  result.ok = failures.length === 0;
  result.failures = failures;
  result.consoleErrors = consoleErrors;
  clearTimeout(watchdog);
  finish(result.ok ? 0 : 1, result);
} catch (e) {
  clearTimeout(watchdog);
  finish(1, { ok: false, failures: [...failures, String(e && e.message || e)], consoleErrors });
}
