// Outpost aggregator dashboard: live snapshot over server-sent events (/api/stream, one per
// second), charts with uPlot (vendored, see vendor/uplot), devices paginated and searched on the
// server (/api/devices), latest anomalies (/api/anomalies). A device page (#/device/<id>) shows
// each sensor's latest value and a sparkline of its history from one request
// (/api/devices/{id}/sensors?recent=60), and the device's anomalies. No external network.
'use strict';

// Self-check data for tests and benchmarks (tests/integration/dashboard_test.sh).
const selfCheck = window.__outpost = {
  updates: 0, firstRenderMs: null, deviceRenders: 0, updateAgeMs: [], renderMs: [], errors: [],
  deviceView: { id: null, renders: 0, sensors: 0, sparklines: 0, anomalies: 0 },
};
window.addEventListener('error', (e) => selfCheck.errors.push(String(e.message || e)));
window.addEventListener('unhandledrejection', (e) => selfCheck.errors.push(String(e.reason)));

const $ = (id) => document.getElementById(id);
const PAGE = 50;
const HISTORY = 300;
let offset = 0;
let lastSnapshot = null;

function fmtRate(v) {
  if (v == null || !isFinite(v)) return '–';
  if (v >= 1e6) return (v / 1e6).toFixed(2) + 'M';
  if (v >= 1e4) return (v / 1e3).toFixed(1) + 'k';
  if (v >= 100) return Math.round(v).toString();
  return v.toFixed(1);
}
function fmtInt(v) { return v == null ? '–' : Number(v).toLocaleString('en-US'); }
function fmtSec(v) {
  if (v == null || !isFinite(v)) return '–';
  if (v < 1) return (v * 1000).toFixed(v < 0.01 ? 1 : 0) + ' ms';
  return v.toFixed(2) + ' s';
}
function fmtAge(s) {
  if (s == null) return 'never';
  if (s < 60) return Math.round(s) + ' s ago';
  if (s < 3600) return Math.round(s / 60) + ' min ago';
  if (s < 86400) return (s / 3600).toFixed(1) + ' h ago';
  return (s / 86400).toFixed(1) + ' d ago';
}
function setText(id, text) { const el = $(id); if (el.textContent !== text) el.textContent = text; }

// ---- charts ----
const series = { x: [], in: [], out: [], rej: [], p50: [], p95: [], p99: [] };
function chartWidth(el) { return Math.max(280, el.clientWidth - 4); }
function makeChart(el, defs, yfmt) {
  return new uPlot({
    width: chartWidth(el), height: 220,
    scales: { x: { time: true } },
    axes: [
      { stroke: '#8b98a5', grid: { stroke: '#2a343d' } },
      { stroke: '#8b98a5', grid: { stroke: '#2a343d' }, size: 60, values: (u, vals) => vals.map(yfmt) },
    ],
    series: [{}].concat(defs.map(([label, color]) => ({ label, stroke: color, width: 2, spanGaps: true }))),
  }, [[]].concat(defs.map(() => [])), el);
}
const rateChart = makeChart($('chart-rate'), [['in', '#58a6ff'], ['published', '#3fb950'], ['rejected batches', '#f85149']], fmtRate);
const latChart = makeChart($('chart-lat'), [['p50', '#3fb950'], ['p95', '#d29922'], ['p99', '#f85149']], fmtSec);

function addPoint(p) {
  // p = [ts_ms, readings_in, readings_published, rejected, e2e_p50, e2e_p95, e2e_p99, ack_p99]
  if (series.x.length && p[0] / 1000 <= series.x[series.x.length - 1]) return;
  series.x.push(p[0] / 1000); series.in.push(p[1]); series.out.push(p[2]); series.rej.push(p[3]);
  series.p50.push(p[4]); series.p95.push(p[5]); series.p99.push(p[6]);
  if (series.x.length > HISTORY) for (const k in series) series[k].shift();
}
function drawCharts() {
  rateChart.setData([series.x, series.in, series.out, series.rej]);
  latChart.setData([series.x, series.p50, series.p95, series.p99]);
}
window.addEventListener('resize', () => {
  rateChart.setSize({ width: chartWidth($('chart-rate')), height: 220 });
  latChart.setSize({ width: chartWidth($('chart-lat')), height: 220 });
});

