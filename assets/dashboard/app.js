// The dashboard: plain browser JavaScript, served as is (no build step, nothing from another host).
// Data comes from /dashboard/api (documented in /openapi.json); live changes arrive as
// Server-Sent Events on /dashboard/api/events, so nothing here polls the server.
// When the service has API_KEYS, the data needs a key: the page asks for it once, keeps it in
// sessionStorage (this tab only, gone when it closes) and sends it as `Authorization: Bearer`.
// That is why the events are read with fetch() rather than EventSource, which cannot send headers.

const API = '/dashboard/api';
const PAGE_SIZE = 24;

const $ = (id) => document.getElementById(id);
const state = {
  /** Cursors of the pages before the current one; the current page's own cursor last. */
  cursors: [undefined],
  next: null,
  /** Entries on screen by id. */
  shown: new Map(),
  status: null,
  examples: [],
  /** Named charts: `after` names of the pages before the current one, its own last. */
  chartPages: [undefined],
  chartsNext: null,
  /** Named charts on screen by name. */
  charts: new Map(),
};

// ---------- formatting ----------
const nf = new Intl.NumberFormat();
function bytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KB`;
  if (n < 1024 ** 3) return `${(n / 1024 / 1024).toFixed(1)} MB`;
  return `${(n / 1024 ** 3).toFixed(2)} GB`;
}
function left(seconds) {
  if (seconds <= 0) return 'expired';
  const s = Math.floor(seconds);
  const d = Math.floor(s / 86400);
  const h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = String(s % 60).padStart(2, '0');
  if (d > 0) return `${d} d ${h} h`;
  if (h > 0) return `${h} h ${String(m).padStart(2, '0')} min`;
  return `${m}:${sec}`;
}
function ago(ms) {
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  return `${Math.round(s / 3600)} h ago`;
}
const timeOfDay = new Intl.DateTimeFormat(undefined, { timeStyle: 'medium' });
const dayAndTime = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' });
/** Today's entries by time alone (most are), older ones with their day. */
function when(ms) {
  const d = new Date(ms);
  return d.toDateString() === new Date().toDateString()
    ? timeOfDay.format(d)
    : dayAndTime.format(d);
}
const TYPE_NAMES = { png: 'PNG', jpeg: 'JPEG', svg: 'SVG', pdf: 'PDF' };
const STATE_NAMES = { image: 'ready', api_request: 'pending', api_error: 'failed' };

function titleOf(e) {
  const s = e.query_summary;
  if (s?.title) return s.title;
  if (s) return `${s.metrics.join(', ') || 'Traffic'} by ${s.dimensions.join(', ') || 'total'}`;
  return `Chart ${e.id.slice(0, 12)}…`;
}
function lineOf(e) {
  const s = e.query_summary;
  if (!s) return 'Query details not recorded for this entry.';
  // Without a query_title the title already says what is measured: do not repeat it.
  const what = s.title
    ? `${s.metrics.join(', ') || 'default metric'} by ${s.dimensions.join(', ') || 'total'}`
    : undefined;
  const type = TYPE_NAMES[mimeType(e) ?? s.image_type] ?? s.image_type.toUpperCase();
  return [what, s.time, s.devices, type].filter(Boolean).join(' · ');
}
function mimeType(e) {
  return {
    'image/png': 'png',
    'image/jpeg': 'jpeg',
    'image/svg+xml': 'svg',
    'application/pdf': 'pdf',
  }[e.mime];
}
const imageUrl = (id) => `${location.origin}/image/${id}`;

// ---------- API key ----------
const KEY_STORE = 'kic-api-key';
function apiKey() {
  try {
    return sessionStorage.getItem(KEY_STORE) ?? '';
  } catch {
    return '';
  }
}
function withKey(headers) {
  const key = apiKey();
  return key ? { ...headers, authorization: `Bearer ${key}` } : headers;
}
/** The service answered 401: show the key form, saying why. */
function needKey(msg) {
  $('key-form').hidden = false;
  $('key-msg').textContent = apiKey()
    ? 'That key was refused. Enter a valid API key.'
    : (msg ?? 'This service needs an API key.');
}
function useKey(ev) {
  ev.preventDefault();
  const key = $('api-key').value.trim();
  if (!key) return;
  try {
    sessionStorage.setItem(KEY_STORE, key);
  } catch {
    // Storage disabled: the key is not kept; nothing can be loaded then.
  }
  $('api-key').value = '';
  $('key-form').hidden = true;
  connect();
  loadExamples();
  restart();
}

// ---------- data ----------
async function getJson(url) {
  const res = await fetch(url, { headers: withKey({ accept: 'application/json' }) });
  const body = await res.json().catch(() => ({}));
  if (res.status === 401) needKey(body.msg);
  if (!res.ok) throw new Error(body.msg ?? `${url} answered ${res.status}`);
  return body;
}

function filters() {
  const p = new URLSearchParams({ limit: String(PAGE_SIZE) });
  const q = $('q').value.trim();
  if (q) p.set('q', q);
  if ($('type').value) p.set('image_type', $('type').value);
  if ($('failures').checked) p.set('state', 'failed');
  return p;
}

let loadSeq = 0;
async function loadPage() {
  const seq = ++loadSeq;
  const p = filters();
  const cursor = state.cursors.at(-1);
  if (cursor) p.set('cursor', cursor);
  let page;
  try {
    page = await getJson(`${API}/entries?${p}`);
  } catch (err) {
    $('summary').textContent = `Could not load the charts: ${err.message}`;
    return;
  }
  if (seq !== loadSeq) return; // a newer request is on its way
  state.next = page.next_cursor;
  render(page.entries);
  const first = (state.cursors.length - 1) * PAGE_SIZE;
  const filtered = p.has('q') || p.has('image_type') || p.has('state');
  const shown = `${nf.format(first + 1)}–${nf.format(first + page.entries.length)}`;
  $('summary').textContent =
    page.entries.length === 0
      ? page.next_cursor
        ? 'No matches among the newest entries searched so far: “Older →” searches further.'
        : filtered
          ? 'No entries match these filters.'
          : 'The cache is empty. Create a chart with “New chart” above, or POST a query to /requests.'
      : page.matched === null
        ? `Showing matches ${shown}, newest first.`
        : `Showing ${shown} of ${nf.format(page.matched)} ${filtered ? 'matching ' : ''}entries, newest first.`;
  $('newer').disabled = state.cursors.length <= 1;
  $('older').disabled = !state.next;
}

// ---------- rendering ----------
function render(entries) {
  const gallery = $('gallery');
  const keep = new Map();
  const nodes = entries.map((e) => {
    const old = state.shown.get(e.id);
    // A card is rebuilt only when its kind of thumbnail changes (pending → image, say).
    const node = old && old.node.dataset.type === e.type ? old.node : createCard(e);
    fillCard(node, e);
    keep.set(e.id, { entry: e, node });
    return node;
  });
  gallery.replaceChildren(...nodes);
  state.shown = keep;
}

function createCard(e) {
  const node = $('card').content.firstElementChild.cloneNode(true);
  node.dataset.id = e.id;
  node.dataset.type = e.type;
  const thumb = node.querySelector('.thumb');
  const title = titleOf(e);
  if (e.type === 'image' && e.mime === 'application/pdf') {
    const a = document.createElement('a');
    a.href = `/image/${e.id}`;
    a.className = 'pdf-tile';
    a.target = '_blank';
    a.rel = 'noopener';
    a.setAttribute('aria-label', `Open the PDF: ${title}`);
    a.innerHTML = '<span class="pdf-icon" aria-hidden="true">PDF</span><span>Open PDF</span>';
    thumb.append(a);
  } else if (e.type === 'image') {
    const a = document.createElement('a');
    a.href = `/image/${e.id}`;
    a.target = '_blank';
    a.rel = 'noopener';
    const img = document.createElement('img');
    img.src = `/image/${e.id}`;
    img.alt = `Chart: ${title} (${lineOf(e)})`;
    img.loading = 'lazy';
    img.decoding = 'async';
    a.append(img);
    thumb.append(a);
  } else if (e.type === 'api_request') {
    thumb.classList.add('pending');
    thumb.innerHTML =
      '<span class="spinner" aria-hidden="true"></span><span class="waiting">Fetching from Kentik… <span class="elapsed"></span></span>';
  } else {
    thumb.classList.add('failed');
    const strong = document.createElement('strong');
    strong.textContent = `Kentik said ${e.error?.status ?? e.status}`;
    thumb.append(strong);
  }
  for (const b of node.querySelectorAll('[data-copy]'))
    b.addEventListener('click', () => copy(node, b.dataset.copy));
  return node;
}

function fillCard(node, e) {
  node.dataset.state = STATE_NAMES[e.type];
  node.dataset.expiration = String(e.expiration);
  node.dataset.created = String(e.created);
  const title = titleOf(e);
  node.querySelector('.title').textContent = title;
  node.querySelector('.title').title = e.id;
  node.querySelector('.line').textContent = lineOf(e);
  const err = node.querySelector('.error');
  if (e.type === 'api_error') {
    err.hidden = false;
    err.textContent = e.error ? e.error.message : `Failed with status ${e.status}`;
    err.title = err.textContent; // the card shows the first lines; the whole message on hover
  } else err.hidden = true;
  const st = node.querySelector('.state');
  st.textContent = STATE_NAMES[e.type];
  st.className = `state badge ${STATE_NAMES[e.type]}`;
  const created = node.querySelector('.created');
  created.textContent = when(e.created * 1000);
  created.title = new Date(e.created * 1000).toString();
  node.querySelector('.size').textContent = e.type === 'api_request' ? '—' : bytes(e.size);
  node.querySelector('.served').textContent = `${nf.format(e.served)}×`;
  node.querySelector('.shares').textContent = nf.format(e.shares);
  for (const b of node.querySelectorAll('[data-copy]')) {
    b.disabled = e.type === 'api_error';
    b.setAttribute('aria-label', `${b.textContent}: ${title}`);
  }
  tickCard(node, Date.now());
}

function tickCard(node, now) {
  const secondsLeft = Number(node.dataset.expiration) - now / 1000;
  node.querySelector('.left').textContent = left(secondsLeft);
  if (secondsLeft <= 0) node.classList.add('expired');
  const elapsed = node.querySelector('.elapsed');
  if (elapsed)
    elapsed.textContent = `${Math.max(0, Math.round(now / 1000 - Number(node.dataset.created)))} s`;
}

// The countdowns run on the local clock; this touches no server.
setInterval(() => {
  const now = Date.now();
  for (const { node } of state.shown.values()) tickCard(node, now);
  for (const { node } of state.charts.values()) tickChart(node, now);
}, 1000);

// ---------- share ----------
function snippet(kind, url, alt) {
  if (kind === 'url') return url;
  if (kind === 'markdown') return `![${alt.replace(/[[\]\\]/g, '\\$&')}](${url})`;
  return `<img src="${url}" alt="${alt.replace(/&/g, '&amp;').replace(/"/g, '&quot;').replace(/</g, '&lt;')}">`;
}

