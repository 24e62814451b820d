// The gateway's web console: plain DOM over the JSON admin API, no framework.
//
// The admin token the operator pastes is kept in this tab's sessionStorage and sent as
// `Authorization: Bearer` on every request; nothing else is stored. Pages are chosen by the
// URL's fragment (#/overview, #/subscriptions, ...). Text from the gateway is only ever set
// as text (never as HTML), so nothing it returns can run as script.
'use strict';

const TOKEN_KEY = 'odoo-gateway-admin-token';
const REFRESH_MS = 5000;

const $ = (selector) => document.querySelector(selector);
const token = () => sessionStorage.getItem(TOKEN_KEY);

/// An element with attributes (`on*` functions become listeners) and children (strings
/// become text nodes, null and false are skipped).
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith('on') && typeof value === 'function') el.addEventListener(key.slice(2), value);
    else if (key === 'class') el.className = value;
    else el.setAttribute(key, value === true ? '' : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

class ApiFailure extends Error {
  constructor(status, code, message) {
    super(`${status} ${code || ''}: ${message || 'request failed'}`);
    this.status = status;
    this.code = code;
  }
}

/// Calls the admin API with the token; the JSON answer and its status, or an ApiFailure.
async function api(method, path, body) {
  const headers = { Authorization: `Bearer ${token()}` };
  const init = { method, headers };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  let data = null;
  try {
    data = await response.json();
  } catch (_) {
    data = null;
  }
  if (response.status === 401) {
    logout('The gateway refused this token: log in again.');
  }
  if (!response.ok) {
    const error = (data && data.error) || {};
    throw new ApiFailure(response.status, error.code, error.message);
  }
  return { status: response.status, data };
}

function say(text) {
  $('#status').textContent = text;
}

function time(ms) {
  return ms ? new Date(ms).toISOString().replace('T', ' ').replace(/\.\d+Z$/, ' UTC') : '–';
}

function cell(value) {
  return value === null || value === undefined || value === '' ? '–' : String(value);
}

/// A body for reading: JSON indented, anything else as it is.
function pretty(body, contentType) {
  if (!/json/.test(contentType || '')) return body;
  try {
    return JSON.stringify(JSON.parse(body), null, 2);
  } catch (_) {
    return body;
  }
}

function badge(kind, text) {
  return h('span', { class: `badge ${kind}` }, text);
}

function table(caption, columns, rows, rowAttrs) {
  return h('table', {},
    h('caption', {}, caption),
    h('thead', {}, h('tr', {}, columns.map((c) => h('th', { scope: 'col', class: c.num ? 'num' : null }, c.label)))),
    h('tbody', {}, rows.length === 0
      ? h('tr', {}, h('td', { colspan: columns.length, class: 'muted' }, 'None.'))
      : rows.map((row) => h('tr', rowAttrs ? rowAttrs(row) : {},
        columns.map((c) => h('td', { class: c.num ? 'num' : null }, c.value(row)))))));
}

function eventLink(id) {
  return h('a', { href: `#/events/${encodeURIComponent(id)}` }, id);
}

function health(sub) {
  if (sub.flagged) return badge('bad', 'flagged');
  if (sub.consecutive_failures > 0) return badge('warn', `failing (${sub.consecutive_failures})`);
  return badge('ok', 'healthy');
}

function state(sub) {
  if (!sub.enabled) return badge('muted', 'disabled in configuration');
  return sub.paused ? badge('warn', 'paused') : badge('ok', 'delivering');
}

// ---- charts ----

const SVG_NS = 'http://www.w3.org/2000/svg';

/// An SVG element with attributes and children, as `h` makes HTML ones.
function svg(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value !== undefined && value !== null && value !== false) el.setAttribute(key, String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/// A round upper bound for an axis (1, 2 or 5 times a power of ten).
function niceMax(value) {
  if (!(value > 0)) return 1;
  const power = 10 ** Math.floor(Math.log10(value));
  return [1, 2, 5, 10].map((m) => m * power).find((m) => m >= value);
}

function number(value, unit) {
  if (value === null || value === undefined) return '–';
  if (Number.isInteger(value)) return `${value}${unit}`;
  const digits = value >= 100 ? 0 : value >= 10 ? 1 : 2;
  return `${value.toFixed(digits)}${unit}`;
}

/// A marker of `shape` at (x, y): each series has its own, so no colour is needed to tell
/// them apart.
function marker(shape, x, y, cls) {
  const r = 3.2;
  if (shape === 'square') return svg('rect', { x: x - r, y: y - r, width: 2 * r, height: 2 * r, class: cls });
  if (shape === 'triangle') return svg('path', { d: `M${x} ${y - r - 0.8}L${x + r + 0.6} ${y + r}L${x - r - 0.6} ${y + r}Z`, class: cls });
  if (shape === 'diamond') return svg('path', { d: `M${x} ${y - r - 1}L${x + r + 1} ${y}L${x} ${y + r + 1}L${x - r - 1} ${y}Z`, class: cls });
  return svg('circle', { cx: x, cy: y, r, class: cls });
}

/// One chart of the last hour: a line per series (solid or dashed, each with its own marker
/// shape), labelled axes, a legend with each series' latest value, and the values as a table.
function chart(id, title, unit, series, data) {
  const W = 400; const H = 156; const left = 40; const right = 8; const top = 24; const bottom = 20;
  const slots = data.capacity + 1;
  const samples = data.samples.slice(-slots);
  const step = (W - left - right) / (slots - 1);
  const xOf = (i) => left + (slots - samples.length + i) * step;
  const values = samples.flatMap((s) => series.map((x) => s[x.key])).filter((v) => v !== null && v !== undefined);
  const max = niceMax(Math.max(0, ...values));
  const yOf = (v) => top + (H - top - bottom) * (1 - v / max);
  const minutes = Math.round((data.capacity * data.interval_ms) / 60000);
  const grid = [0, 0.5, 1].map((f) => [
    svg('line', { x1: left, x2: W - right, y1: yOf(max * f), y2: yOf(max * f), class: 'grid' }),
    svg('text', { x: left - 6, y: yOf(max * f) + 4, 'text-anchor': 'end', class: 'axis' }, number(max * f, '')),
  ]);
  const axis = [
    svg('text', { x: left, y: H - 4, class: 'axis' }, `${minutes} min ago`),
    svg('text', { x: W - right, y: H - 4, 'text-anchor': 'end', class: 'axis' }, 'now'),
    svg('text', { x: 2, y: 10, class: 'axis' }, unit.trim() || 'jobs'),
  ];
  const lines = series.map((x, n) => {
    const segments = [];
    let current = [];
    samples.forEach((s, i) => {
      const v = s[x.key];
      if (v === null || v === undefined) {
        if (current.length) segments.push(current);
        current = [];
      } else current.push([xOf(i), yOf(v), v, s]);
    });
    if (current.length) segments.push(current);
    return svg('g', { class: `series s${n}`, 'data-series': x.key },
      segments.map((points) => svg('polyline', {
        points: points.map(([px, py]) => `${px.toFixed(1)},${py.toFixed(1)}`).join(' '),
        class: 'line', 'stroke-dasharray': x.dash || null,
      })),
      segments.flat().map(([px, py, v, s]) => {
        const m = marker(x.shape, px, py, 'point');
        m.setAttribute('data-point', '');
        m.append(svg('title', {}, `${x.label}: ${number(v, unit)} (${time(s.start_ms)}${s.partial ? ', so far' : ''})`));
        return m;
      }));
  });
  // The legend's value: the series' last closed sample that has one (the one in progress
  // only while there is none).
  const closed = samples.filter((s) => !s.partial);
  const lastOf = (key) => {
    const known = (list) => list.filter((s) => s[key] !== null && s[key] !== undefined);
    const found = known(closed);
    const pick = found.length ? found : known(samples);
    return pick.length ? pick[pick.length - 1][key] : null;
  };
  const latest = Object.fromEntries(series.map((x) => [x.key, lastOf(x.key)]));
  const summary = series.map((x) => `${x.label} ${number(latest[x.key], unit)}`).join(', ');
  const legend = h('ul', { class: 'legend' }, series.map((x, n) => h('li', { 'data-series': x.key },
    svg('svg', { width: 34, height: 12, viewBox: '0 0 34 12', 'aria-hidden': 'true', class: `series s${n}` },
      svg('line', { x1: 1, x2: 33, y1: 6, y2: 6, class: 'line', 'stroke-dasharray': x.dash || null }),
      marker(x.shape, 17, 6, 'point')),
    ` ${x.label}: `, h('strong', {}, number(latest[x.key], unit)))));
  const figure = h('figure', { class: 'chart', 'data-chart': id },
    h('figcaption', { id: `${id}-title` }, title),
    legend,
    svg('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-labelledby': `${id}-title ${id}-desc`, class: 'plot' },
      svg('desc', { id: `${id}-desc` }, `Last ${minutes} minutes, one sample every ${Math.round(data.interval_ms / 1000)} s; latest: ${summary}.`),
      grid, axis, lines),
    h('details', {}, h('summary', {}, 'Values'),
      table(title, [
        { label: 'From', value: (s) => time(s.start_ms) + (s.partial ? ' (so far)' : '') },
        ...series.map((x) => ({ label: x.label, num: true, value: (s) => number(s[x.key], unit) })),
      ], samples.slice().reverse())));
  return figure;
}

function charts(data) {
  return h('section', { 'aria-labelledby': 'last-hour' },
    h('h2', { id: 'last-hour' }, 'The last hour'),
    h('div', { class: 'charts' },
      chart('chart-throughput', 'Deliveries and failed attempts per second', '/s', [
        { key: 'deliveries_per_sec', label: 'Delivered', shape: 'circle' },
        { key: 'failures_per_sec', label: 'Failed', shape: 'triangle', dash: '6 4' },
      ], data),
      chart('chart-ingest', 'Time to acknowledge an event (ms)', ' ms', [
        { key: 'ingest_p50_ms', label: 'Median', shape: 'circle' },
        { key: 'ingest_p99_ms', label: '99th percentile', shape: 'square', dash: '6 4' },
      ], data),
      chart('chart-queue', 'Jobs queued', '', [
        { key: 'queue_depth', label: 'Queued', shape: 'diamond' },
      ], data)));
}

// ---- pages ----

let lastDelivered = null;

async function overview(view) {
  const [status, subs, reload, history] = await Promise.all([
    api('GET', '/admin/status'),
    api('GET', '/admin/subscriptions'),
    api('GET', '/admin/reload'),
    api('GET', '/admin/charts'),
  ]);
  const s = status.data;
  const now = Date.now();
  let rate = 'measuring…';
  if (lastDelivered && now > lastDelivered.at) {
    const perMinute = ((s.delivered_since_start - lastDelivered.count) * 60000) / (now - lastDelivered.at);
    rate = `${perMinute.toFixed(1)}/min`;
  }
  lastDelivered = { at: now, count: s.delivered_since_start };
  const stat = (label, value) => h('div', {}, h('dt', {}, label), h('dd', {}, cell(value)));
  const failing = subs.data.subscriptions.filter((x) => x.flagged || x.consecutive_failures > 0);
  const queued = subs.data.subscriptions.filter((x) => x.queued > 0);
  const storage = s.storage || {};
  const mib = (bytes) => (bytes === null || bytes === undefined ? null : `${(bytes / 1048576).toFixed(1)} MiB`);
  view.append(
    h('h1', {}, 'Overview'),
    storage.paused
      ? h('p', { class: 'notice bad', role: 'alert', id: 'ingest-paused' },
        `Ingest is paused (${storage.paused.reason}): ${storage.paused.message}`)
      : null,
    h('section', { 'aria-labelledby': 'throughput' },
      h('h2', { id: 'throughput' }, 'Throughput and queues'),
      h('dl', { class: 'stats' },
        stat('Delivered since start', s.delivered_since_start),
        stat('Delivery rate', rate),
        stat('Events stored', s.stored.events),
        stat('Jobs queued', s.stored.queued),
        stat('Due now', s.schedule.due),
        stat('Waiting for a retry', s.schedule.later),
        stat('Paused jobs', s.schedule.parked),
        stat('Dead letters', s.stored.dead),
        stat('Awaiting fan-out', s.stored.pending),
        stat('Live data', mib(storage.live && storage.live.bytes)),
        stat('Database on disk', mib(storage.size_on_disk)),
        stat('Free on its disk', mib(storage.room && storage.room.free_bytes)),
        stat('Configuration generation', reload.data.generation))),
    charts(history.data),
    h('section', { 'aria-labelledby': 'failing' },
      h('h2', { id: 'failing' }, 'Failing subscriptions'),
      table(`${failing.length} of ${subs.data.subscriptions.length} subscriptions are failing`, [
        { label: 'Subscription', value: (x) => h('a', { href: `#/subscriptions/${encodeURIComponent(x.id)}` }, x.id) },
        { label: 'Health', value: health },
        { label: 'State', value: state },
        { label: 'Failures in a row', num: true, value: (x) => x.consecutive_failures },
        { label: 'Last error', value: (x) => cell(x.last_error) },
      ], failing, () => ({ class: 'failing' }))),
    h('section', { 'aria-labelledby': 'depths' },
      h('h2', { id: 'depths' }, 'Queue depth by subscription'),
      table('Jobs waiting in the schedule', [
        { label: 'Subscription', value: (x) => x.id },
        { label: 'Queued', num: true, value: (x) => x.queued },
        { label: 'State', value: state },
      ], queued)),
  );
  return REFRESH_MS;
}

async function subscriptions(view) {
  const { data } = await api('GET', '/admin/subscriptions');
  const toggle = (sub) => {
    const pausing = !sub.paused;
    const verb = pausing ? 'Pause' : 'Enable';
    return h('button', {
      type: 'button',
      'aria-label': `${verb} ${sub.id}`,
      onclick: async (e) => {
        e.target.disabled = true;
        try {
          const { data: answer } = await api('POST', `/admin/subscriptions/${encodeURIComponent(sub.id)}/${pausing ? 'pause' : 'enable'}`);
          say(pausing ? `Paused ${sub.id}: its jobs wait until it is enabled.`
            : `Enabled ${sub.id}: ${answer.resumed_jobs} paused jobs resumed.`);
        } catch (err) {
          say(`Could not ${verb.toLowerCase()} ${sub.id}: ${err.message}`);
        }
        render();
      },
    }, verb);
  };
  view.append(
    h('h1', {}, 'Subscriptions'),
    table(`${data.subscriptions.length} subscriptions in force`, [
      { label: 'Subscription', value: (x) => h('a', { href: `#/subscriptions/${encodeURIComponent(x.id)}` }, x.id) },
      { label: 'Events', value: (x) => x.events.join(', ') },
      { label: 'Destinations', value: (x) => x.destinations.join(', ') },
      { label: 'Plugin', value: (x) => cell(x.plugin) },
      { label: 'Health', value: health },
      { label: 'State', value: state },
      { label: 'Queued', num: true, value: (x) => x.queued },
      { label: 'Action', value: toggle },
    ], data.subscriptions, (x) => ({ class: x.flagged ? 'failing' : null, 'data-subscription': x.id })),
  );
}

async function subscription(view, id) {
  const failedOnly = new URLSearchParams(location.hash.split('?')[1] || '').get('failed') === 'true';
  const query = new URLSearchParams({ subscription: id, limit: '50' });
  if (failedOnly) query.set('failed', 'true');
  const [{ data: subs }, { data }] = await Promise.all([
    api('GET', '/admin/subscriptions'),
    api('GET', `/admin/deliveries?${query}`),
  ]);
  const sub = subs.subscriptions.find((x) => x.id === id);
  const filter = h('input', {
    type: 'checkbox', id: 'failed-only', checked: failedOnly,
    onchange: (e) => { location.hash = `#/subscriptions/${encodeURIComponent(id)}${e.target.checked ? '?failed=true' : ''}`; },
  });
  view.append(
    h('h1', {}, `Subscription ${id}`),
    sub ? h('dl', { class: 'facts' },
      h('dt', {}, 'Health'), h('dd', {}, health(sub)),
      h('dt', {}, 'State'), h('dd', {}, state(sub)),
      h('dt', {}, 'Events'), h('dd', {}, sub.events.join(', ')),
      h('dt', {}, 'Destinations'), h('dd', {}, sub.destinations.join(', ')),
      h('dt', {}, 'Plugin'), h('dd', {}, cell(sub.plugin)),
      h('dt', {}, 'Last error'), h('dd', {}, cell(sub.last_error))) : null,
    h('h2', {}, 'Recent attempts'),
    h('p', {}, filter, h('label', { for: 'failed-only', class: 'inline' }, 'Failed attempts only')),
    attemptsTable('Newest first', data.attempts, true),
  );
}

function attemptsTable(caption, attempts, withEvent) {
  const columns = [
    { label: 'When', value: (a) => time(a.at_ms) },
    withEvent ? { label: 'Event', value: (a) => eventLink(a.event_id) } : null,
    { label: 'Job', value: (a) => h('span', { class: 'mono' }, a.job) },
    { label: 'Status', value: (a) => (a.error || (a.status && (a.status < 200 || a.status > 299))
      ? badge('bad', cell(a.status || 'error')) : badge('ok', cell(a.status || 'ok'))) },
    { label: 'Time (ms)', num: true, value: (a) => a.latency_ms },
    withEvent ? { label: 'Job now', value: (a) => a.job_state } : null,
    { label: 'Error', value: (a) => cell(a.error) },
  ].filter(Boolean);
  return table(caption, columns, attempts);
}

async function events(view, id) {
  const form = h('form', {
    onsubmit: (e) => {
      e.preventDefault();
      const wanted = $('#event-id').value.trim();
      if (wanted) location.hash = `#/events/${encodeURIComponent(wanted)}`;
    },
  },
  h('label', { for: 'event-id' }, 'Event id'),
  h('input', { id: 'event-id', type: 'text', value: id || '', placeholder: 'evt_…', spellcheck: 'false' }),
  h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, 'Show journey')));
  view.append(h('h1', {}, id ? `Event ${id}` : 'Event journey'), form);
  if (!id) {
    view.append(h('p', { class: 'muted' }, 'Event ids are in ingest answers, dead letters and each subscription\'s attempts.'));
    return;
  }
  let journey;
  try {
    ({ data: journey } = await api('GET', `/admin/events/${encodeURIComponent(id)}`));
  } catch (err) {
    if (err.status !== 404) throw err;
    view.append(h('p', { class: 'notice bad', role: 'alert' }, `No event ${id} is stored.`));
    return;
  }
  const e = journey.event;
  const subsOf = new Set([...journey.matched]);
  const jobSub = (jobId) => {
    const rest = jobId.slice(e.id.length + 1);
    return rest.slice(0, rest.lastIndexOf('.'));
  };
  for (const a of journey.attempts) subsOf.add(jobSub(a.job));
  for (const j of journey.queued) subsOf.add(j.subscription);
  for (const d of journey.dead_letters) subsOf.add(d.subscription);
  for (const d of journey.delivered) subsOf.add(d.subscription);
  view.append(
    h('dl', { class: 'facts' },
      h('dt', {}, 'Type'), h('dd', {}, e.type),
      h('dt', {}, 'Source'), h('dd', {}, e.source),
      h('dt', {}, 'Record'), h('dd', {}, cell(e.record_id)),
      h('dt', {}, 'Received'), h('dd', {}, time(e.received_at_ms)),
      h('dt', {}, 'Matches now'), h('dd', {}, journey.matched.length ? journey.matched.join(', ') : 'no subscription')),
    h('details', {}, h('summary', {}, 'Payload as received'), h('pre', {}, JSON.stringify(e.payload, null, 2))),
    h('h2', {}, 'By subscription'),
  );
  for (const sub of subsOf) {
    const attempts = journey.attempts.filter((a) => jobSub(a.job) === sub);
    const waiting = journey.queued.filter((j) => j.subscription === sub);
    const dead = journey.dead_letters.filter((d) => d.subscription === sub);
    const sent = journey.delivered.filter((d) => d.subscription === sub);
    const section = h('section', { class: 'sub', 'aria-label': `Subscription ${sub}`, 'data-subscription': sub },
      h('h3', {}, sub, ' ', dead.length ? badge('bad', 'dead-lettered')
        : waiting.length ? badge('warn', 'queued') : attempts.length ? badge('ok', 'done') : badge('muted', 'not yet run')));
    const plugin = attempts.filter((a) => a.job.endsWith('.transform'));
    if (plugin.length) section.append(attemptsTable('Plugin calls', plugin, false));
    section.append(attemptsTable('Delivery attempts', attempts.filter((a) => !a.job.endsWith('.transform')), false));
    for (const job of [...waiting, ...dead]) {
      const title = job.reason ? `Dead letter ${job.id} (${job.reason})` : `Queued ${job.id} (${job.attempts} tries)`;
      section.append(h('article', { class: 'delivery' },
        h('h4', {}, title),
        job.body !== undefined
          ? [h('p', { class: 'muted' }, `${job.content_type} to ${job.destination}`), h('pre', { 'aria-label': `Body of ${job.id}` }, pretty(job.body, job.content_type))]
          : h('p', { class: 'muted' }, 'A plugin call: its deliveries appear once it has run.')));
    }
    for (const job of sent) {
      section.append(h('article', { class: 'delivery' },
        h('h4', {}, `Delivered ${job.id}`),
        h('p', { class: 'muted' }, `${job.content_type} to ${job.destination}`),
        h('pre', { 'aria-label': `Body of ${job.id}` }, pretty(job.body, job.content_type))));
    }
    view.append(section);
  }
}