// ---- snapshot ----
function render(s) {
  const r = s.rates, t = s.totals, l = s.latency_s;
  const badge = $('ready');
  badge.textContent = s.ready ? 'ready' : 'not ready';
  badge.className = 'badge ' + (s.ready ? 'ok' : 'bad');
  setText('reasons', s.reasons.join('; '));
  setText('uptime', 'up ' + fmtAge(s.uptime_s).replace(' ago', ''));
  setText('t-in', fmtRate(r.readings_in));
  setText('t-in-total', fmtInt(t.readings_in) + ' total');
  setText('t-out', fmtRate(r.readings_published));
  setText('t-out-total', fmtInt(t.readings_published) + ' total');
  setText('t-batches', fmtRate(r.batches_in));
  setText('t-batches-total', fmtInt(t.batches_in) + ' total');
  setText('t-rej', fmtRate(r.rejected_batches));
  $('t-rej').className = 'value' + (r.rejected_batches > 0 ? ' bad' : '');
  setText('t-rej-total', fmtInt(t.rejected_batches) + ' total');
  setText('t-dup', fmtRate(r.duplicate_batches));
  setText('t-dup-total', fmtInt(t.duplicate_batches) + ' total');
  setText('t-e2e', [l.e2e.p50, l.e2e.p95, l.e2e.p99].map(fmtSec).join(' / '));
  setText('t-ack', [l.ack.p50, l.ack.p95, l.ack.p99].map(fmtSec).join(' / '));
  setText('t-kafka', fmtInt(s.kafka.outstanding_messages) + ' queued');
  $('t-kafka').className = 'value small' + (r.kafka_failed > 0 ? ' bad' : '');
  setText('t-kafka-sub', fmtRate(r.kafka_delivered) + ' msg/s delivered, ' + fmtRate(r.kafka_failed) +
    ' failed/s' + (s.kafka.intake_paused > 0 ? ', intake paused' : '') +
    (s.mqtt_connected === 0 ? ', MQTT down' : ''));
  setText('t-online', fmtInt(s.devices.online));
  setText('t-offline', fmtInt(s.devices.offline));
  $('t-offline').className = 'value' + (s.devices.offline > 0 ? ' warn' : '');
  setText('t-known', fmtInt(s.devices.known) + ' known');
  setText('t-workers', 'worker queues: ' + s.workers.join(' · '));
  setText('anom-total', fmtInt(t.anomalies) + ' total');
}

function onSnapshot(text) {
  const t0 = performance.now();
  const s = JSON.parse(text);
  const newAnomalies = !lastSnapshot || lastSnapshot.totals.anomalies !== s.totals.anomalies;
  lastSnapshot = s;
  render(s);
  addPoint(s.point);
  drawCharts();
  if (newAnomalies) loadAnomalies();
  selfCheck.updates++;
  selfCheck.updateAgeMs.push(Date.now() - s.ts_ms);
  selfCheck.renderMs.push(performance.now() - t0);
  if (selfCheck.updateAgeMs.length > 1000) { selfCheck.updateAgeMs.shift(); selfCheck.renderMs.shift(); }
  maybeFirstRender();
}
function maybeFirstRender() {
  if (selfCheck.firstRenderMs == null && selfCheck.updates > 0 && selfCheck.deviceRenders > 0) {
    selfCheck.firstRenderMs = performance.now();
  }
}

function connect() {
  const es = new EventSource('/api/stream');
  es.onopen = () => setText('conn', 'live');
  es.onmessage = (e) => onSnapshot(e.data);
  es.onerror = () => {
    setText('conn', 'reconnecting…');
    // EventSource retries by itself; a 503 (too many clients) closes it: retry later.
    if (es.readyState === EventSource.CLOSED) setTimeout(connect, 5000);
  };
}