async function share(kind, url, alt, what) {
  const text = snippet(kind, url, alt);
  try {
    await navigator.clipboard.writeText(text);
    toast(
      `Copied ${kind === 'url' ? what : `a ${kind === 'html' ? 'HTML' : 'Markdown'} snippet`}.`,
    );
  } catch {
    toast(`Copy failed; here it is to copy by hand: ${text}`);
  }
}

function copy(node, kind) {
  const id = node.dataset.id;
  const entry = state.shown.get(id)?.entry;
  return share(kind, imageUrl(id), entry ? titleOf(entry) : 'Kentik chart', 'the image URL');
}

let toastTimer;
function toast(msg) {
  const t = $('toast');
  t.textContent = msg;
  t.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => (t.hidden = true), 4000);
}

// ---------- status bar ----------
function renderStatus(s) {
  state.status = s;
  const e = s.entries;
  $('st-entries').innerHTML = '';
  $('st-entries').append(
    badge('ready', `${nf.format(e.ready)} ready`),
    badge('pending', `${nf.format(e.pending)} pending`),
    badge('failed', `${nf.format(e.failed)} failed`),
  );
  $('st-bytes').textContent = `${bytes(s.stored_bytes)} stored`;
  const r = s.requests;
  $('st-requests').textContent =
    `Requests: ${nf.format(r.hit)} hit · ${nf.format(r.shared)} shared · ${nf.format(r.miss)} miss`;
  const u = s.upstream;
  const plural = (n, word) => `${nf.format(n)} ${word}${n === 1 ? '' : 's'}`;
  let up = `Kentik, last ${u.minutes} min: ${plural(u.calls, 'call')}, ${plural(u.errors, 'error')}`;
  if (u.last_error) up += ` · last error ${u.last_error.status} ${ago(u.last_error.at)}`;
  $('st-upstream').textContent = up;
  $('st-upstream').title = u.last_error ? u.last_error.message : 'No upstream error since start';
  $('st-upstream').classList.toggle('warn', u.errors > 0);
  $('st-backend').textContent = `Backend: ${s.backend}`;
  if (!$('ttl').value) $('ttl').value = String(s.default_ttl);
  $('ttl').max = String(s.max_ttl);
  chartsStatus(s.charts);
}
function badge(kind, text) {
  const span = document.createElement('span');
  span.className = `badge ${kind}`;
  span.textContent = text;
  return span;
}

