// logbelt web console. No framework, no build step.
//
// Log text is hostile input: it reaches the page only through text nodes and textContent,
// never as HTML. Attributes are set only from values this script makes (numbers, level names
// from a fixed list), and the server's Content-Security-Policy allows no inline script.
'use strict';

const LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal'];
const RANGES = { '15m': 15 * 60, '1h': 3600, '24h': 86400, '7d': 7 * 86400 };
const BUCKET_SECS = { '1m': 60, '1h': 3600, '1d': 86400 };
const PAGE = 100;              // events per request
const RENDER_CAP = 2000;       // characters of one event's text shown before "show all"
const DETAIL_CAP = 200000;     // characters of the detail view shown before "show all"
const MAX_ROWS = 5000;         // rows kept in the list (a long live tail drops the oldest)
const MAX_KV = 12;             // field values shown under a message
const SVG = 'http://www.w3.org/2000/svg';

const $ = (id) => document.getElementById(id);

// ---------------------------------------------------------------------------------------------
// Safe DOM building: text only
// ---------------------------------------------------------------------------------------------

/** An element with a class and children (strings become text nodes). */
function el(tag, cls, ...children) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  for (const c of children) {
    if (c === null || c === undefined) continue;
    e.append(typeof c === 'string' ? document.createTextNode(c) : c);
  }
  return e;
}

/** Control characters (ANSI escapes among them) made visible: ESC → ␛, NUL → ␀ … */
function visible(s) {
  return String(s).replace(/[\u0000-\u0008\u000b-\u001f\u007f\u0080-\u009f]/g, (c) => {
    const n = c.charCodeAt(0);
    if (n < 0x20) return String.fromCharCode(0x2400 + n);
    if (n === 0x7f) return '\u2421';
    return '\ufffd';
  });
}

/** A span of `text`, cut at `cap` characters with a "show all" button. */
function capped(cls, text, cap) {
  const span = el('span', cls);
  const t = visible(text);
  if (t.length <= cap) {
    span.textContent = t;
    return span;
  }
  span.textContent = t.slice(0, cap) + '…';
  const more = el('button', 'show-all', `show all (${size(t.length)})`);
  more.type = 'button';
  more.addEventListener('click', (ev) => {
    ev.stopPropagation();
    span.textContent = t;
  });
  span.append(more);
  return span;
}

function size(chars) {
  if (chars < 1024) return `${chars} chars`;
  if (chars < 1024 * 1024) return `${(chars / 1024).toFixed(1)} K chars`;
  return `${(chars / 1024 / 1024).toFixed(1)} M chars`;
}

function bytes(n) {
  if (n === null || n === undefined) return '-';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = Math.abs(n), u = 0;
  while (v >= 1024 && u < units.length - 1) { v /= 1024; u++; }
  return (n < 0 ? '-' : '') + (u === 0 ? `${v} B` : `${v.toFixed(1)} ${units[u]}`);
}

function levelClass(level) {
  return LEVELS.includes(level) ? `lv-${level}` : 'lv-none';
}

/** `2026-11-27T21:30:19.454131Z` → `2026-11-27 21:30:19.454` (UTC, as stored). */
function shortTs(ts) {
  return ts ? ts.replace('T', ' ').slice(0, 23) : '-';
}

// ---------------------------------------------------------------------------------------------
// State, kept in the URL
// ---------------------------------------------------------------------------------------------

let eventsSearch = '';  // the events view's URL query, kept while another view is shown

const state = { q: '', levels: [], range: '1h', since: '', until: '', fields: [], source: '', host: '', live: false };

function readUrl() {
  const u = new URLSearchParams(location.search);
  state.q = u.get('q') || '';
  state.levels = (u.get('level') || '').split(',').filter((l) => l);
  state.range = u.get('range') || '1h';
  state.since = u.get('since') || '';
  state.until = u.get('until') || '';
  state.fields = u.getAll('field');
  state.source = u.get('source') || '';
  state.host = u.get('host') || '';
  state.live = u.get('live') === '1';
}

