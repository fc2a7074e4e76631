/**
 * The dashboard page: counters refreshed every 2 s from /api/overview, per-listener state, other
 * subsystems' summaries, and the latest events (loaded from /api/events, then pushed live over
 * server-sent events). Served as three static strings; the script builds every cell with
 * textContent, because event fields (URLs, signature names, addresses) come from the traffic.
 */

export const DASHBOARD_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>scangate</title>
<link rel="stylesheet" href="/dashboard.css">
<script src="/dashboard.js" defer></script>
</head>
<body>
<header><h1>scangate</h1><span id="status" class="pill">…</span><span id="engine"></span><span id="live" class="pill">connecting</span></header>
<section><h2>Counters</h2><div id="counters" class="grid"></div></section>
<section><h2>Listeners</h2>
<table id="listeners"><thead><tr><th>name</th><th>protocol</th><th>address</th><th>state</th><th>open</th><th>connections</th><th>bytes in</th><th>bytes out</th><th>events</th></tr></thead><tbody></tbody></table>
</section>
<section id="summaries-section"><h2>Subsystems</h2><div id="summaries" class="grid"></div></section>
<section><h2>Latest events</h2>
<table id="events"><thead><tr><th>time</th><th>listener</th><th>kind</th><th>action</th><th>client</th><th>object</th><th>signature / reason</th></tr></thead><tbody></tbody></table>
</section>
</body>
</html>
`;

export const LOGIN_HTML = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>scangate: token required</title></head>
<body><h1>scangate admin</h1>
<p>This page needs the admin token. Open <code>/?token=TOKEN</code> with the token printed when scangate
first started (stored in <code>dataDir/admin.token</code>, or <code>admin.token</code> in the configuration).</p>
</body></html>
`;

export const DASHBOARD_CSS = `
body { font: 14px/1.4 system-ui, sans-serif; margin: 0 1.5rem 2rem; color: #1d2430; background: #f6f7f9; }
header { display: flex; gap: 1rem; align-items: baseline; }
h1 { font-size: 1.6rem; margin: 1rem 0 .5rem; }
h2 { font-size: 1.1rem; margin: 1.2rem 0 .4rem; }
.pill { padding: .1rem .6rem; border-radius: 1rem; background: #ccd; font-size: .85rem; }
.pill.ok { background: #bfe5c6; } .pill.bad { background: #f3b9b9; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(11rem, 1fr)); gap: .5rem; }
.card { background: #fff; border: 1px solid #dde; border-radius: .4rem; padding: .5rem .7rem; }
.card .v { font-size: 1.3rem; font-weight: 600; } .card .k { color: #667; font-size: .8rem; }
table { border-collapse: collapse; width: 100%; background: #fff; }
th, td { border: 1px solid #dde; padding: .25rem .5rem; text-align: left; vertical-align: top; }
th { background: #eef; font-weight: 600; }
td.obj { max-width: 28rem; overflow-wrap: anywhere; }
tr.infected td { background: #fff0f0; }
`;

export const DASHBOARD_JS = `'use strict';
const $ = (s) => document.querySelector(s);
const fmt = (n) => (typeof n === 'number' ? (Number.isInteger(n) ? n.toLocaleString('en') : n.toFixed(3)) : String(n ?? ''));
function cell(row, text, cls) { const td = document.createElement('td'); td.textContent = text == null ? '' : String(text); if (cls) td.className = cls; row.appendChild(td); return td; }
function card(parent, key, value) {
  const d = document.createElement('div'); d.className = 'card';
  const v = document.createElement('div'); v.className = 'v'; v.textContent = fmt(value);
  const k = document.createElement('div'); k.className = 'k'; k.textContent = key;
  d.append(v, k); parent.appendChild(d);
}
async function refresh() {
  const r = await fetch('/api/overview', { credentials: 'same-origin' });
  if (!r.ok) return;
  const o = await r.json();
  const st = $('#status'); st.textContent = o.ready ? 'ready' : 'not ready'; st.className = 'pill ' + (o.ready ? 'ok' : 'bad');
  $('#engine').textContent = o.engine ? o.engine.engine + ' · db ' + o.engine.databaseVersion + ' · ' + fmt(o.engine.signatures) + ' signatures · ' + o.workers + ' worker(s)' : '';
  const c = $('#counters'); c.replaceChildren();
  for (const [k, v] of Object.entries(o.counters)) card(c, k, v);
  const tb = $('#listeners tbody'); tb.replaceChildren();
  for (const l of o.listeners) {
    const tr = document.createElement('tr'); tr.dataset.listener = l.name;
    for (const v of [l.name, l.protocol, l.address, l.state + (l.reason ? ': ' + l.reason : '') + (l.upstream ? '; upstream ' + l.upstream : ''), fmt(l.open), fmt(l.connections), fmt(l.bytesIn), fmt(l.bytesOut), fmt(l.events)]) cell(tr, v);
    tb.appendChild(tr);
  }
  const s = $('#summaries'); s.replaceChildren();
  const names = Object.keys(o.summaries || {});
  $('#summaries-section').hidden = names.length === 0;
  for (const n of names) for (const [k, v] of Object.entries(o.summaries[n])) card(s, n + ' · ' + k, v);
}
function addEvent(e, atTop) {
  const tb = $('#events tbody');
  const tr = document.createElement('tr');
  tr.className = 'event ' + (e.signature ? 'infected' : '');
  cell(tr, e.time); cell(tr, e.listener); cell(tr, e.kind); cell(tr, e.action); cell(tr, e.client);
  cell(tr, e.object, 'obj'); cell(tr, e.signature || e.reason, 'obj');
  if (atTop) tb.prepend(tr); else tb.appendChild(tr);
  while (tb.rows.length > 200) tb.deleteRow(tb.rows.length - 1);
}
async function loadEvents() {
  const r = await fetch('/api/events?limit=100', { credentials: 'same-origin' });
  if (!r.ok) return;
  const { events } = await r.json();
  $('#events tbody').replaceChildren();
  for (const e of events) addEvent(e, false);
}
function live() {
  const es = new EventSource('/api/events/stream');
  es.onopen = () => { $('#live').textContent = 'live'; $('#live').className = 'pill ok'; };
  es.onerror = () => { $('#live').textContent = 'reconnecting'; $('#live').className = 'pill bad'; };
  es.addEventListener('security', (m) => { addEvent(JSON.parse(m.data), true); });
}
refresh(); loadEvents().then(live);
setInterval(refresh, 2000);
`;