// ---------- named charts ----------
// Listed from /dashboard/api/charts. Charts change when they are defined or deleted and when a
// refresh lands; both show in the pushed status (a refresh is a cache request), so the list is
// reloaded from status events, at most every CHARTS_RELOAD_MS unless the number of charts changed.
const CHARTS_PAGE = 12;
const CHARTS_RELOAD_MS = 5000;
const chartUrl = (name) => `${location.origin}/charts/${name}/image`;
const HEALTH_NAMES = { fresh: 'fresh', stale: 'stale', failing: 'failing', waiting: 'waiting' };
const HEALTH_HINTS = {
  fresh: 'The image is younger than the refresh period',
  stale: 'Older than the refresh period: the next view fetches a new one',
  failing: 'The last refresh failed; the last good image, if any, is still served',
  waiting: 'No image yet: the first view fetches it',
};
const HEALTH_BADGES = { fresh: 'ready', stale: 'pending', failing: 'failed', waiting: 'pending' };

function every(seconds) {
  if (seconds % 86400 === 0) return `every ${seconds / 86400} d`;
  if (seconds % 3600 === 0) return `every ${seconds / 3600} h`;
  if (seconds % 60 === 0) return `every ${seconds / 60} min`;
  return `every ${seconds} s`;
}
/** A chart as the entry helpers see it, so titles and lines read the same as for entries. */
const asEntry = (c) => ({ id: c.name, query_summary: c.query_summary, mime: c.image?.mime });