// ---- devices ----
async function getJson(url) {
  const res = await fetch(url, { cache: 'no-store' });
  if (!res.ok) throw new Error(url + ': HTTP ' + res.status);
  return res.json();
}
let deviceSeq = 0;
async function loadDevices() {
  const seq = ++deviceSeq;
  const q = $('q').value.trim(), state = $('state').value;
  const url = '/api/devices?offset=' + offset + '&limit=' + PAGE +
    '&q=' + encodeURIComponent(q) + '&state=' + encodeURIComponent(state);
  let page;
  try { page = await getJson(url); } catch (e) { setText('page', 'unavailable'); return; }
  if (seq !== deviceSeq) return;  // a newer request is on its way
  if (offset > 0 && offset >= page.total) { offset = Math.max(0, page.total - PAGE); return loadDevices(); }
  const rows = page.items.map((d) => {
    const tr = document.createElement('tr');
    tr.title = JSON.stringify(d, null, 1);
    tr.addEventListener('click', () => { location.hash = '#/device/' + encodeURIComponent(d.id); });
    const cells = [
      null, null, fmtAge(d.last_seen_age_s), d.agent_version || '–', d.epoch,
      fmtInt(d.seq_gaps), fmtInt(d.dropped_reported), d.backlog_rows == null ? '–' : fmtInt(d.backlog_rows),
    ];
    cells.forEach((c, i) => {
      const td = document.createElement('td');
      if (i === 0) {
        td.append(Object.assign(document.createElement('a'), {
          href: '#/device/' + encodeURIComponent(d.id), textContent: d.id }));
      } else if (i === 1) {
        const dot = document.createElement('span');
        dot.className = 'dot ' + (d.state === 'online' ? 'on' : 'off');
        td.append(dot, d.state + (d.state === 'offline' ? ' (' + d.reason + ')' : ''));
      } else {
        td.textContent = c;
      }
      tr.append(td);
    });
    return tr;
  });
  $('devices').replaceChildren(...rows);
  setText('page', page.total === 0 ? 'no devices' :
    (offset + 1) + '–' + (offset + page.items.length) + ' of ' + fmtInt(page.total));
  $('prev').disabled = offset === 0;
  $('next').disabled = offset + PAGE >= page.total;
  selfCheck.deviceRenders++;
  maybeFirstRender();
}
let searchTimer = null;
$('q').addEventListener('input', () => {
  clearTimeout(searchTimer);
  searchTimer = setTimeout(() => { offset = 0; loadDevices(); }, 250);
});
$('state').addEventListener('change', () => { offset = 0; loadDevices(); });
$('prev').addEventListener('click', () => { offset = Math.max(0, offset - PAGE); loadDevices(); });
$('next').addEventListener('click', () => { offset += PAGE; loadDevices(); });

// ---- anomalies ----
const sparkCharts = [];
async function loadAnomalies() {
  let data;
  try { data = await getJson('/api/anomalies'); } catch (e) { return; }
  const list = $('anomalies');
  sparkCharts.splice(0).forEach((c) => c.destroy());
  if (!data.items.length) { list.replaceChildren(Object.assign(document.createElement('div'), { className: 'muted', textContent: 'none yet' })); return; }
  const nodes = data.items.slice(0, 8).map((a) => {
    const box = document.createElement('div');
    box.className = 'anom';
    const head = document.createElement('div');
    head.className = 'head';
    const kind = Object.assign(document.createElement('span'), { className: 'kind', textContent: a.kind });
    const who = Object.assign(document.createElement('span'), { textContent: a.device + ' / ' + a.sensor });
    const what = Object.assign(document.createElement('span'), { className: 'muted',
      textContent: 'value ' + (a.value == null ? '–' : Number(a.value).toPrecision(4)) + ', score ' +
        (a.score == null ? '–' : Number(a.score).toFixed(2)) + ', ' + new Date(a.ts_us / 1000).toLocaleTimeString() });
    head.append(kind, who, what);
    box.append(head);
    if (a.recent.length > 1) {
      const el = document.createElement('div');
      box.append(el);
      box._spark = [el, a];
    }
    return box;
  });
  list.replaceChildren(...nodes);
  for (const box of nodes) {
    if (!box._spark) continue;
    const [el, a] = box._spark;
    sparkCharts.push(new uPlot({
      width: Math.max(200, list.clientWidth - 24), height: 70, legend: { show: false }, cursor: { show: false },
      scales: { x: { time: true } }, axes: [{ show: false }, { show: true, size: 46, stroke: '#8b98a5', grid: { show: false } }],
      series: [{}, { stroke: '#d29922', width: 1.5 }],
    }, [a.recent.map((p) => p[0] / 1e6), a.recent.map((p) => p[1])], el));
  }
}