async function deadLetters(view) {
  const { data } = await api('GET', '/admin/dead-letters');
  const replay = (d) => h('button', {
    type: 'button',
    'aria-label': `Replay ${d.id}`,
    onclick: async (e) => {
      e.target.disabled = true;
      try {
        const answer = await api('POST', `/admin/dead-letters/${encodeURIComponent(d.id)}/replay`);
        say(`Replay of ${d.id} accepted (${answer.status}): it is queued again.`);
      } catch (err) {
        say(`Replay of ${d.id} failed: ${err.message}`);
      }
      render();
    },
  }, 'Replay');
  view.append(
    h('h1', {}, 'Dead letters'),
    table(`${data.dead_letters.length} dead letters, oldest first`, [
      { label: 'Job', value: (d) => h('span', { class: 'mono' }, d.id) },
      { label: 'Event', value: (d) => eventLink(d.event_id) },
      { label: 'Subscription', value: (d) => d.subscription },
      { label: 'Tries', num: true, value: (d) => d.attempts },
      { label: 'Reason', value: (d) => d.reason },
      { label: 'When', value: (d) => time(d.at_ms) },
      { label: 'Action', value: replay },
    ], data.dead_letters),
  );
}

async function dryRun(view) {
  const [{ data: plugins }, { data: samples }] = await Promise.all([
    api('GET', '/admin/plugins'),
    api('GET', '/admin/samples'),
  ]);
  const result = h('div', { id: 'dry-run-result', 'aria-live': 'polite' });
  const pluginSelect = h('select', { id: 'plugin', required: true },
    plugins.plugins.map((p) => h('option', { value: p.name }, `${p.name} (${p.subscriptions.join(', ')})`)));
  const sampleSelect = h('select', { id: 'sample' },
    h('option', { value: '' }, 'Paste an event below'),
    samples.samples.map((s) => h('option', { value: s.name }, `${s.name}: ${s.description}`)));
  const eventText = h('textarea', { id: 'event', spellcheck: 'false', 'aria-describedby': 'event-help' });
  const eventType = h('input', { id: 'event-type', type: 'text', placeholder: 'sale.order.confirmed', spellcheck: 'false' });
  const showSample = () => {
    const sample = samples.samples.find((s) => s.name === sampleSelect.value);
    eventText.value = sample ? sample.body : '';
    eventText.readOnly = Boolean(sample);
    eventType.value = sample ? sample.event_type : '';
  };
  sampleSelect.addEventListener('change', showSample);
  const form = h('form', {
    onsubmit: async (e) => {
      e.preventDefault();
      const button = form.querySelector('button');
      button.disabled = true;
      result.replaceChildren(h('p', {}, 'Running…'));
      const body = {};
      if (sampleSelect.value) body.sample = sampleSelect.value;
      else {
        try {
          body.event = JSON.parse(eventText.value);
        } catch (err) {
          result.replaceChildren(h('p', { class: 'notice bad', role: 'alert' }, `The event is not JSON: ${err.message}`));
          button.disabled = false;
          return;
        }
      }
      const type = eventType.value.trim();
      if (type) body.event_type = type;
      try {
        const { data } = await api('POST', `/admin/plugins/${encodeURIComponent(pluginSelect.value)}/dry-run`, body);
        showDryRun(result, data);
      } catch (err) {
        result.replaceChildren(h('p', { class: 'notice bad', role: 'alert' }, `Dry-run failed: ${err.message}`));
      }
      button.disabled = false;
    },
  },
  h('label', { for: 'plugin' }, 'Plugin'), pluginSelect,
  h('label', { for: 'sample' }, 'Sample event'), sampleSelect,
  h('label', { for: 'event' }, 'Event (an Odoo webhook body, or {"model", "action", "payload"})'), eventText,
  h('p', { id: 'event-help', class: 'muted' }, 'Nothing is queued or delivered; Odoo is not read (no enrichment).'),
  h('label', { for: 'event-type' }, 'Event type'),
  eventType,
  h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, 'Run dry-run')));
  view.append(h('h1', {}, 'Plugin dry-run'),
    plugins.plugins.length ? form : h('p', {}, 'No subscription in force uses a plugin.'), result);
  if (samples.samples.length) {
    sampleSelect.value = samples.samples[0].name;
    showSample();
  }
}

