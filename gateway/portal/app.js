// The app portal: plain DOM over the app API, no framework, for one app at a time.
//
// A portal link (`/portal#link=...`) is exchanged once for a session: an HttpOnly cookie this
// script never sees, and a CSRF token kept in this page's memory only and sent as
// `X-Portal-CSRF` on every request. The link leaves the address bar (and the history) before
// anything else happens. Every call goes to `/portal/api/v1/...`: the app API itself, with
// the app's scopes, grants and rate limit. Text from the gateway is only ever set as text
// (never as HTML), so nothing it returns can run as script.
'use strict';

const REFRESH_MS = 5000;

const $ = (selector) => document.querySelector(selector);
let session = null;

/// An element with attributes (`on*` functions become listeners) and children (strings
/// become text nodes, null and false are skipped).
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith('on') && typeof value === 'function') el.addEventListener(key.slice(2), value);
    else if (key === 'class') el.className = value;
    else if (key === 'value') el.value = value;
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
    this.detail = message;
  }
}

/// Calls the app API for this session's app; the JSON answer and its status, or an ApiFailure.
async function api(method, path, body) {
  const headers = { 'X-Portal-CSRF': session ? session.csrf : '' };
  const init = { method, headers, credentials: 'same-origin' };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const response = await fetch(`/portal/api/v1${path}`, init);
  let data = null;
  try {
    data = await response.json();
  } catch (_) {
    data = null;
  }
  if (!response.ok) {
    const error = (data && data.error) || {};
    if (response.status === 401) ended(error.message || 'Your portal session has ended.');
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

function pretty(value) {
  return JSON.stringify(value, null, 2);
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

function can(scope) {
  return Boolean(session && session.scopes.includes(scope));
}

/// A button that runs `action`, reports through `say`, and renders the page again.
function actionButton(label, ariaLabel, action, kind) {
  return h('button', {
    type: 'button',
    class: kind || null,
    'aria-label': ariaLabel,
    disabled: !can('write'),
    onclick: async (e) => {
      e.target.disabled = true;
      try {
        await action();
      } catch (err) {
        say(`${ariaLabel} failed: ${err.detail || err.message}`);
      }
      render();
    },
  }, label);
}

function subscriptionState(sub) {
  return sub.enabled ? badge('ok', 'delivering') : badge('warn', 'paused');
}

function deliveryStatus(status) {
  if (status === 'delivered') return badge('ok', 'delivered');
  if (status === 'dead') return badge('bad', 'dead letter');
  return badge('warn', status);
}

function attemptStatus(a) {
  const failed = a.error || !a.status || a.status < 200 || a.status > 299;
  return failed ? badge('bad', cell(a.status || 'error')) : badge('ok', String(a.status));
}

/// Shows a secret once, with what it is for.
function secretNotice(title, secret, note) {
  return h('div', { class: 'notice', role: 'alert' },
    h('p', {}, title),
    h('p', {}, 'Signing secret (shown this once): ', h('code', { 'aria-label': 'Signing secret' }, secret)),
    note ? h('p', { class: 'muted' }, note) : null);
}

let shownSecret = null;

// ---- pages ----

async function subscriptions(view) {
  const [{ data }, { data: catalog }, { data: plugins }] = await Promise.all([
    api('GET', '/subscriptions'),
    api('GET', '/event-types'),
    api('GET', '/plugins'),
  ]);
  const toggle = (sub) => actionButton(sub.enabled ? 'Pause' : 'Resume', `${sub.enabled ? 'Pause' : 'Resume'} ${sub.id}`,
    async () => {
      await api('PATCH', `/subscriptions/${encodeURIComponent(sub.id)}`, { enabled: !sub.enabled });
      say(sub.enabled ? `Paused ${sub.id}: no new deliveries until it is resumed.` : `Resumed ${sub.id}.`);
    });
  view.append(
    h('h1', {}, 'Subscriptions'),
    shownSecret,
    table(`${data.subscriptions.length} subscriptions of ${session.app}`, [
      { label: 'Subscription', value: (x) => h('a', { href: `#/subscriptions/${encodeURIComponent(x.id)}` }, x.id) },
      { label: 'Events', value: (x) => x.events.join(', ') },
      { label: 'Destination', value: (x) => h('span', { class: 'mono' }, x.destination.url) },
      { label: 'Plugin', value: (x) => cell(x.plugin && x.plugin.slice(0, 12)) },
      { label: 'State', value: subscriptionState },
      { label: 'Action', value: toggle },
    ], data.subscriptions, (x) => ({ 'data-subscription': x.id })),
  );
  shownSecret = null;
  if (can('write')) view.append(subscriptionForm(catalog.event_types, plugins.plugins));
  return REFRESH_MS;
}

/// Reads the filter inputs: `undefined` when both are empty.
function readFilter(matchText, fieldsText) {
  const filter = {};
  if (matchText.trim()) filter.match = JSON.parse(matchText);
  const fields = fieldsText.split(',').map((f) => f.trim()).filter(Boolean);
  if (fields.length) filter.fields = fields;
  return Object.keys(filter).length ? filter : undefined;
}

// The settings the forms have no field of their own for: any other part of the API's
// subscription body, as JSON, merged into what the fields say (a `destination` object merges
// with the URL). So the portal can do everything the API allows.
const MORE_EXAMPLE = '{"ordering": "record", "timeout": "10s", "retries": 8, "destination": {"rate_limit": "10/s"}}';
const SHOWN = ['id', 'subscription', 'events', 'format', 'filter', 'plugin', 'enabled', 'created_ms', 'updated_ms', 'destination_state'];

function readMore(text, body) {
  if (!text.trim()) return body;
  const more = JSON.parse(text);
  if (more === null || typeof more !== 'object' || Array.isArray(more)) throw new Error('it is not a JSON object');
  const destination = { ...body.destination, ...(more.destination || {}) };
  return { ...body, ...more, destination };
}

function moreSettings(sub) {
  const more = {};
  for (const [key, value] of Object.entries(sub)) {
    if (SHOWN.includes(key) || value === null || value === undefined) continue;
    if (key === 'destination') {
      const { url, secret, previous_secret_until_ms: _, ...rest } = value;
      if (Object.keys(rest).length) more.destination = rest;
    } else {
      more[key] = value;
    }
  }
  return more;
}

function subscriptionForm(types, plugins) {
  const list = h('datalist', { id: 'event-type-list' }, types.map((t) => h('option', { value: t.type }, t.description)));
  const error = h('p', { class: 'error', role: 'alert', id: 'create-error' });
  const form = h('form', {
    'aria-labelledby': 'new-title',
    onsubmit: async (e) => {
      e.preventDefault();
      error.textContent = '';
      const body = {
        events: $('#new-events').value.split(',').map((x) => x.trim()).filter(Boolean),
        destination: { url: $('#new-url').value.trim() },
        format: $('#new-format').value,
      };
      const id = $('#new-id').value.trim();
      if (id) body.id = id;
      if ($('#new-plugin').value) body.plugin = $('#new-plugin').value;
      try {
        const filter = readFilter($('#new-match').value, $('#new-fields').value);
        if (filter) body.filter = filter;
      } catch (err) {
        error.textContent = `Filter: the match is not JSON: ${err.message}`;
        return;
      }
      let request;
      try {
        request = readMore($('#new-more').value, body);
      } catch (err) {
        error.textContent = `More settings: ${err.message}`;
        return;
      }
      try {
        const { data } = await api('POST', '/subscriptions', request);
        shownSecret = secretNotice(`Created ${data.id}.`, data.destination.secret,
          'Give it to the receiver: it checks each delivery\'s webhook-signature with it.');
        say(`Created subscription ${data.id}.`);
        render();
      } catch (err) {
        error.textContent = `Not created: ${err.detail || err.message}`;
      }
    },
  },
  h('h2', { id: 'new-title' }, 'New subscription'),
  h('label', { for: 'new-id' }, 'Id (optional)'),
  h('input', { id: 'new-id', type: 'text', spellcheck: 'false', placeholder: 'orders-to-shop' }),
  h('label', { for: 'new-events' }, 'Event types (comma-separated; model.action, model.*, *.action)'),
  h('input', { id: 'new-events', type: 'text', list: 'event-type-list', spellcheck: 'false', required: true }),
  list,
  h('label', { for: 'new-url' }, 'Destination URL'),
  h('input', { id: 'new-url', type: 'url', spellcheck: 'false', required: true, placeholder: 'https://shop.example.com/hooks/odoo' }),
  h('label', { for: 'new-format' }, 'Format (without a plugin)'),
  h('select', { id: 'new-format' }, h('option', { value: 'json' }, 'JSON'), h('option', { value: 'xml' }, 'XML')),
  h('label', { for: 'new-plugin' }, 'Plugin (optional)'),
  h('select', { id: 'new-plugin' }, h('option', { value: '' }, 'None'),
    plugins.map((p) => h('option', { value: p.hash }, p.name ? `${p.name} (${p.hash.slice(0, 12)})` : p.hash.slice(0, 12)))),
  h('label', { for: 'new-match' }, 'Filter: match (JSON, optional), e.g. {"state": ["sale"]}'),
  h('textarea', { id: 'new-match', spellcheck: 'false', class: 'short' }),
  h('label', { for: 'new-fields' }, 'Filter: fields to keep (comma-separated, optional)'),
  h('input', { id: 'new-fields', type: 'text', spellcheck: 'false' }),
  h('label', { for: 'new-more' }, 'More settings (JSON, optional): ordering, timeout, retries, enrich, the plugin\'s config, the destination\'s auth and rate limit, as the API takes them'),
  h('textarea', { id: 'new-more', spellcheck: 'false', class: 'short', placeholder: MORE_EXAMPLE }),
  h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, 'Create subscription')),
  error);
  return form;
}

let confirmingDelete = null;

async function subscription(view, id) {
  const path = `/subscriptions/${encodeURIComponent(id)}`;
  const [{ data: sub }, { data: log }] = await Promise.all([
    api('GET', path),
    api('GET', `${path}/deliveries?limit=50`),
  ]);
  const replay = (d) => (d.status === 'pending' ? '–' : actionButton('Replay', `Replay ${d.id}`, async () => {
    const { status } = await api('POST', `/deliveries/${encodeURIComponent(d.id)}/replay`);
    say(`Replay of ${d.id} accepted (${status}).`);
  }));
  const deleting = confirmingDelete === id;
  const more = moreSettings(sub);
  const actions = h('div', { class: 'actions' },
    actionButton(sub.enabled ? 'Pause' : 'Resume', `${sub.enabled ? 'Pause' : 'Resume'} ${id}`, async () => {
      await api('PATCH', path, { enabled: !sub.enabled });
      say(sub.enabled ? `Paused ${id}.` : `Resumed ${id}.`);
    }),
    actionButton('Send a test event', `Send a test event to ${id}`, async () => {
      const { data } = await api('POST', `${path}/test`);
      say(`Test event ${data.event_id} (${data.event_type}) sent to ${id}.`);
    }),
    actionButton('Rotate the secret', `Rotate the secret of ${id}`, async () => {
      const { data } = await api('POST', `${path}/rotate-secret`, {});
      shownSecret = secretNotice(`New signing secret for ${id}.`, data.secret,
        data.previous_secret_until_ms ? `The previous secret signs too until ${time(data.previous_secret_until_ms)}.` : null);
      say(`Rotated the secret of ${id}.`);
    }),
    actionButton(deleting ? `Really delete ${id}?` : 'Delete', deleting ? `Really delete ${id}` : `Delete ${id}`, async () => {
      if (!deleting) {
        confirmingDelete = id;
        return;
      }
      confirmingDelete = null;
      await api('DELETE', path);
      say(`Deleted ${id}.`);
      location.hash = '#/subscriptions';
    }, 'danger'));
  view.append(
    h('h1', {}, `Subscription ${id}`),
    shownSecret,
    h('dl', { class: 'facts' },
      h('dt', {}, 'State'), h('dd', {}, subscriptionState(sub)),
      h('dt', {}, 'Events'), h('dd', {}, sub.events.join(', ')),
      h('dt', {}, 'Destination'), h('dd', { class: 'mono' }, sub.destination.url),
      h('dt', {}, 'Format'), h('dd', {}, sub.format),
      h('dt', {}, 'Filter'), h('dd', { class: 'mono' }, sub.filter ? JSON.stringify(sub.filter) : '–'),
      h('dt', {}, 'Plugin'), h('dd', { class: 'mono' }, cell(sub.plugin)),
      h('dt', {}, 'More settings'), h('dd', { class: 'mono', 'data-fact': 'more' }, Object.keys(more).length ? JSON.stringify(more) : '–'),
      h('dt', {}, 'Previous secret signs until'), h('dd', {}, time(sub.destination.previous_secret_until_ms)),
      h('dt', {}, 'Updated'), h('dd', {}, time(sub.updated_ms))),
    can('write') ? actions : h('p', { class: 'muted' }, 'This session can read only.'),
    h('h2', {}, 'Delivery log'),
    table('Newest first, each with its attempts', [
      { label: 'Delivery', value: (d) => h('span', { class: 'mono' }, d.id) },
      { label: 'Created', value: (d) => time(d.created_ms) },
      { label: 'Status', value: (d) => deliveryStatus(d.status) },
      { label: 'Attempts', value: (d) => attemptsList(d) },
      { label: 'Reason', value: (d) => cell(d.reason) },
      { label: 'Action', value: replay },
    ], log.deliveries, (d) => ({ 'data-delivery': d.id })),
  );
  shownSecret = null;
  if (can('write')) view.append(editForm(sub));
  return deleting ? null : REFRESH_MS;
}

function attemptsList(d) {
  if (!d.attempts.length) return h('span', { class: 'muted' }, 'not tried yet');
  return h('ol', { class: 'attempts' }, d.attempts.map((a) => h('li', {},
    attemptStatus(a), ` ${cell(a.latency_ms)} ms at ${time(a.at_ms)}`,
    a.error ? h('span', { class: 'error' }, ` ${a.error}`) : null,
    a.excerpt ? h('pre', { class: 'excerpt', 'aria-label': 'Response excerpt' }, a.excerpt) : null)));
}

function editForm(sub) {
  const error = h('p', { class: 'error', role: 'alert' });
  return h('form', {
    'aria-labelledby': 'edit-title',
    onsubmit: async (e) => {
      e.preventDefault();
      error.textContent = '';
      const patch = {
        events: $('#edit-events').value.split(',').map((x) => x.trim()).filter(Boolean),
        destination: { url: $('#edit-url').value.trim() },
      };
      try {
        patch.filter = readFilter($('#edit-match').value, $('#edit-fields').value) || null;
      } catch (err) {
        error.textContent = `Filter: the match is not JSON: ${err.message}`;
        return;
      }
      let request;
      try {
        request = readMore($('#edit-more').value, patch);
      } catch (err) {
        error.textContent = `More settings: ${err.message}`;
        return;
      }
      try {
        await api('PATCH', `/subscriptions/${encodeURIComponent(sub.id)}`, request);
        say(`Saved ${sub.id}.`);
        render();
      } catch (err) {
        error.textContent = `Not saved: ${err.detail || err.message}`;
      }
    },
  },
  h('h2', { id: 'edit-title' }, 'Edit'),
  h('label', { for: 'edit-events' }, 'Event types (comma-separated)'),
  h('input', { id: 'edit-events', type: 'text', spellcheck: 'false', value: sub.events.join(', ') }),
  h('label', { for: 'edit-url' }, 'Destination URL'),
  h('input', { id: 'edit-url', type: 'url', spellcheck: 'false', value: sub.destination.url }),
  h('label', { for: 'edit-match' }, 'Filter: match (JSON)'),
  h('textarea', { id: 'edit-match', spellcheck: 'false', class: 'short', value: sub.filter && sub.filter.match ? JSON.stringify(sub.filter.match) : '' }),
  h('label', { for: 'edit-fields' }, 'Filter: fields to keep (comma-separated)'),
  h('input', { id: 'edit-fields', type: 'text', spellcheck: 'false', value: sub.filter && sub.filter.fields ? sub.filter.fields.join(', ') : '' }),
  h('label', { for: 'edit-more' }, 'More settings (JSON): changed as the API\'s PATCH changes them (null clears one)'),
  h('textarea', { id: 'edit-more', spellcheck: 'false', class: 'short', placeholder: MORE_EXAMPLE }),
  h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, 'Save')),
  error);
}