let chartsDefined = -1;
let chartsLoadedAt = 0;
let chartsTimer;
function chartsStatus(charts) {
  const changed = charts.defined !== chartsDefined;
  chartsDefined = charts.defined;
  if (chartsTimer) return;
  const wait = changed ? 0 : Math.max(0, chartsLoadedAt + CHARTS_RELOAD_MS - Date.now());
  chartsTimer = setTimeout(() => {
    chartsTimer = undefined;
    loadCharts();
  }, wait);
}

let chartsSeq = 0;
async function loadCharts() {
  const seq = ++chartsSeq;
  chartsLoadedAt = Date.now();
  const p = new URLSearchParams({ limit: String(CHARTS_PAGE) });
  const after = state.chartPages.at(-1);
  if (after) p.set('after', after);
  let page;
  try {
    page = await getJson(`${API}/charts?${p}`);
  } catch (err) {
    $('charts-summary').textContent = `Could not load the named charts: ${err.message}`;
    return;
  }
  if (seq !== chartsSeq) return;
  // The page we were on emptied (its charts deleted): back to the first.
  if (page.charts.length === 0 && state.chartPages.length > 1) {
    state.chartPages = [undefined];
    return loadCharts();
  }
  state.chartsNext = page.next;
  $('charts').hidden = page.total === 0;
  renderCharts(page.charts);
  const first = (state.chartPages.length - 1) * CHARTS_PAGE;
  $('charts-summary').textContent =
    page.total <= CHARTS_PAGE
      ? `${nf.format(page.total)} named chart${page.total === 1 ? '' : 's'}: each URL always shows a fresh image.`
      : `Charts ${nf.format(first + 1)}–${nf.format(first + page.charts.length)} of ${nf.format(page.total)}, by name: each URL always shows a fresh image.`;
  $('charts-pager').hidden = page.total <= CHARTS_PAGE;
  $('charts-prev').disabled = state.chartPages.length <= 1;
  $('charts-more').disabled = !state.chartsNext;
}