function showDryRun(result, data) {
  const summary = data.outcome === 'deliver'
    ? `${data.deliveries.length} deliveries from ${data.plugin} with ${data.subscription}'s configuration, in ${data.took_ms.toFixed(1)} ms`
    : `${data.plugin} answered ${data.outcome}: ${data.error}`;
  result.replaceChildren(...[
    h('h2', {}, 'Result'),
    h('p', { class: data.outcome === 'deliver' ? 'notice' : 'notice bad' }, summary),
    data.subscription_matches ? null
      : h('p', { class: 'muted' }, `Note: ${data.subscription} would not receive a ${data.event.type} event.`),
    data.deliveries.map((d, n) => h('article', { class: 'delivery', 'data-destination': d.destination },
      h('h3', {}, `Delivery ${n + 1} to ${d.destination}`),
      h('p', { class: 'muted' }, `${d.content_type} → ${cell(d.url)}`),
      d.headers.length ? h('p', { class: 'mono' }, d.headers.map(([k, v]) => `${k}: ${v}`).join('\n')) : null,
      h('pre', { 'aria-label': `Body of delivery ${n + 1}` }, pretty(d.body, d.content_type)))),
    data.refused.map((r) => h('p', { class: 'notice bad' }, `Refused: ${r.destination}: ${r.reason}`)),
  ].flat().filter(Boolean));
}