async function catalog(view) {
  const { data } = await api('GET', '/event-types');
  const origin = (t) => (t.schema_origin === 'odoo' ? badge('ok', 'from Odoo')
    : t.schema_origin === 'inferred' ? badge('warn', 'inferred') : badge('muted', 'unknown yet'));
  view.append(
    h('h1', {}, 'Event catalog'),
    h('p', { class: 'muted' }, 'The event types this app may subscribe to, with the shape of their payloads.'),
    table(`${data.event_types.length} event types`, [
      { label: 'Event type', value: (t) => h('a', { href: `#/catalog/${encodeURIComponent(t.type)}` }, t.type) },
      { label: 'Schema', value: origin },
      { label: 'Sources', value: (t) => t.sources.join(', ') },
      { label: 'Description', value: (t) => t.description },
    ], data.event_types, (t) => ({ 'data-event-type': t.type })),
  );
}

function fieldNotes(schema) {
  const parts = [];
  const walk = (s) => {
    if (!s || typeof s !== 'object') return;
    if (Array.isArray(s.enum)) parts.push(`one of ${s.enum.join(', ')}`);
    for (const alt of s.anyOf || []) walk(alt);
  };
  walk(schema);
  if (schema['x-odoo-relation']) parts.push(`→ ${schema['x-odoo-relation']}`);
  if (schema['x-odoo-required']) parts.push('required');
  if (schema['x-enrich']) parts.push(`enriched from ${schema['x-enrich'].model} (${schema['x-enrich'].by === 'source' ? 'always' : 'on request'})`);
  return parts.join('; ');
}