/** What the thumbnail shows: rebuilt only when this changes (a new image, a PDF, a failure). */
function thumbKey(c) {
  if (
    (c.image?.mime ?? '') === 'application/pdf' ||
    (!c.image && c.query_summary.image_type === 'pdf')
  )
    return `pdf:${c.image?.fetched_at ?? ''}`;
  if (!c.image && c.health === 'failing') return 'failed';
  return `img:${c.image?.fetched_at ?? ''}`;
}

function renderCharts(charts) {
  const keep = new Map();
  const nodes = charts.map((c) => {
    const old = state.charts.get(c.name)?.node;
    const key = thumbKey(c);
    let node = old;
    if (!old || old.dataset.thumb !== key) {
      // The first image just arrived in a thumbnail that was waiting for it: nothing to reload.
      const img = old?.querySelector('img');
      if (old?.dataset.thumb === 'img:' && key.startsWith('img:') && img?.naturalWidth > 0)
        old.dataset.thumb = key;
      else node = createChartCard(c, key);
    }
    fillChartCard(node, c);
    keep.set(c.name, { chart: c, node });
    return node;
  });
  $('charts-list').replaceChildren(...nodes);
  state.charts = keep;
}

function createChartCard(c, key) {
  const node = $('chart-card').content.firstElementChild.cloneNode(true);
  node.dataset.name = c.name;
  node.dataset.thumb = key;
  const thumb = node.querySelector('.thumb');
  const e = asEntry(c);
  const href = `/charts/${c.name}/image`;
  if (key.startsWith('pdf:')) {
    const a = document.createElement('a');
    a.href = href;
    a.className = 'pdf-tile';
    a.target = '_blank';
    a.rel = 'noopener';
    a.setAttribute('aria-label', `Open the PDF of chart ${c.name}`);
    a.innerHTML = '<span class="pdf-icon" aria-hidden="true">PDF</span><span>Open PDF</span>';
    thumb.append(a);
  } else if (key === 'failed') {
    thumb.classList.add('failed');
    const strong = document.createElement('strong');
    strong.textContent = `Kentik said ${c.last_error.status}`;
    thumb.append(strong);
  } else {
    const a = document.createElement('a');
    a.href = href;
    a.target = '_blank';
    a.rel = 'noopener';
    const img = document.createElement('img');
    // The stable URL, versioned by the image's time so a refreshed image replaces the old one here
    // (the service ignores the parameter). With no image yet, this request fetches the first one.
    img.src = c.image ? `${href}?v=${c.image.fetched_at}` : href;
    img.alt = `Chart ${c.name}: ${titleOf(e)} (${lineOf(e)})`;
    img.decoding = 'async';
    // Its failure is in the chart's state: reload the list to show it.
    img.addEventListener('error', () => setTimeout(loadCharts, 500), { once: true });
    a.append(img);
    thumb.append(a);
  }
  for (const b of node.querySelectorAll('[data-copy]'))
    b.addEventListener('click', () => {
      const shown = state.charts.get(node.dataset.name)?.chart ?? c;
      share(b.dataset.copy, chartUrl(shown.name), titleOf(asEntry(shown)), 'the chart URL');
    });
  return node;
}

