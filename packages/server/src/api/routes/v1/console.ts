/**
 * The admin console of the microVM manager at `/admin`: one self-contained HTML page (no build step) whose vanilla
 * JavaScript talks to the `/v1` API with the admin session cookie. Overview, VMs (create/stop/start/destroy, logs,
 * run a command), API keys and activity.
 */
import type { FastifyInstance } from 'fastify';

const PAGE = /* html */ `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Terrarium microVM manager</title>
<style>
  body { font: 14px/1.4 system-ui, sans-serif; margin: 0; color: #1b1f23; background: #f6f8fa; }
  header { background: #24292f; color: #fff; padding: 10px 20px; display: flex; gap: 16px; align-items: center; }
  header h1 { font-size: 16px; margin: 0; flex: 1; }
  header a { color: #c9d1d9; cursor: pointer; text-decoration: none; }
  header a.active { color: #fff; font-weight: 600; }
  main { padding: 20px; max-width: 1200px; margin: auto; }
  section { background: #fff; border: 1px solid #d0d7de; border-radius: 6px; padding: 16px; margin-bottom: 16px; }
  table { border-collapse: collapse; width: 100%; }
  th, td { text-align: left; padding: 6px 8px; border-bottom: 1px solid #eaeef2; vertical-align: top; }
  input, select, button, textarea { font: inherit; padding: 4px 8px; }
  button { cursor: pointer; }
  pre { background: #0d1117; color: #c9d1d9; padding: 10px; overflow: auto; max-height: 400px; white-space: pre-wrap; }
  .error { color: #cf222e; }
  .state-running { color: #1a7f37; } .state-lost, .state-failed { color: #cf222e; } .state-stopped { color: #9a6700; }
  /* A grid, so a last card never stretches over a row of its own. */
  .cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(150px, 1fr)); gap: 12px; background: none; border: 0; padding: 0; }
  .card { box-sizing: border-box; background: #fff; border: 1px solid #d0d7de; border-radius: 6px; padding: 12px 16px; color: #57606a; }
  .card b { font-size: 22px; display: block; color: #1b1f23; }
  td code { overflow-wrap: anywhere; font-size: 12px; }
  td.num { text-align: right; font-variant-numeric: tabular-nums; }
  /* Ids, names and numbers on one line; the creation time wraps so the action buttons stay inside the section. */
  th, tr[data-vm] td:not(.created) { white-space: nowrap; }
  section { overflow-x: auto; }
  h2 { font-size: 16px; margin: 0 0 12px; }
</style>
</head>
<body>
<header><h1>Terrarium microVM manager</h1><nav id="nav"></nav></header>
<main id="main"></main>
<script>
"use strict";
const main = document.getElementById('main');
const nav = document.getElementById('nav');
const esc = (v) => String(v ?? '').replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);
async function api(method, path, body) {
  const res = await fetch('/v1' + path, {
    method,
    headers: { 'x-requested-with': 'terrarium-admin', ...(body !== undefined && { 'content-type': 'application/json' }) },
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: 'same-origin',
  });
  const text = await res.text();
  const data = text && (res.headers.get('content-type') || '').includes('json') ? JSON.parse(text) : text;
  if (res.status === 401 && path !== '/admin/login') { showLogin(); throw new Error('not logged in'); }
  if (!res.ok) throw new Error((data && data.error && data.error.message) || res.statusText);
  return data;
}
const views = { overview, vms, keys, activity };
function setNav(current) {
  nav.innerHTML = Object.keys(views).map((v) => '<a data-view="' + v + '" class="' + (v === current ? 'active' : '') + '">' + v + '</a>').join(' ') + ' <a id="logout">log out</a>';
  nav.querySelectorAll('[data-view]').forEach((a) => a.onclick = () => show(a.dataset.view));
  document.getElementById('logout').onclick = async () => { await api('POST', '/admin/logout'); showLogin(); };
}
async function show(view) {
  setNav(view);
  main.innerHTML = '<p>Loading…</p>';
  try { await views[view](); } catch (err) { main.innerHTML = '<p class="error">' + esc(err.message) + '</p>'; }
}
function showLogin(message) {
  nav.innerHTML = '';
  main.innerHTML = '<section><h2>Log in</h2><form id="login"><p><input name="email" type="email" placeholder="e-mail" required></p>' +
    '<p><input name="password" type="password" placeholder="password" required></p><p><button>Log in</button></p>' +
    '<p class="error" id="login-error">' + esc(message) + '</p></form></section>';
  document.getElementById('login').onsubmit = async (e) => {
    e.preventDefault();
    const f = new FormData(e.target);
    try { await api('POST', '/admin/login', { email: f.get('email'), password: f.get('password') }); show('overview'); }
    catch (err) { document.getElementById('login-error').textContent = err.message; }
  };
}
async function overview() {
  const [health, list, act] = await Promise.all([api('GET', '/health'), api('GET', '/vms'), api('GET', '/activity?limit=10')]);
  const running = list.vms.filter((v) => v.state === 'running').length;
  main.innerHTML = '<section class="cards">' +
    card('VMs (incl. warm pool) / MAX_VMS', health.capacity.vms + ' / ' + health.capacity.maxVms) + card('running', running) +
    card('warm pool ready', health.pool && health.pool.size > 0 ? health.pool.ready + ' / ' + health.pool.size : 'off') +
    card('per-VM limits', health.capacity.maxCpu + ' vCPU, ' + health.capacity.maxMemMb + ' MiB') +
    card('accelerator', health.accelerator) + card('transport', health.transport) + card('default image', health.defaultImage || '—') +
    '</section><section><h2>Recent activity</h2>' + activityTable(act.activity) + '</section>';
}
const card = (label, value) => '<div class="card"><b>' + esc(value) + '</b>' + esc(label) + '</div>';
async function vms() {
  const [list, images] = await Promise.all([api('GET', '/vms'), api('GET', '/images')]);
  main.innerHTML = '<section><h2>Create a VM</h2><form id="create">' +
    'name <input name="name" size="12"> vCPUs <input name="vcpus" type="number" value="1" min="1" style="width:4em"> ' +
    'memory MiB <input name="memMib" type="number" value="512" min="128" style="width:6em"> image <select name="image">' +
    images.images.map((i) => '<option' + (i.isDefault ? ' selected' : '') + '>' + esc(i.name) + '</option>').join('') +
    '</select> <button>Create</button> <span id="create-status"></span></form></section>' +
    '<section><h2>VMs</h2><table><tr><th>id</th><th>name</th><th>state</th><th>vCPUs</th><th>memory MiB</th><th>disk MiB</th><th>image</th><th>IP</th><th>started from</th><th>created</th><th></th></tr>' +
    (list.vms.length === 0 ? '<tr><td colspan="11">No VMs.</td></tr>' : '') +
    list.vms.map((v) => '<tr data-vm="' + esc(v.id) + '"><td>' + esc(v.id) + '</td><td>' + esc(v.name) + '</td><td class="state-' + esc(v.state) + '">' + esc(v.state) +
      (v.lostReason ? ' (' + esc(v.lostReason) + ')' : '') + '</td><td class="num">' + v.vcpus + '</td><td class="num">' + v.memMib + '</td><td class="num">' + esc(v.diskMib ?? 'image') +
      '</td><td>' + esc(v.image) + '</td><td>' + esc(v.ip) + '</td><td>' + esc(v.startedFrom) + '</td><td class="created">' + esc(new Date(v.createdAt).toLocaleString()) + '</td><td style="white-space:nowrap">' +
      '<button data-act="open" data-id="' + esc(v.id) + '">open</button> ' +
      (v.state === 'running' ? '<button data-act="stop" data-id="' + esc(v.id) + '">stop</button> ' : '') +
      (v.state === 'stopped' ? '<button data-act="start" data-id="' + esc(v.id) + '">start</button> ' : '') +
      '<button data-act="destroy" data-id="' + esc(v.id) + '">destroy</button></td></tr>').join('') +
    '</table></section><div id="detail"></div>';
  document.getElementById('create').onsubmit = async (e) => {
    e.preventDefault();
    const f = new FormData(e.target);
    const status = document.getElementById('create-status');
    status.textContent = 'creating…';
    try {
      await api('POST', '/vms', { ...(f.get('name') && { name: f.get('name') }), vcpus: Number(f.get('vcpus')), memMib: Number(f.get('memMib')), image: f.get('image') });
      show('vms');
    } catch (err) { status.textContent = err.message; status.className = 'error'; }
  };
  main.querySelectorAll('[data-act]').forEach((b) => b.onclick = async () => {
    const { act, id } = b.dataset;
    if (act === 'open') return openVm(id);
    if (act === 'destroy' && !confirm('Destroy ' + id + '?')) return;
    b.disabled = true;
    try { if (act === 'destroy') await api('DELETE', '/vms/' + id); else await api('POST', '/vms/' + id + '/' + act); show('vms'); }
    catch (err) { alert(err.message); b.disabled = false; }
  });
}
async function openVm(id) {
  const detail = document.getElementById('detail');
  detail.innerHTML = '<section><h2>' + esc(id) + '</h2><form id="run">command <input name="cmd" size="60" value="uname -a"> ' +
    '<button>Run</button> (sh -c, as nobody, in /workspace)</form><pre id="out"></pre>' +
    '<p>log <select id="log-kind"><option>console</option><option>hypervisor</option></select> <button id="log-load">show last 200 lines</button></p><pre id="log"></pre></section>';
  document.getElementById('run').onsubmit = async (e) => {
    e.preventDefault();
    const out = document.getElementById('out');
    out.textContent = 'running…';
    try {
      const r = await api('POST', '/vms/' + id + '/exec', { cmd: ['sh', '-c', new FormData(e.target).get('cmd')] });
      out.textContent = r.stdout + (r.stderr ? '\\n[stderr]\\n' + r.stderr : '') + '\\n[exit ' + r.exitCode + (r.timedOut ? ', timed out' : '') + ']';
    } catch (err) { out.textContent = err.message; }
  };
  document.getElementById('log-load').onclick = async () => {
    const kind = document.getElementById('log-kind').value;
    try { document.getElementById('log').textContent = await api('GET', '/vms/' + id + '/logs?tail=200&kind=' + kind); }
    catch (err) { document.getElementById('log').textContent = err.message; }
  };
}
async function keys() {
  const list = await api('GET', '/keys');
  main.innerHTML = '<section><h2>Create an API key</h2><form id="create-key">name <input name="name" required> ' +
    'expires in days <input name="days" type="number" min="1" style="width:5em"> <button>Create</button></form><pre id="new-key" hidden></pre></section>' +
    '<section><h2>API keys</h2><table><tr><th>name</th><th>prefix</th><th>created</th><th>expires</th><th>last used</th><th>revoked</th><th></th></tr>' +
    list.keys.map((k) => '<tr><td>' + esc(k.name) + '</td><td>' + esc(k.prefix) + '</td><td>' + esc(k.createdAt) + '</td><td>' + esc(k.expiresAt || 'never') +
      '</td><td>' + esc(k.lastUsedAt || '—') + '</td><td>' + esc(k.revokedAt || '') + '</td><td>' +
      (k.revokedAt ? '' : '<button data-id="' + esc(k.id) + '">revoke</button>') + '</td></tr>').join('') + '</table></section>';
  document.getElementById('create-key').onsubmit = async (e) => {
    e.preventDefault();
    const f = new FormData(e.target);
    const days = Number(f.get('days'));
    const k = await api('POST', '/keys', { name: f.get('name'), ...(days > 0 && { expiresInSeconds: days * 86400 }) });
    await keys();
    const pre = document.getElementById('new-key');
    pre.hidden = false;
    pre.textContent = 'Copy this key now; it is not shown again:\\n' + k.key;
  };
  main.querySelectorAll('button[data-id]').forEach((b) => b.onclick = async () => {
    if (!confirm('Revoke this key?')) return;
    await api('DELETE', '/keys/' + b.dataset.id);
    keys();
  });
}
// key=value pairs separated by spaces: readable, and a long line wraps between pairs rather than inside a word.
const details = (d) => Object.entries(d || {}).map(([k, v]) => k + '=' + (typeof v === 'string' ? v : JSON.stringify(v))).join(' ');
function activityTable(rows) {
  return '<table><tr><th>when</th><th>action</th><th>VM</th><th>actor</th><th>details</th></tr>' +
    (rows.length === 0 ? '<tr><td colspan="5">No activity yet.</td></tr>' : '') +
    rows.map((a) => '<tr><td style="white-space:nowrap">' + esc(new Date(a.createdAt).toLocaleString()) + '</td><td style="white-space:nowrap">' + esc(a.action) + '</td><td>' + esc(a.vmId) + '</td><td>' + esc(a.actor) +
      '</td><td><code>' + esc(details(a.details)) + '</code></td></tr>').join('') + '</table>';
}
async function activity() {
  const act = await api('GET', '/activity?limit=200');
  main.innerHTML = '<section><h2>Activity</h2>' + activityTable(act.activity) + '</section>';
}
api('GET', '/admin/session').then(() => show('overview'), () => {});
</script>
</body>
</html>
`;

export function adminConsoleRoutes() {
  return async (app: FastifyInstance) => {
    const send = async (_request: unknown, reply: import('fastify').FastifyReply) =>
      reply
        .header('content-type', 'text/html; charset=utf-8')
        .header('cache-control', 'no-store')
        .header('x-frame-options', 'DENY')
        .header(
          'content-security-policy',
          "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; frame-ancestors 'none'",
        )
        .send(PAGE);
    app.get('/', { schema: { hide: true } }, send);
    app.get('/*', { schema: { hide: true } }, send);
  };
}