async function eventType(view, type) {
  const { data: t } = await api('GET', `/event-types/${encodeURIComponent(type)}`);
  const properties = Object.entries((t.schema && t.schema.properties) || {});
  view.append(
    h('h1', {}, `Event type ${t.type}`),
    h('p', {}, t.description),
    h('dl', { class: 'facts' },
      h('dt', {}, 'Schema'), h('dd', {}, t.schema_origin === 'odoo' ? 'from Odoo (fields_get)'
        : t.schema_origin === 'inferred' ? 'inferred from the payloads seen' : 'not known yet'),
      t.schema_note ? [h('dt', {}, 'Note'), h('dd', {}, t.schema_note)] : null,
      h('dt', {}, 'Sources'), h('dd', {}, t.sources.join(', ')),
      h('dt', {}, 'Last seen'), h('dd', {}, time(t.seen_ms))),
    t.enrich.length ? table('Enrichment', [
      { label: 'Field', value: (e) => e.field },
      { label: 'Model read', value: (e) => e.model },
      { label: 'Fields embedded', value: (e) => (e.fields.length ? e.fields.join(', ') : '[id, name]') },
      { label: 'When', value: (e) => (e.by === 'source' ? 'always' : 'when a subscription asks (enrich)') },
    ], t.enrich) : null,
    table(`${properties.length} fields`, [
      { label: 'Field', value: ([name]) => h('span', { class: 'mono' }, name) },
      { label: 'Type', value: ([, s]) => cell(s['x-odoo-type'] || (Array.isArray(s.type) ? s.type.join(' or ') : s.type)
        || (s.const !== undefined ? typeof s.const : '')) },
      { label: 'Label', value: ([, s]) => cell(s.title || s.description) },
      { label: 'Notes', value: ([, s]) => cell(fieldNotes(s)) },
    ], properties, ([name]) => ({ 'data-field': name })),
    h('h2', {}, 'Example'),
    h('pre', { 'aria-label': `Example of ${t.type}` }, pretty(t.example)),
    h('details', {}, h('summary', {}, 'JSON Schema'), h('pre', { 'aria-label': `Schema of ${t.type}` }, pretty(t.schema))),
  );
}