function writeUrl() {
  const u = new URLSearchParams();
  if (state.q) u.set('q', state.q);
  if (state.levels.length) u.set('level', state.levels.join(','));
  u.set('range', state.range);
  if (state.range === 'custom') {
    if (state.since) u.set('since', state.since);
    if (state.until) u.set('until', state.until);
  }
  for (const f of state.fields) u.append('field', f);
  if (state.source) u.set('source', state.source);
  if (state.host) u.set('host', state.host);
  if (state.live) u.set('live', '1');
  eventsSearch = `?${u}`;
  history.replaceState(null, '', `${location.pathname}${eventsSearch}`);
}

/** The API's filter parameters for the current state (`time`: with the time range). */
function filterParams(time) {
  const p = new URLSearchParams();
  if (state.q) p.set('q', state.q);
  if (state.levels.length) p.set('level', state.levels.join(','));
  for (const f of state.fields) p.append('field', f);
  if (state.source) p.set('source', state.source);
  if (state.host) p.set('host', state.host);
  if (time) {
    if (state.range === 'custom') {
      if (state.since) p.set('since', state.since);
      if (state.until) p.set('until', state.until);
    } else if (RANGES[state.range]) {
      p.set('since', new Date(Date.now() - RANGES[state.range] * 1000).toISOString());
    }
  }
  return p;
}

// ---------------------------------------------------------------------------------------------
// The API, with the token when the server wants one
// ---------------------------------------------------------------------------------------------

const TOKEN_KEY = 'logbelt-token';
let tokenWait = null;

function askToken() {
  if (!tokenWait) {
    tokenWait = new Promise((resolve) => {
      $('token-box').hidden = false;
      $('token-input').focus();
      $('token-form').onsubmit = (ev) => {
        ev.preventDefault();
        sessionStorage.setItem(TOKEN_KEY, $('token-input').value.trim());
        $('token-box').hidden = true;
        tokenWait = null;
        resolve();
      };
    });
  }
  return tokenWait;
}

function authHeaders() {
  const t = sessionStorage.getItem(TOKEN_KEY);
  return t ? { Authorization: `Bearer ${t}` } : {};
}

/** GET `path` → parsed JSON; asks for the token on 401; throws Error(message) otherwise. */
async function api(path, signal) {
  for (;;) {
    const r = await fetch(path, { headers: authHeaders(), signal });
    if (r.status === 401) {
      await askToken();
      continue;
    }
    const body = await r.json().catch(() => ({ error: `HTTP ${r.status}` }));
    if (!r.ok) throw new Error(body.error || `HTTP ${r.status}`);
    return body;
  }
}

function busy(on) {
  document.body.dataset.loading = on ? '1' : '0';
}

// ---------------------------------------------------------------------------------------------
// Events: the list, newest first, with infinite scroll
// ---------------------------------------------------------------------------------------------

let generation = 0;   // a new search makes older answers stale
let cursor = null;    // `before` of the next older page
let loadingMore = false;

function eventRow(ev) {
  const li = el('li', null);
  li.dataset.id = String(ev.id);
  li.dataset.cursor = `${ev.ts || '-'},${ev.id}`;
  const level = ev.level || '-';
  const text = ev.message !== null && ev.message !== undefined ? ev.message : JSON.stringify(ev.fields);
  const msg = el('div', 'msg', capped('text', text, RENDER_CAP));
  const kvs = el('div', 'kvs');
  for (const [k, v] of scalars(ev.fields, '', [])) {
    if (kvs.childElementCount >= MAX_KV) break;
    if (['msg', 'message', 'ts', 'time', 'timestamp', 'level'].includes(k)) continue;
    const shown = `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`;
    const kv = el('span', 'kv', visible(shown.length > 80 ? `${shown.slice(0, 80)}…` : shown));
    kv.title = 'Filter on this value';
    kv.addEventListener('click', (e) => {
      e.stopPropagation();
      addField(k, v);
    });
    kvs.append(kv);
  }
  if (kvs.childNodes.length) msg.append(kvs);
  li.append(
    el('span', 'ts', shortTs(ev.ts)),
    el('span', `lv ${levelClass(level)}`, visible(level)),
    el('span', 'src', visible(ev.source)),
    msg,
  );
  li.addEventListener('click', () => showDetail(`Event ${ev.id}`, ev));
  return li;
}