async function reloadPage(view) {
  const { data } = await api('GET', '/admin/reload');
  const button = h('button', {
    type: 'button', class: 'primary',
    onclick: async () => {
      button.disabled = true;
      try {
        const { data: answer } = await api('POST', '/admin/reload');
        say(`Reloaded: generation ${answer.generation}.`);
      } catch (err) {
        say(`Reload failed: ${err.message}`);
      }
      render();
    },
  }, 'Reload the configuration now');
  view.append(
    h('h1', {}, 'Configuration reload'),
    h('dl', { class: 'facts' },
      h('dt', {}, 'Generation'), h('dd', {}, cell(data.generation)),
      h('dt', {}, 'Successful reloads'), h('dd', {}, cell(data.reloads_ok)),
      h('dt', {}, 'Failed reloads'), h('dd', {}, cell(data.reloads_failed)),
      h('dt', {}, 'Last attempt'), h('dd', {}, time(data.last_attempt_ms)),
      h('dt', {}, 'Triggered by'), h('dd', {}, cell(data.last_cause)),
      h('dt', {}, 'Last result'), h('dd', {}, data.last_error
        ? h('span', { class: 'error' }, data.last_error)
        : data.last_attempt_ms ? badge('ok', 'ok') : 'no reload yet'),
      h('dt', {}, 'Changed, applied at the next restart'), h('dd', {}, (data.restart_needed || []).length
        ? h('span', { class: 'error' }, data.restart_needed.join(', '))
        : 'nothing')),
    h('p', {}, button),
  );
}