async function deadLetters(view) {
  const { data } = await api('GET', '/dead-letters');
  const replay = (d) => actionButton('Replay', `Replay ${d.id}`, async () => {
    const { status } = await api('POST', `/dead-letters/${encodeURIComponent(d.id)}/replay`);
    say(`Replay of ${d.id} accepted (${status}): it is queued again.`);
  });
  view.append(
    h('h1', {}, 'Dead letters'),
    table(`${data.dead_letters.length} dead letters`, [
      { label: 'Delivery', value: (d) => h('span', { class: 'mono' }, d.id) },
      { label: 'Subscription', value: (d) => h('a', { href: `#/subscriptions/${encodeURIComponent(d.subscription)}` }, d.subscription) },
      { label: 'Tries', num: true, value: (d) => d.attempts },
      { label: 'Reason', value: (d) => d.reason },
      { label: 'When', value: (d) => time(d.at_ms) },
      { label: 'Action', value: replay },
    ], data.dead_letters, (d) => ({ 'data-dead-letter': d.id })),
  );
  return REFRESH_MS;
}

async function plugins(view) {
  const [{ data }, { data: subs }, { data: catalog }] = await Promise.all([
    api('GET', '/plugins'),
    api('GET', '/subscriptions'),
    api('GET', '/event-types'),
  ]);
  view.append(
    h('h1', {}, 'Plugins'),
    table(`${data.plugins.length} uploaded plugins`, [
      { label: 'Name', value: (p) => cell(p.name) },
      { label: 'SHA-256', value: (p) => h('span', { class: 'mono' }, p.hash.slice(0, 16)) },
      { label: 'Size (bytes)', num: true, value: (p) => p.size },
      { label: 'Uploaded', value: (p) => time(p.uploaded_ms) },
    ], data.plugins),
  );
  if (can('write')) view.append(uploadForm());
  if (!data.plugins.length) return;
  const result = h('div', { id: 'dry-run-result', 'aria-live': 'polite' });
  const users = (hash) => subs.subscriptions.filter((s) => s.plugin === hash);
  const subSelect = h('select', { id: 'dry-subscription' });
  const pluginSelect = h('select', { id: 'dry-plugin' },
    data.plugins.map((p) => h('option', { value: p.hash }, p.name || p.hash.slice(0, 16))));
  const fillSubs = () => {
    subSelect.replaceChildren(h('option', { value: '' }, 'None: use the settings below'),
      users(pluginSelect.value).map((s) => h('option', { value: s.id }, s.id)));
  };
  pluginSelect.addEventListener('change', fillSubs);
  fillSubs();
  const typeSelect = h('select', { id: 'dry-type' },
    catalog.event_types.filter((t) => t.example !== null).map((t) => h('option', { value: t.type }, t.type)));
  const eventText = h('textarea', { id: 'dry-event', spellcheck: 'false' });
  const showExample = () => {
    const t = catalog.event_types.find((x) => x.type === typeSelect.value);
    eventText.value = t ? pretty(t.example) : '';
  };
  typeSelect.addEventListener('change', showExample);
  showExample();
  const config = h('textarea', { id: 'dry-config', spellcheck: 'false', class: 'short' });
  const form = h('form', {
    onsubmit: async (e) => {
      e.preventDefault();
      const button = form.querySelector('button');
      button.disabled = true;
      result.replaceChildren(h('p', {}, 'Running…'));
      const body = { event_type: typeSelect.value };
      try {
        const payload = JSON.parse(eventText.value);
        // An Odoo webhook body names its model; any other payload is wrapped as an event.
        const dot = typeSelect.value.lastIndexOf('.');
        body.event = payload && ('_model' in payload || 'model' in payload) ? payload
          : { model: typeSelect.value.slice(0, dot), action: typeSelect.value.slice(dot + 1), payload };
        if (subSelect.value) body.subscription = subSelect.value;
        else if (config.value.trim()) body.config = JSON.parse(config.value);
      } catch (err) {
        result.replaceChildren(h('p', { class: 'notice bad', role: 'alert' }, `Not JSON: ${err.message}`));
        button.disabled = false;
        return;
      }
      try {
        const { data: ran } = await api('POST', `/plugins/${encodeURIComponent(pluginSelect.value)}/dry-run`, body);
        showDryRun(result, ran);
      } catch (err) {
        result.replaceChildren(h('p', { class: 'notice bad', role: 'alert' }, `Dry-run failed: ${err.detail || err.message}`));
      }
      button.disabled = false;
    },
  },
  h('h2', {}, 'Dry-run'),
  h('p', { class: 'muted' }, 'Runs the plugin on an event here and now: nothing is queued or sent, and nothing is read from Odoo.'),
  h('label', { for: 'dry-plugin' }, 'Plugin'), pluginSelect,
  h('label', { for: 'dry-subscription' }, 'As subscription'), subSelect,
  h('label', { for: 'dry-type' }, 'Event type (its example fills the event)'), typeSelect,
  h('label', { for: 'dry-event' }, 'Event payload'), eventText,
  h('label', { for: 'dry-config' }, 'Plugin settings (JSON, without a subscription)'), config,
  h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, 'Run dry-run')));
  view.append(form, result);
}