/** The scalar values of an object with their dotted paths (keys a filter can name only). */
function scalars(obj, prefix, out) {
  if (!obj || typeof obj !== 'object' || Array.isArray(obj)) return out;
  for (const [k, v] of Object.entries(obj)) {
    if (out.length >= 4 * MAX_KV) break;
    if (!k || k.includes('.') || k.includes('"')) continue;
    if (v !== null && typeof v === 'object') scalars(v, `${prefix}${k}.`, out);
    else out.push([prefix + k, v]);
  }
  return out;
}

function summary(text, error) {
  const s = $('summary');
  s.textContent = text;
  s.className = error ? 'summary error-line' : 'summary';
}

async function loadEvents(reset) {
  const gen = reset ? ++generation : generation;
  if (reset) {
    cursor = null;
    $('events').replaceChildren();
  } else if (!cursor || loadingMore) {
    return;
  }
  loadingMore = true;
  busy(true);
  const p = filterParams(true);
  p.set('limit', String(PAGE));
  if (cursor) p.set('before', cursor);
  let ok = false;
  try {
    const r = await api(`/api/events?${p}`);
    if (gen !== generation) return;
    const list = $('events');
    for (const ev of r.events) list.append(eventRow(ev));
    cursor = r.next;
    const n = list.childElementCount;
    list.dataset.count = String(n);
    ok = true;
    summary(n === 0 ? 'No matching events.' : `${n} event${n === 1 ? '' : 's'} shown${r.more ? ', scroll for older' : ''}.`);
  } catch (e) {
    if (gen === generation) summary(e.message, true);
  } finally {
    if (gen === generation) {
      loadingMore = false;
      busy(false);
      // A page that does not fill the window: the observer sees no change, so ask here.
      if (ok && cursor && $('sentinel').getBoundingClientRect().top < innerHeight) loadEvents(false);
    }
  }
}

function addField(key, value) {
  // JSON: a string is quoted, so "500" stays a string and 500 a number.
  const f = `${key}=${JSON.stringify(value)}`;
  if (!state.fields.includes(f)) state.fields.push(f);
  search();
}

function renderChips() {
  const chips = $('chips');
  chips.replaceChildren();
  const chip = (label, remove) => {
    const b = el('button', null, `${visible(label)} ×`);
    b.type = 'button';
    b.title = 'Remove this filter';
    b.addEventListener('click', () => { remove(); search(); });
    chips.append(b);
  };
  state.fields.forEach((f) => chip(f, () => { state.fields = state.fields.filter((x) => x !== f); }));
  if (state.source) chip(`source=${state.source}`, () => { state.source = ''; });
  if (state.host) chip(`host=${state.host}`, () => { state.host = ''; });
}

function renderLevels() {
  for (const b of $('levels').children) {
    b.setAttribute('aria-pressed', String(state.levels.includes(b.dataset.level)));
  }
}

/** Applies the form and the state: URL, list, histogram, live tail. */
function search() {
  state.q = $('q').value.trim();
  state.range = $('range').value;
  state.since = $('since').value.trim();
  state.until = $('until').value.trim();
  $('custom').hidden = state.range !== 'custom';
  writeUrl();
  renderChips();
  renderLevels();
  loadEvents(true);
  loadHistogram();
  restartTail();
}

// ---------------------------------------------------------------------------------------------
// Histogram: stacked bars by level; a drag selects a time range
// ---------------------------------------------------------------------------------------------

let hist = null;  // { t0, t1 (ms), width (px) } of the last drawing

function svgEl(tag, attrs) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  return e;
}

async function loadHistogram() {
  const gen = generation;
  const svg = $('hist');
  try {
    const h = await api(`/api/histogram?${filterParams(true)}`);
    if (gen !== generation) return;
    drawHistogram(svg, h);
  } catch (e) {
    if (gen !== generation) return;
    const note = svgEl('text', { x: 8, y: 20 });
    note.setAttribute('class', 'error-line');
    note.textContent = `histogram: ${e.message}`;
    svg.replaceChildren(note);
    hist = null;
  }
}