// ---- device page (#/device/<id>) ----
const SPARK_BUCKETS = 60;
let deviceId = null, deviceTimer = null, deviceLoadSeq = 0;
const sensorRows = new Map();  // sensor name -> { tr, cells, chart }
function fmtValue(v) { return v == null ? '–' : Number(v).toPrecision(6).replace(/\.?0+$/, ''); }
function clearDeviceView() {
  for (const r of sensorRows.values()) if (r.chart) r.chart.destroy();
  sensorRows.clear();
  $('dv-sensors').replaceChildren();
}
function sensorRow(name) {
  let r = sensorRows.get(name);
  if (r) return r;
  const tr = document.createElement('tr');
  const cells = [0, 1, 2, 3, 4, 5].map(() => document.createElement('td'));
  cells[5].className = 'spark';
  tr.append(...cells);
  r = { tr, cells, chart: null };
  sensorRows.set(name, r);
  return r;
}
async function loadDevice() {
  const id = deviceId, seq = ++deviceLoadSeq;
  const enc = encodeURIComponent(id);
  let info = null, sensors = null, anomalies = null;
  const [a, b, c] = await Promise.allSettled([
    getJson('/api/devices/' + enc),
    fetch('/api/devices/' + enc + '/sensors?recent=' + SPARK_BUCKETS, { cache: 'no-store' }),
    getJson('/api/anomalies?device=' + enc),
  ]);
  if (seq !== deviceLoadSeq || id !== deviceId) return;
  if (a.status === 'fulfilled') info = a.value;
  if (b.status === 'fulfilled' && b.value.ok) sensors = await b.value.json();
  else if (b.status === 'fulfilled') await b.value.text();  // 404: no readings yet
  if (c.status === 'fulfilled') anomalies = c.value;
  if (seq !== deviceLoadSeq || id !== deviceId) return;
  setText('dv-title', id);
  setText('dv-state', info ? info.state + ', last seen ' + fmtAge(info.last_seen_age_s) +
    ', epoch ' + info.epoch + ', seq ' + fmtInt(info.last_seq) : 'not in the device registry');
  const list = sensors ? sensors.sensors : [];
  $('dv-empty').hidden = list.length > 0;
  const seen = new Set();
  const rows = list.map((s) => {
    seen.add(s.name);
    const r = sensorRow(s.name);
    const text = [s.name, fmtValue(s.value), s.unit || '–', s.quality,
      new Date(s.ts_us / 1000).toLocaleTimeString()];
    text.forEach((t, i) => { if (r.cells[i].textContent !== t) r.cells[i].textContent = t; });
    r.cells[3].className = s.quality === 'good' ? '' : 'warn';
    const xs = s.recent.map((p) => p[0] / 1000), ys = s.recent.map((p) => p[1]);
    if (!r.chart) {
      r.chart = new uPlot({
        width: 300, height: 46, legend: { show: false }, cursor: { show: false },
        scales: { x: { time: true } }, axes: [{ show: false }, { show: false }],
        series: [{}, { stroke: '#58a6ff', width: 1.5, spanGaps: true }],
      }, [xs, ys], r.cells[5]);
    } else {
      r.chart.setData([xs, ys]);
    }
    return r.tr;
  });
  for (const [name, r] of sensorRows) {
    if (!seen.has(name)) { if (r.chart) r.chart.destroy(); sensorRows.delete(name); }
  }
  $('dv-sensors').replaceChildren(...rows);
  const items = anomalies ? anomalies.items : [];
  $('dv-anomalies').replaceChildren(...(items.length ? items.map((x) => {
    const box = Object.assign(document.createElement('div'), { className: 'anom' });
    const head = Object.assign(document.createElement('div'), { className: 'head' });
    head.append(Object.assign(document.createElement('span'), { className: 'kind', textContent: x.kind }),
      Object.assign(document.createElement('span'), { textContent: x.sensor }),
      Object.assign(document.createElement('span'), { className: 'muted',
        textContent: 'value ' + fmtValue(x.value) + ', ' + new Date(x.ts_us / 1000).toLocaleTimeString() }));
    box.append(head);
    return box;
  }) : [Object.assign(document.createElement('div'), { className: 'muted', textContent: 'none' })]));
  const dv = selfCheck.deviceView;
  dv.id = id; dv.renders++; dv.sensors = list.length; dv.sparklines = sensorRows.size;
  dv.anomalies = items.length;
}
function route() {
  const m = /^#\/device\/(.+)$/.exec(location.hash);
  const id = m ? decodeURIComponent(m[1]) : null;
  document.querySelectorAll('.overview').forEach((el) => { el.hidden = id != null; });
  $('cluster').hidden = id != null || !clusterShown;
  $('device-view').hidden = id == null;
  clearInterval(deviceTimer);
  deviceTimer = null;
  if (id !== deviceId) clearDeviceView();
  deviceId = id;
  if (id != null) {
    setText('dv-title', id);
    loadDevice();
    deviceTimer = setInterval(loadDevice, 2000);
  } else {
    loadDevices();
    rateChart.setSize({ width: chartWidth($('chart-rate')), height: 220 });
    latChart.setSize({ width: chartWidth($('chart-lat')), height: 220 });
  }
}
window.addEventListener('hashchange', route);