/// Uploads a component the app built (`POST /v1/plugins`, its bytes as they are).
function uploadForm() {
  const error = h('p', { class: 'error', role: 'alert' });
  const form = h('form', {
    'aria-labelledby': 'upload-title',
    onsubmit: async (e) => {
      e.preventDefault();
      error.textContent = '';
      const file = $('#upload-file').files[0];
      if (!file) return;
      const name = $('#upload-name').value.trim();
      const query = name ? `?name=${encodeURIComponent(name)}` : '';
      const response = await fetch(`/portal/api/v1/plugins${query}`, {
        method: 'POST',
        headers: { 'X-Portal-CSRF': session.csrf, 'Content-Type': 'application/wasm' },
        credentials: 'same-origin',
        body: file,
      });
      const data = await response.json().catch(() => null);
      if (!response.ok) {
        const failure = (data && data.error) || {};
        if (response.status === 401) ended(failure.message);
        error.textContent = `Not uploaded: ${failure.message || response.status}`;
        return;
      }
      say(`Uploaded ${data.name || data.hash}.`);
      render();
    },
  },
  h('h2', { id: 'upload-title' }, 'Upload a plugin'),
  h('label', { for: 'upload-file' }, 'Component (.wasm)'),
  h('input', { id: 'upload-file', type: 'file', accept: '.wasm,application/wasm', required: true }),
  h('label', { for: 'upload-name' }, 'Name (optional)'),
  h('input', { id: 'upload-name', type: 'text', spellcheck: 'false' }),
  h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Upload')),
  error);
  return form;
}