function drawHistogram(svg, h) {
  const width = svg.clientWidth || 800, height = svg.clientHeight || 130;
  const pad = { l: 36, r: 8, t: 6, b: 18 };
  const step = BUCKET_SECS[h.bucket] * 1000;
  const times = h.buckets.map((b) => Date.parse(b.t));
  let t0 = h.since ? Date.parse(h.since) : (times.length ? Math.min(...times) : Date.now() - 3600e3);
  let t1 = h.until ? Date.parse(h.until) : Date.now();
  t0 = Math.floor(t0 / step) * step;
  t1 = Math.max(t1, t0 + step);
  const totals = h.buckets.map((b) => Object.values(b.levels).reduce((a, n) => a + n, 0));
  const max = Math.max(1, ...totals);
  const x = (t) => pad.l + ((t - t0) / (t1 - t0)) * (width - pad.l - pad.r);
  const y = (n) => height - pad.b - (n / max) * (height - pad.t - pad.b);
  svg.setAttribute('viewBox', `0 0 ${width} ${height}`);
  svg.replaceChildren();
  const order = [...LEVELS, '-'];
  h.buckets.forEach((b, i) => {
    const bx = x(times[i]);
    const bw = Math.max(1, x(times[i] + step) - bx - 1);
    let acc = 0;
    const levels = Object.keys(b.levels).sort((a, c) => order.indexOf(a) - order.indexOf(c));
    for (const lv of levels) {
      const n = b.levels[lv];
      const r = svgEl('rect', { x: bx, y: y(acc + n), width: bw, height: Math.max(0, y(acc) - y(acc + n)) });
      r.setAttribute('class', levelClass(lv));
      r.setAttribute('fill', 'currentColor');
      const title = document.createElementNS(SVG, 'title');
      title.textContent = `${shortTs(b.t)}  ${visible(lv)}: ${n}`;
      r.append(title);
      svg.append(r);
      acc += n;
    }
  });
  const axis = svgEl('text', { x: 2, y: pad.t + 8 });
  axis.textContent = String(max);
  svg.append(axis);
  for (let i = 0; i <= 4; i++) {
    const t = t0 + ((t1 - t0) * i) / 4;
    const label = svgEl('text', { x: x(t), y: height - 4, 'text-anchor': i === 0 ? 'start' : i === 4 ? 'end' : 'middle' });
    label.textContent = new Date(t).toISOString().replace('T', ' ').slice(5, 16);
    svg.append(label);
  }
  svg.dataset.buckets = String(h.buckets.length);
  hist = { t0, t1, width, pad };
}

function dragToZoom() {
  const svg = $('hist');
  let start = null, sel = null;
  const px = (ev) => {
    const r = svg.getBoundingClientRect();
    return ((ev.clientX - r.left) / r.width) * (hist ? hist.width : r.width);
  };
  svg.addEventListener('pointerdown', (ev) => {
    if (!hist) return;
    start = px(ev);
    sel = svgEl('rect', { x: start, y: 0, width: 0, height: '100%' });
    sel.setAttribute('class', 'sel');
    svg.append(sel);
    svg.setPointerCapture(ev.pointerId);
  });
  svg.addEventListener('pointermove', (ev) => {
    if (start === null) return;
    const p = px(ev);
    sel.setAttribute('x', String(Math.min(start, p)));
    sel.setAttribute('width', String(Math.abs(p - start)));
  });
  svg.addEventListener('pointerup', (ev) => {
    if (start === null) return;
    const a = Math.min(start, px(ev)), b = Math.max(start, px(ev));
    start = null;
    sel.remove();
    if (b - a < 4 || !hist) return;
    const { t0, t1, width, pad } = hist;
    const t = (p) => t0 + ((p - pad.l) / (width - pad.l - pad.r)) * (t1 - t0);
    const from = new Date(Math.max(t0, t(a))), to = new Date(Math.min(t1, t(b)));
    $('range').value = 'custom';
    $('since').value = from.toISOString();
    $('until').value = to.toISOString();
    search();
  });
}