// ---- cluster (the process role's consumer group, as Kafka describes it; hidden without one) ----
let clusterShown = false;
async function loadCluster() {
  let c;
  try { c = await getJson('/api/cluster'); } catch (e) { return; }
  const lag = c.group_lag;
  clusterShown = !!((c.members && c.members.length) || lag);
  $('cluster').hidden = !clusterShown || deviceId != null;
  selfCheck.clusterMembers = clusterShown ? c.members.length : 0;
  if (!clusterShown) return;
  setText('cl-topic', c.topic);
  setText('cl-sub', '· group ' + c.group + ' · ' + (c.group_state || '?') + ' · ' +
    c.members.length + ' member' + (c.members.length === 1 ? '' : 's') + ' · ' +
    c.partition_count + ' partitions · lag ' + (lag ? fmtInt(lag.total) : '–'));
  const rows = c.members.map((m) => {
    const tr = document.createElement('tr');
    tr.title = m.member_id + ' (client ' + m.client_id + ')';
    [m.instance || m.client_id, m.host, m.partitions.length ? m.partitions.join(', ') : 'none',
      lag ? fmtInt(m.lag) : '–'].forEach((text) => {
      const td = document.createElement('td');
      td.textContent = text;
      tr.append(td);
    });
    return tr;
  });
  $('cl-members').replaceChildren(...rows);
  const notes = [];
  if (c.unassigned && c.unassigned.length) notes.push('not assigned: ' + c.unassigned.join(', '));
  if (c.view_error) notes.push('view: ' + c.view_error);
  setText('cl-note', notes.join(' · '));
}

// ---- start ----
(async function start() {
  try {
    const h = await getJson('/api/history');
    h.points.forEach(addPoint);
    drawCharts();
  } catch (e) { /* charts fill from the stream */ }
  connect();
  loadDevices();
  loadAnomalies();
  // The overview's device list refreshes only while it is shown (one page, never per device).
  setInterval(() => { if (deviceId == null) loadDevices(); }, 2000);
  loadCluster();
  setInterval(() => { if (deviceId == null) loadCluster(); }, 5000);
  if (location.hash) route();
})();