function showDryRun(result, data) {
  const summary = data.outcome === 'deliver'
    ? `${data.deliveries.length} deliveries, in ${data.took_ms.toFixed(1)} ms`
    : `The plugin answered ${data.outcome}: ${data.error}`;
  result.replaceChildren(...[
    h('h2', {}, 'Result'),
    h('p', { class: data.outcome === 'deliver' ? 'notice' : 'notice bad' }, summary),
    data.deliveries.map((d, n) => h('article', { class: 'delivery', 'data-destination': d.destination },
      h('h3', {}, `Delivery ${n + 1}${d.destination ? ` to ${d.destination}` : ''}`),
      h('p', { class: 'muted' }, d.content_type),
      h('pre', { 'aria-label': `Body of delivery ${n + 1}` }, d.body))),
  ].flat().filter(Boolean));
}

// ---- routing ----

const routes = [
  [/^#\/subscriptions$/, subscriptions, 'subscriptions'],
  [/^#\/subscriptions\/(.+)$/, subscription, 'subscriptions'],
  [/^#\/catalog$/, catalog, 'catalog'],
  [/^#\/catalog\/(.+)$/, eventType, 'catalog'],
  [/^#\/dead-letters$/, deadLetters, 'dead-letters'],
  [/^#\/plugins$/, plugins, 'plugins'],
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
  if (!session) return;
  $('#welcome').hidden = true;
  $('#nav').hidden = false;
  $('#app-name').textContent = `${session.app}${can('write') ? '' : ' (read only)'}`;
  if (!location.hash.startsWith('#/')) history.replaceState(null, '', '#/subscriptions');
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
    if (mine !== generation || !session) return;
    const message = err.status === 404 ? 'There is no such thing for this app.' : `Could not load this page: ${err.detail || err.message}`;
    $('#view').replaceWith(h('div', { id: 'view' }, h('p', { class: 'notice bad', role: 'alert' }, message)));
  }
}

/// The session is over (or never was): back to the welcome page, saying why.
function ended(message) {
  session = null;
  clearTimeout(timer);
  $('#nav').hidden = true;
  $('#app-name').textContent = 'App portal';
  $('#view').replaceChildren();
  $('#welcome').hidden = false;
  $('#welcome-error').textContent = message || '';
}

/// Exchanges the link in the URL's fragment (taken out of the address bar first), or finds
/// the session this browser already has.
async function start() {
  const fragment = location.hash;
  let response;
  if (fragment.startsWith('#link=')) {
    history.replaceState(null, '', '/portal#/subscriptions');
    response = await fetch('/portal/session', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      credentials: 'same-origin',
      body: JSON.stringify({ link: decodeURIComponent(fragment.slice('#link='.length)) }),
    });
  } else {
    response = await fetch('/portal/session', { credentials: 'same-origin' });
  }
  const data = await response.json().catch(() => null);
  if (!response.ok) {
    const error = (data && data.error) || {};
    ended(fragment.startsWith('#link=') || error.code !== 'no_session' ? error.message : '');
    return;
  }
  session = data;
  say(`Signed in to the portal of ${session.app}.`);
  render();
}

document.addEventListener('DOMContentLoaded', () => {
  $('#logout').addEventListener('click', async () => {
    try {
      await fetch('/portal/session', {
        method: 'DELETE',
        headers: { 'X-Portal-CSRF': session ? session.csrf : '' },
        credentials: 'same-origin',
      });
    } finally {
      ended('Logged out.');
    }
  });
  $('#skip').addEventListener('click', (e) => {
    e.preventDefault();
    $('#main').focus();
  });
  window.addEventListener('hashchange', () => {
    if (location.hash.startsWith('#link=')) {
      start();
      return;
    }
    say('');
    render().then(() => $('#main').focus({ preventScroll: true }));
  });
  start();
});