// ---------------------------------------------------------------------------------------------
// Live tail: Server-Sent Events read through fetch (so the token can go in a header)
// ---------------------------------------------------------------------------------------------

let tail = null;  // AbortController of the running tail

function restartTail() {
  if (tail) tail.abort();
  tail = null;
  $('live').checked = state.live;
  if (state.live) runTail();
}

async function runTail() {
  const ctl = new AbortController();
  tail = ctl;
  let lastId = null;
  while (!ctl.signal.aborted) {
    try {
      const headers = authHeaders();
      if (lastId !== null) headers['Last-Event-ID'] = String(lastId);
      const r = await fetch(`/api/tail?${filterParams(false)}`, { headers, signal: ctl.signal });
      if (r.status === 401) { await askToken(); continue; }
      if (!r.ok) throw new Error((await r.json().catch(() => ({}))).error || `HTTP ${r.status}`);
      $('live').dataset.open = '1';
      const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += value;
        let end;
        while ((end = buf.indexOf('\n\n')) >= 0) {
          const message = buf.slice(0, end);
          buf = buf.slice(end + 2);
          const id = onTailMessage(message);
          if (id !== null) lastId = id;
        }
      }
    } catch (e) {
      if (ctl.signal.aborted) return;
      summary(`live tail: ${e.message}; retrying`, true);
    }
    $('live').dataset.open = '0';
    await new Promise((r) => setTimeout(r, 2000));
  }
}

/** One SSE message: an event goes on top of the list. Returns its id, if any. */
function onTailMessage(message) {
  let id = null, data = '', kind = 'message';
  for (const line of message.split('\n')) {
    if (line.startsWith('id: ')) id = Number(line.slice(4));
    else if (line.startsWith('data: ')) data += line.slice(6);
    else if (line.startsWith('event: ')) kind = line.slice(7);
  }
  if (!data) return id;
  const obj = JSON.parse(data);
  if (kind === 'error') {
    summary(`live tail: ${obj.error}`, true);
    return id;
  }
  const list = $('events');
  const li = eventRow(obj);
  li.classList.add('new');
  list.prepend(li);
  while (list.childElementCount > MAX_ROWS) {
    list.lastElementChild.remove();
    cursor = list.lastElementChild.dataset.cursor;
  }
  list.dataset.count = String(list.childElementCount);
  return id;
}

// ---------------------------------------------------------------------------------------------
// Detail: the whole JSON, pretty-printed, and a copy button
// ---------------------------------------------------------------------------------------------

let detailText = '';

function showDetail(title, obj) {
  detailText = JSON.stringify(obj, null, 2);
  $('detail-title').textContent = visible(title);
  const pre = $('detail-json');
  pre.replaceChildren(capped('text', detailText, DETAIL_CAP));
  $('copied').textContent = '';
  $('detail').showModal();
}

async function copyDetail() {
  try {
    await navigator.clipboard.writeText(detailText);
    $('copied').textContent = 'Copied.';
  } catch (e) {
    // No clipboard (not a secure context): select the text for Ctrl-C.
    const range = document.createRange();
    range.selectNodeContents($('detail-json'));
    const s = getSelection();
    s.removeAllRanges();
    s.addRange(range);
    $('copied').textContent = 'Selected: press Ctrl-C.';
  }
}

// ---------------------------------------------------------------------------------------------
// Files and dead letters
// ---------------------------------------------------------------------------------------------

async function loadFiles() {
  busy(true);
  try {
    const s = await api('/api/files');
    const body = $('files-table').tBodies[0];
    body.replaceChildren();
    for (const f of s.files) {
      const cell = (text, cls) => el('td', cls, visible(text));
      const tr = el('tr', null,
        cell(f.source), cell(f.host + (f.this_host ? ' *' : '')), cell(f.path),
        cell(bytes(f.committed_offset), 'num'), cell(bytes(f.size), 'num'),
        cell(bytes(f.lag), 'num'), cell(shortTs(f.updated_at)));
      body.append(tr);
    }
    const t = s.totals;
    $('files-summary').textContent =
      `${t.files} files, ${t.log_events} events, ${t.dead_letters} dead letters (this host: ${visible(s.host)}, marked *)`;
  } catch (e) {
    $('files-summary').textContent = e.message;
  } finally {
    busy(false);
  }
}