// ---- routing ----

const routes = [
  [/^#\/overview$/, overview, 'overview'],
  [/^#\/subscriptions$/, subscriptions, 'subscriptions'],
  [/^#\/subscriptions\/([^?]+)(\?.*)?$/, subscription, 'subscriptions'],
  [/^#\/events$/, events, 'events'],
  [/^#\/events\/(.+)$/, events, 'events'],
  [/^#\/dead-letters$/, deadLetters, 'dead-letters'],
  [/^#\/dry-run$/, dryRun, 'dry-run'],
  [/^#\/reload$/, reloadPage, 'reload'],
];

let timer = null;
let generation = 0;

/// Refreshes the page in `ms`, unless another page came first; waits while the tab is hidden
/// or the keyboard focus is inside the page (a refresh would take it away).
function schedule(mine, ms) {
  timer = setTimeout(() => {
    if (mine !== generation) return;
    const focused = document.activeElement;
    if (document.hidden || (focused && $('#view').contains(focused))) schedule(mine, ms);
    else render();
  }, ms);
}

async function render() {
  clearTimeout(timer);
  const mine = ++generation;
  if (!token()) {
    showLogin();
    return;
  }
  $('#login').hidden = true;
  $('#nav').hidden = false;
  if (!location.hash.startsWith('#/')) {
    history.replaceState(null, '', '#/overview');
  }
  const hash = location.hash;
  const route = routes.find(([pattern]) => pattern.test(hash)) || routes[0];
  const [pattern, page, section] = route;
  const args = (hash.match(pattern) || []).slice(1, 2).map(decodeURIComponent);
  for (const link of document.querySelectorAll('nav a')) {
    if (link.getAttribute('href') === `#/${section}`) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  const view = h('div', { id: 'view', 'data-page': section });
  try {
    const again = await page(view, ...args);
    if (mine !== generation) return;
    $('#view').replaceWith(view);
    if (again) schedule(mine, again);
  } catch (err) {
    if (mine !== generation || !token()) return;
    $('#view').replaceWith(h('div', { id: 'view' },
      h('p', { class: 'notice bad', role: 'alert' }, `Could not load this page: ${err.message}`)));
  }
}

function showLogin(message) {
  $('#nav').hidden = true;
  $('#view').replaceChildren();
  $('#login').hidden = false;
  $('#login-error').textContent = message || '';
  $('#token').value = '';
  $('#token').focus();
}

function logout(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  showLogin(message);
}

document.addEventListener('DOMContentLoaded', () => {
  $('#login-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $('#token').value.trim());
    try {
      await api('GET', '/admin/status');
    } catch (err) {
      if (err.code === 'metrics_token_only') logout('This is a metrics token: it reads /metrics only. The console needs the admin token.');
      else if (err.status !== 401) logout(`The gateway did not answer as expected: ${err.message}`);
      return;
    }
    $('#token').value = '';
    say('Logged in.');
    render();
    $('#main').focus();
  });
  $('#logout').addEventListener('click', () => {
    logout('Logged out.');
  });
  $('#skip').addEventListener('click', (e) => {
    e.preventDefault();
    $('#main').focus();
  });
  window.addEventListener('hashchange', () => {
    say('');
    render().then(() => $('#main').focus({ preventScroll: true }));
  });
  render();
});