function fillChartCard(node, c) {
  const e = asEntry(c);
  node.dataset.health = c.health;
  node.dataset.due = c.due_at === null ? '' : String(c.due_at);
  node.dataset.fetched = c.image ? String(c.image.fetched_at) : '';
  node.querySelector('.title').textContent = c.name;
  node.querySelector('.title').title = chartUrl(c.name);
  node.querySelector('.line').textContent = `${titleOf(e)} · ${lineOf(e)}`;
  const err = node.querySelector('.error');
  if (c.last_error) {
    const l = c.last_error;
    const retry = c.retry_at === null ? '' : ` Next try ${when(c.retry_at * 1000)}.`;
    err.hidden = false;
    err.textContent =
      `Refresh failed${c.failures > 1 ? ` ${c.failures}× in a row` : ''} ${ago(l.at * 1000)}` +
      `${c.image ? ' (the last good image is still served)' : ''}: ${l.status} ${l.type}: ${l.message}.${retry}`;
    err.title = err.textContent;
  } else err.hidden = true;
  const r = node.querySelector('.refresh');
  r.textContent = every(c.refresh);
  r.title = `An image is fresh for ${c.refresh} s; the first view after that fetches a new one`;
  for (const b of node.querySelectorAll('[data-copy]'))
    b.setAttribute('aria-label', `${b.textContent}: chart ${c.name}`);
  tickChart(node, Date.now());
}

/** Age and fresh → stale run on the local clock, like the entries' countdowns. */
function tickChart(node, now) {
  let health = node.dataset.health;
  if (health === 'fresh' && node.dataset.due && now / 1000 >= Number(node.dataset.due))
    health = node.dataset.health = 'stale';
  const st = node.querySelector('.state');
  st.textContent = HEALTH_NAMES[health];
  st.className = `state badge ${HEALTH_BADGES[health]}`;
  st.title = HEALTH_HINTS[health];
  const drawn = node.querySelector('.drawn');
  const fetched = Number(node.dataset.fetched) * 1000;
  drawn.textContent = node.dataset.fetched ? ago(fetched) : '—';
  drawn.title = node.dataset.fetched ? new Date(fetched).toString() : 'No image yet';
}

$('charts-more').addEventListener('click', () => {
  if (!state.chartsNext) return;
  state.chartPages.push(state.chartsNext);
  loadCharts().then(() => $('charts-list').focus());
});
$('charts-prev').addEventListener('click', () => {
  if (state.chartPages.length > 1) state.chartPages.pop();
  loadCharts().then(() => $('charts-list').focus());
});

// ---------- live updates ----------
let reloadTimer;
function reloadSoon() {
  clearTimeout(reloadTimer);
  reloadTimer = setTimeout(loadPage, 300);
}

const handlers = {
  status: (data) => renderStatus(JSON.parse(data)),
  created: () => {
    // New ids appear at the top: only the first page changes.
    if (state.cursors.length === 1) reloadSoon();
  },
  settled: (data) => {
    const { hash, entries } = JSON.parse(data);
    let changed = false;
    for (const e of entries) {
      const shown = state.shown.get(e.id);
      if (!shown) continue;
      changed = true;
      shown.entry = e;
    }
    // Settled without a list (too many, or by another replica): reload if we show one of its ids.
    const described = new Set(entries.map((e) => e.id));
    for (const [id, { entry }] of state.shown)
      if (id.startsWith(`${hash}_`) && entry.type === 'api_request' && !described.has(id))
        return reloadSoon();
    // Re-render from what is on screen; a failure filter may now match more, so reload then.
    if (changed) {
      if ($('failures').checked) reloadSoon();
      else render([...state.shown.values()].map((s) => s.entry));
    }
  },
  deleted: (data) => {
    const { ids } = JSON.parse(data);
    if (ids.some((id) => state.shown.has(id))) reloadSoon();
  },
  reset: () => reloadSoon(),
};

/** Dispatches each complete `event:`/`data:` block in `text`; returns the incomplete rest. */
function dispatchEvents(text) {
  let rest = text;
  let end;
  while ((end = rest.indexOf('\n\n')) >= 0) {
    const block = rest.slice(0, end);
    rest = rest.slice(end + 2);
    let event = 'message';
    const data = [];
    for (const line of block.split('\n')) {
      if (line.startsWith('event:')) event = line.slice(6).trim();
      else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
    }
    if (data.length > 0) handlers[event]?.(data.join('\n'));
  }
  return rest;
}