let deadCursor = null;

async function loadDead(reset) {
  busy(true);
  if (reset) {
    deadCursor = null;
    $('dead-list').replaceChildren();
  }
  try {
    const r = await api(`/api/dead_letters?limit=${PAGE}${deadCursor ? `&before=${deadCursor}` : ''}`);
    for (const d of r.dead_letters) {
      const li = el('li', 'dead',
        el('span', 'ts', shortTs(d.ingested_at)),
        el('span', 'src', visible(`${d.source} @ ${d.host}`)),
        el('div', 'msg',
          el('div', 'err', visible(d.error)),
          capped('text', d.raw, RENDER_CAP),
          d.truncated ? el('div', 'summary', `(first ${bytes(d.raw.length)} of ${bytes(d.raw_bytes)})`) : null));
      li.dataset.id = String(d.id);
      $('dead-list').append(li);
    }
    deadCursor = r.next;
    $('dead-more').hidden = deadCursor === null;
  } catch (e) {
    $('dead-list').append(el('li', 'error-line', e.message));
  } finally {
    busy(false);
  }
}

// ---------------------------------------------------------------------------------------------
// Views and start-up
// ---------------------------------------------------------------------------------------------

function show(view) {
  for (const v of ['events', 'files', 'dead']) {
    $(`view-${v}`).hidden = v !== view;
    $(`nav-${v}`).classList.toggle('active', v === view);
  }
  if (view !== 'events' && tail) { tail.abort(); tail = null; }
  if (view === 'files') loadFiles();
  else if (view === 'dead') loadDead(true);
  else {
    readUrl();
    $('q').value = state.q;
    $('range').value = state.range in RANGES || state.range === 'all' ? state.range : 'custom';
    $('since').value = state.since;
    $('until').value = state.until;
    search();
  }
}

function viewOf(path) {
  return path === '/files' ? 'files' : path === '/dead' ? 'dead' : 'events';
}

function start() {
  const levels = $('levels');
  for (const lv of LEVELS) {
    const b = el('button', `lv-${lv}`, lv);
    b.type = 'button';
    b.dataset.level = lv;
    b.addEventListener('click', () => {
      state.levels = state.levels.includes(lv) ? state.levels.filter((l) => l !== lv) : [...state.levels, lv];
      search();
    });
    levels.append(b);
  }
  $('search-form').addEventListener('submit', (ev) => { ev.preventDefault(); search(); });
  $('range').addEventListener('change', () => {
    if ($('range').value !== 'custom') search();
    else $('custom').hidden = false;
  });
  $('live').addEventListener('change', () => { state.live = $('live').checked; writeUrl(); restartTail(); });
  $('copy').addEventListener('click', copyDetail);
  $('close').addEventListener('click', () => $('detail').close());
  $('dead-more').addEventListener('click', () => loadDead(false));
  document.addEventListener('keydown', (ev) => {
    const typing = ['INPUT', 'SELECT', 'TEXTAREA'].includes(document.activeElement.tagName);
    if (ev.key === '/' && !typing) {
      ev.preventDefault();
      $('q').focus();
      $('q').select();
    }
  });
  for (const a of document.querySelectorAll('a[data-nav]')) {
    a.addEventListener('click', (ev) => {
      ev.preventDefault();
      const path = a.getAttribute('href');
      history.pushState(null, '', path === '/' ? `/${eventsSearch}` : path);
      show(viewOf(path));
    });
  }
  window.addEventListener('popstate', () => show(viewOf(location.pathname)));
  new IntersectionObserver((entries) => {
    if (entries.some((e) => e.isIntersecting)) loadEvents(false);
  }).observe($('sentinel'));
  dragToZoom();
  show(viewOf(location.pathname));
}

start();