let stream;
async function connect() {
  stream?.abort();
  const ctrl = new AbortController();
  stream = ctrl;
  const live = $('st-live');
  const down = (text) => {
    live.textContent = text;
    live.classList.remove('on');
  };
  try {
    const res = await fetch(`${API}/events`, {
      headers: withKey({ accept: 'text/event-stream' }),
      signal: ctrl.signal,
    });
    if (res.status === 401) {
      down('○ needs a key');
      needKey((await res.json().catch(() => ({}))).msg);
      return; // connect() runs again once a key is entered
    }
    if (!res.ok || !res.body) throw new Error(`events answered ${res.status}`);
    live.textContent = '● live';
    live.classList.add('on');
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffered = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffered = dispatchEvents(buffered + value.replaceAll('\r\n', '\n'));
    }
  } catch {
    // Network error or the service restarting: reconnect below.
  }
  if (ctrl.signal.aborted || stream !== ctrl) return;
  down('○ reconnecting');
  setTimeout(() => {
    if (stream === ctrl) connect();
  }, 3000);
}

// ---------- new chart ----------
async function loadExamples() {
  try {
    const { examples } = await getJson(`${API}/examples`);
    state.examples = examples;
    const select = $('example');
    for (const [i, ex] of examples.entries()) {
      const o = document.createElement('option');
      o.value = String(i);
      o.textContent = `${ex.title} (${ex.name})`;
      select.append(o);
    }
  } catch {
    // The form still works by pasting.
  }
}

function formError(msg) {
  $('form-ok').hidden = true;
  $('form-error').hidden = !msg;
  $('form-error').textContent = msg ?? '';
  $('query').setAttribute('aria-invalid', msg ? 'true' : 'false');
}

async function submitChart(ev) {
  ev.preventDefault();
  formError(null);
  let query;
  try {
    query = JSON.parse($('query').value);
  } catch (err) {
    return formError(`That is not valid JSON: ${err.message}`);
  }
  // A whole request file ({"api_query": …, "ttl": …}) is accepted too.
  if (query && typeof query === 'object' && 'api_query' in query) query = query.api_query;
  const ttl = Number($('ttl').value);
  if (!Number.isInteger(ttl) || ttl < 1)
    return formError('The ttl must be a whole number of seconds, at least 1.');
  $('submit').disabled = true;
  try {
    const res = await fetch('/requests', {
      method: 'POST',
      headers: withKey({ 'content-type': 'application/json' }),
      body: JSON.stringify({ api_query: query, ttl }),
    });
    const body = await res.json().catch(() => ({}));
    if (res.status === 401) needKey(body.msg);
    if (!res.ok)
      return formError(`${res.status} ${body.type ?? ''}: ${body.msg ?? 'the request failed'}`);
    $('form-ok').hidden = false;
    $('form-ok').textContent =
      `Created ${body.id.slice(0, 12)}…; it appears below and updates when Kentik answers.`;
    // Back to the first page, unfiltered, so the new chart is in view.
    $('q').value = '';
    $('type').value = '';
    $('failures').checked = false;
    state.cursors = [undefined];
    await loadPage();
  } catch (err) {
    formError(`Could not reach the service: ${err.message}`);
  } finally {
    $('submit').disabled = false;
  }
}

// ---------- wiring ----------
let searchTimer;
function restart() {
  // Whatever triggered this reads every filter: a search still waiting for typing to stop is moot.
  clearTimeout(searchTimer);
  state.cursors = [undefined];
  loadPage();
}
$('q').addEventListener('input', () => {
  clearTimeout(searchTimer);
  searchTimer = setTimeout(restart, 250);
});
$('type').addEventListener('change', restart);
$('failures').addEventListener('change', restart);
$('filters').addEventListener('submit', (ev) => {
  ev.preventDefault();
  restart();
});
$('older').addEventListener('click', () => {
  if (!state.next) return;
  state.cursors.push(state.next);
  loadPage().then(() => $('gallery').focus());
});
$('newer').addEventListener('click', () => {
  if (state.cursors.length > 1) state.cursors.pop();
  loadPage().then(() => $('gallery').focus());
});
$('example').addEventListener('change', () => {
  const ex = state.examples[Number($('example').value)];
  if (!ex) return;
  $('query').value = JSON.stringify(ex.body.api_query, null, 2);
  formError(null);
});
$('chart-form').addEventListener('submit', submitChart);
$('key-form').addEventListener('submit', useKey);

connect();
loadExamples();
loadPage();
// The named charts load with the first status event (see chartsStatus).
