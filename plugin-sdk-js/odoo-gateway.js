// Helpers for Odoo gateway plugins written in JavaScript: the counterpart of the Rust SDK.
//
// A plugin's logic is two plain functions, tested with `node --test` without WebAssembly:
//
//   export function handle(event, config) { ... return [Delivery.json('', body)]; }  // or throw new Reject('why')
//   export function validateConfig(config) { ... }                                     // or throw new InvalidConfig('why')
//
// and the component's entry module (`plugin.js`, built by componentize-js) exports them with
// `exportPlugin`, handing it the two WIT imports. Nothing here imports the gateway itself, so
// this module runs the same under Node.js and inside the component.

export const CONTENT_TYPE_JSON = 'application/json';
export const CONTENT_TYPE_XML = 'application/xml';

/** Why a plugin made no deliveries; one of the three kinds below. */
export class PluginError extends Error {}
/** The event is wrong for this subscription: dead-lettered with this reason, not retried. */
export class Reject extends PluginError {}
/** A transient condition: the gateway calls the plugin again later. */
export class Retry extends PluginError {}
/** The subscription's configuration cannot work; the message names the key. */
export class InvalidConfig extends PluginError {}

/** `text` quoted as Rust's `{:?}` quotes it, so messages read the same in every language. */
export function rustDebug(text) {
  let out = '"';
  for (const ch of text) {
    const code = ch.codePointAt(0);
    if (ch === '"' || ch === '\\') out += `\\${ch}`;
    else if (ch === '\n') out += '\\n';
    else if (ch === '\r') out += '\\r';
    else if (ch === '\t') out += '\\t';
    else if (ch === '\0') out += '\\0';
    else if (code < 0x20 || code === 0x7f) out += `\\u{${code.toString(16)}}`;
    else out += ch;
  }
  return `${out}"`;
}

/** A configuration value that is missing or cannot be used, worded as the Rust SDK words it. */
export class ConfigError extends InvalidConfig {
  static missing(key) {
    return new ConfigError(`config key \`${key}\` is required but not set`);
  }
  static invalid(key, value, reason) {
    return new ConfigError(`config key \`${key}\`: invalid value ${rustDebug(value)}: ${reason}`);
  }
}

/** Orders strings by code point (as Rust and Python do; `sort()` alone orders UTF-16 units). */
export function byCodePoint(a, b) {
  const x = [...a];
  const y = [...b];
  for (let i = 0; i < Math.min(x.length, y.length); i++) {
    const d = x[i].codePointAt(0) - y[i].codePointAt(0);
    if (d !== 0) return d;
  }
  return x.length - y.length;
}

/** Sorts keys by code point; the native sort agrees unless a key holds a surrogate pair. */
function sortKeys(keys) {
  return /[\ud800-\udfff]/.test(keys.join('')) ? keys.sort(byCodePoint) : keys.sort();
}

const trim = (s) => s.replace(/^[\s\u0085]+|[\s\u0085]+$/gu, '');

/** The subscription's `config` table: string keys to string values, read-only. */
export class Config {
  /** From [key, value] pairs (later pairs win) or an object. */
  constructor(pairs = []) {
    const list = Array.isArray(pairs) ? pairs : Object.entries(pairs);
    const map = new Map(list);
    this.map = new Map(sortKeys([...map.keys()]).map((k) => [k, map.get(k)]));
  }
  /** The raw value of `key`, or `fallback` when it is not set. */
  get(key, fallback = undefined) {
    return this.map.has(key) ? this.map.get(key) : fallback;
  }
  /** The value of `key`; a ConfigError when it is unset or blank. */
  required(key) {
    const value = this.map.get(key);
    if (value === undefined || trim(value) === '') throw ConfigError.missing(key);
    return value;
  }
  /** `key` as a number (spaces ignored), `fallback` when unset. */
  number(key, fallback = undefined) {
    return this.#parse(key, fallback, (t) => (/^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(t) ? Number(t) : undefined), 'invalid float literal');
  }
  /** `key` as a safe integer (spaces ignored), `fallback` when unset. */
  integer(key, fallback = undefined) {
    return this.#parse(key, fallback, (t) => (/^[+-]?\d+$/.test(t) && Number.isSafeInteger(Number(t)) ? Number(t) : undefined), 'invalid digit found in string');
  }
  /** `key` as `true` or `false`, `fallback` when unset. */
  boolean(key, fallback = undefined) {
    return this.#parse(key, fallback, (t) => ({ true: true, false: false })[t], 'provided string was not `true` or `false`');
  }
  /** `key` split on commas, items trimmed, empty items dropped; `fallback` is itself a comma list. */
  list(key, fallback = undefined) {
    const value = this.get(key, fallback);
    return value === undefined ? [] : value.split(',').map(trim).filter((item) => item !== '');
  }
  /** [rest of the key, value] for every key starting with `prefix`, sorted by key. */
  withPrefix(prefix) {
    return this.entries().filter(([k]) => k.startsWith(prefix)).map(([k, v]) => [k.slice(prefix.length), v]);
  }
  /** Every [key, value] pair, sorted by key. */
  entries() {
    return [...this.map.entries()];
  }
  #parse(key, fallback, parse, reason) {
    const value = this.map.get(key);
    if (value === undefined) return fallback;
    const parsed = parse(trim(value));
    if (parsed === undefined) throw ConfigError.invalid(key, value, reason);
    return parsed;
  }
}

/** JSON text that `toJson` writes as it is: a part of a document written once and used in
 * several (the caller vouches that it is valid JSON). */
export class RawJson {
  constructor(text) {
    this.text = text;
  }
}

/**
 * A JSON number that JavaScript would write differently from the Rust SDK: a float with an
 * integral value (`2.0`), a float Rust writes in another form (`1e2` is `100.0`), an integer
 * past 2^53. `toJson` writes its text; arithmetic and comparisons see its value.
 */
export class Num extends RawJson {
  valueOf() {
    return Number(this.text);
  }
  toString() {
    return this.text;
  }
}

/**
 * A float as the Rust SDK (serde_json) writes it: the shortest digits that read back the same,
 * positional from 1e-5 up to 1e16 with at least one decimal (`2.0`), else `<digits>e<exponent>`.
 */
export function floatText(f) {
  if (f === 0) return Object.is(f, -0) ? '-0.0' : '0.0';
  // JavaScript's own text has the same shortest digits, laid out differently.
  const [mantissa, exponent = '0'] = String(Math.abs(f)).split('e');
  const [whole, fraction = ''] = mantissa.split('.');
  const all = whole + fraction;
  const significant = all.replace(/^0+/, '');
  // The decimal point sits `point` digits after the first significant one.
  const point = whole.length - (all.length - significant.length) + Number(exponent);
  const digits = significant.replace(/0+$/, '');
  let text;
  if (point > 0 && point <= 16) {
    text = `${digits.slice(0, point)}${'0'.repeat(Math.max(0, point - digits.length))}.${digits.slice(point) || '0'}`;
  } else if (point > -5 && point <= 0) {
    text = `0.${'0'.repeat(-point)}${digits}`;
  } else {
    text = `${digits[0]}${digits.length > 1 ? `.${digits.slice(1)}` : ''}e${point - 1}`;
  }
  return f < 0 ? `-${text}` : text;
}

const INTEGER = /^-?(0|[1-9][0-9]*)$/;

/** A number read with `exactNumbers`: integers exact, floats as the Rust SDK writes them.
 * Called for every number of a payload, so the common cases cost one string comparison
 * (regular expressions are slow in an interpreter without a JIT). */
function exactNumber(value, source) {
  if (String(value) === source) {
    // Written as JavaScript writes it: an integer, or a float that Rust writes alike unless it
    // is below 1e-5 (JavaScript goes positional down to 1e-6).
    const plain = Number.isInteger(value) ? value < 1e21 && value > -1e21 : value >= 1e-5 || value <= -1e-5;
    return plain ? value : new Num(floatText(value));
  }
  if (source.indexOf('.') < 0 && source.indexOf('e') < 0 && source.indexOf('E') < 0) {
    // An integer JavaScript cannot hold exactly: kept as written.
    return Number.isSafeInteger(value) ? value : new Num(source);
  }
  if (!Number.isFinite(value)) return value;
  if (Number.isInteger(value) && value !== 0 && value < 1e16 && value > -1e16) {
    // A float with an integral value: Rust writes `2.0` where JavaScript writes `2`.
    return new Num(`${value}.0`);
  }
  // Another spelling (`1.50`, `1E5`): the shortest digits, laid out as Rust lays them out.
  const text = floatText(value);
  return text === String(value) ? value : new Num(text);
}

/** Whether the engine gives a reviver each number's source text (ES2025 JSON.parse source text access). */
const SOURCE_TEXT = (() => {
  try {
    let seen;
    JSON.parse('[1.0]', (key, value, context) => {
      if (key === '0') seen = context && context.source;
      return value;
    });
    return seen === '1.0';
  } catch {
    return false;
  }
})();

function reviveNumber(key, value, context) {
  return typeof value === 'number' ? exactNumber(value, context.source) : value;
}

/**
 * Parses JSON text. With `exactNumbers`, numbers read as the Rust SDK reads them: integers stay
 * exact at any size, floats stay floats (`2.0` is not `2`); those JavaScript would write
 * differently come back as `Num`, so that `toJson` writes what the Rust SDK writes. `Record`'s
 * readers, `numberOf` and `integerOf` accept both. Throws SyntaxError on bad JSON.
 */
export function parseJson(text, { exactNumbers = false } = {}) {
  if (!exactNumbers) return JSON.parse(text);
  return SOURCE_TEXT ? JSON.parse(text, reviveNumber) : parseExact(text);
}

const NUMBER = /-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?/y;
const SPACE = /[ \t\n\r]*/y;

/** The same as the reviver, for engines without source text access (it checks the grammar
 * with JSON.parse first, so its errors are the engine's own). */
function parseExact(text) {
  JSON.parse(text);
  let at = 0;
  const space = () => {
    SPACE.lastIndex = at;
    SPACE.exec(text);
    at = SPACE.lastIndex;
  };
  const value = () => {
    space();
    const c = text[at];
    if (c === '{') {
      at++;
      const object = {};
      space();
      if (text[at] === '}') return at++, object;
      for (;;) {
        space();
        const key = string();
        space();
        at++; // ':'
        Object.defineProperty(object, key, { value: value(), enumerable: true, writable: true, configurable: true });
        space();
        if (text[at++] === '}') return object;
      }
    }
    if (c === '[') {
      at++;
      const list = [];
      space();
      if (text[at] === ']') return at++, list;
      for (;;) {
        list.push(value());
        space();
        if (text[at++] === ']') return list;
      }
    }
    if (c === '"') return string();
    if (c === 't') return (at += 4), true;
    if (c === 'f') return (at += 5), false;
    if (c === 'n') return (at += 4), null;
    NUMBER.lastIndex = at;
    const written = NUMBER.exec(text)[0];
    at += written.length;
    return exactNumber(Number(written), written);
  };
  const string = () => {
    const start = at++;
    while (text[at] !== '"') at += text[at] === '\\' ? 2 : 1;
    return JSON.parse(text.slice(start, ++at));
  };
  return value();
}

/** The JavaScript number of a JSON number (plain or `Num`), else undefined. */
export function numberOf(value) {
  if (typeof value === 'number') return value;
  return value instanceof Num ? Number(value.text) : undefined;
}

/** The integer of a JSON integer within i64 (a number when safe, else a BigInt), else undefined. */
export function integerOf(value) {
  if (typeof value === 'number') return Number.isInteger(value) ? value : undefined;
  if (!(value instanceof Num) || !INTEGER.test(value.text)) return undefined;
  const n = BigInt(value.text);
  if (n < -(2n ** 63n) || n >= 2n ** 63n) return undefined;
  return Number.isSafeInteger(Number(n)) ? Number(n) : n;
}

/**
 * Compact JSON with keys sorted by code point: the bytes the Rust SDK writes for the same
 * value when numbers were read with `exactNumbers`.
 */
export function toJson(value) {
  switch (typeof value) {
    case 'string':
      return JSON.stringify(value);
    case 'number':
      return Number.isFinite(value) ? String(value) : 'null';
    case 'boolean':
      return value ? 'true' : 'false';
    case 'bigint':
      return String(value);
    case 'object':
      break;
    default:
      // As JSON.stringify does: undefined (and functions) are null in a list, left out of an object.
      return 'null';
  }
  if (value === null) return 'null';
  if (value instanceof RawJson) return value.text;
  if (Array.isArray(value)) {
    let out = '[';
    for (let i = 0; i < value.length; i++) out += (i === 0 ? '' : ',') + toJson(value[i]);
    return `${out}]`;
  }
  const keys = sortKeys(Object.keys(value));
  let out = '';
  for (let i = 0; i < keys.length; i++) {
    const item = value[keys[i]];
    if (item !== undefined && typeof item !== 'function') out += `,${JSON.stringify(keys[i])}:${toJson(item)}`;
  }
  return `{${out.slice(1)}}`;
}

/** Whether an Odoo value is set: `false` and `null` mean "no value". */
export const isSet = (value) => value !== false && value !== null && value !== undefined;

/** One business event, as the gateway passes it to `handle`. */
export class Event {
  constructor({ id = 'test-event', source = 'test', model, action, recordId, receivedAtMs = 0n, payload, headers = [] }) {
    Object.assign(this, { id, source, model, action, recordId, receivedAtMs, payload, headers });
    this.parsed = undefined;
  }
  /** An event for tests (id `test-event`, source `test`, time 0); `payload` text or a value. */
  static new(model, action, payload, fields = {}) {
    return new Event({ ...fields, model, action, payload: typeof payload === 'string' ? payload : JSON.stringify(payload) });
  }
  /** `<model>.<action>`, as subscriptions match it. */
  get eventType() {
    return `${this.model}.${this.action}`;
  }
  /** The payload parsed (once) as JSON (see `parseJson`); Reject when it is not JSON. */
  payloadJson({ exactNumbers = false } = {}) {
    if (this.parsed === undefined || this.parsed.exact !== exactNumbers) {
      try {
        this.parsed = { exact: exactNumbers, value: parseJson(this.payload, { exactNumbers }) };
      } catch (error) {
        throw new Reject(`payload is not valid JSON: ${error.message}`);
      }
    }
    return this.parsed.value;
  }
  /** The payload as a Record; Reject when it is not a JSON object. */
  record(options) {
    return Record.of(this.payloadJson(options));
  }
}

/** A many2one value: `id`, and `name` when the payload carries it. */
export class Many2one {
  constructor(id, name = undefined) {
    this.id = id;
    this.name = name;
  }
  /** Reads `[id, "name"]`, `[id]` or a bare id; undefined for `false`, `null` or another shape. */
  static of(value) {
    if (integerOf(value) !== undefined) return new Many2one(integerOf(value));
    if (!Array.isArray(value) || integerOf(value[0]) === undefined) return undefined;
    if (value.length === 1) return new Many2one(integerOf(value[0]));
    if (value.length !== 2) return undefined;
    if (typeof value[1] === 'string') return new Many2one(integerOf(value[0]), value[1]);
    return isSet(value[1]) ? undefined : new Many2one(integerOf(value[0]));
  }
}

/** An x2many value: a list of ids, or of embedded records (`records` undefined for ids). */
export class X2many {
  constructor(idList, records) {
    this.idList = idList;
    this.records = records;
  }
  /** Reads a list of ids or of objects; undefined for `false`, mixed lists and anything else. */
  static of(value) {
    if (!Array.isArray(value)) return undefined;
    if (value.every((item) => integerOf(item) !== undefined)) return new X2many(value.map(integerOf), undefined);
    if (value.every((item) => item !== null && typeof item === 'object' && !Array.isArray(item) && !(item instanceof Num))) {
      return new X2many(undefined, value.map((item) => new Record(item)));
    }
    return undefined;
  }
  /** The ids, whichever form the list has (records without an integer `id` skipped). */
  ids() {
    return this.records === undefined ? [...this.idList] : this.records.map((r) => r.id()).filter((id) => id !== undefined);
  }
  get length() {
    return (this.records ?? this.idList).length;
  }
}

/** An Odoo record (a JSON object) with readers that apply Odoo's conventions; readers never
 * throw: an absent, unset or oddly shaped field reads as undefined. */
export class Record {
  constructor(fields) {
    this.fields = fields;
  }
  /** A record of `value`; Reject when it is not a JSON object. */
  static of(value) {
    if (value === null || typeof value !== 'object' || Array.isArray(value) || value instanceof Num) {
      throw new Reject('payload is not a JSON object');
    }
    return new Record(value);
  }
  /** The value of `name`; undefined when absent, `false` or `null`. */
  get(name) {
    const value = Object.hasOwn(this.fields, name) ? this.fields[name] : undefined;
    return isSet(value) ? value : undefined;
  }
  str(name) {
    const value = this.get(name);
    return typeof value === 'string' ? value : undefined;
  }
  float(name) {
    return numberOf(this.get(name));
  }
  int(name) {
    return integerOf(this.get(name));
  }
  /** true only when the payload says `true`. */
  bool(name) {
    return this.fields[name] === true;
  }
  id() {
    return this.int('id');
  }
  many2one(name) {
    return Many2one.of(this.get(name));
  }
  x2many(name) {
    return X2many.of(this.get(name));
  }
}

const encoder = new TextEncoder();

/** One POST for the gateway to sign and deliver; destination '' is the default one. */
export class Delivery {
  constructor(destination, contentType, body, headers = [], orderingKey = undefined) {
    this.destination = destination;
    this.contentType = contentType;
    this.body = typeof body === 'string' ? encoder.encode(body) : body;
    this.headers = headers;
    this.orderingKey = orderingKey;
  }
  /** A JSON delivery of `value` (see `toJson`). */
  static json(destination, value) {
    return new Delivery(destination, CONTENT_TYPE_JSON, toJson(value));
  }
  static xml(destination, body) {
    return new Delivery(destination, CONTENT_TYPE_XML, body);
  }
  /** Adds a request header (the gateway's own signature headers cannot be overridden). */
  withHeader(name, value) {
    this.headers.push([name, value]);
    return this;
  }
  /**
   * For a subscription with `ordering`: the key this delivery is ordered by (deliveries with the
   * same key are attempted one at a time, in their events' acceptance order), instead of the
   * event's (`undefined` or `null`: the event's). At most 256 bytes. Needs plugin world 0.2.0
   * (`wit/v0.2`): a component built against 0.1.0 has no ordering key, and its deliveries take
   * their event's.
   */
  withOrderingKey(key) {
    this.orderingKey = key === undefined || key === null ? undefined : String(key);
    return this;
  }
}

// The log: the gateway's `log` import inside a component (set by `exportPlugin`), stderr elsewhere.
let logSink = (level, message) => console.error(`[${level}] ${message}`);
export const trace = (message) => logSink('trace', String(message));
export const debug = (message) => logSink('debug', String(message));
export const info = (message) => logSink('info', String(message));
export const warn = (message) => logSink('warn', String(message));
export const error = (message) => logSink('error', String(message));

const TAGS = [
  [Reject, 'reject'],
  [Retry, 'retry'],
  [InvalidConfig, 'invalid-config'],
];

/**
 * componentize-js runs the bindings it generates (the code that turns a call's arguments into
 * JavaScript values and the results back) in a global of their own, and SpiderMonkey creates a
 * global's standard classes (`Promise`, `BigInt`, `Uint8Array`...) the first time code there
 * names them. The bindings name them only during a call, so every call, in its fresh instance,
 * created them again (about 13 % of a `shipper-router-js` call, measured). The imports are functions of that global: through
 * one, this names every class there and runs an async function (the export wrappers are async)
 * while the component is built, so that the snapshot holds them. Outside a component (tests
 * under Node.js) the imports belong to this global, and nothing is done.
 */
function warmBindingsGlobal(imports) {
  const bindingsFunction = imports.find((f) => typeof f === 'function')?.constructor;
  if (typeof bindingsFunction !== 'function' || bindingsFunction === Function) return;
  try {
    const global = bindingsFunction('return this')();
    // Looking a name up creates its standard class; reading descriptors runs no getter, so
    // nothing of the bindings' global is set up here that would not be in a call.
    for (const name of Object.getOwnPropertyNames(global)) Object.getOwnPropertyDescriptor(global, name);
    bindingsFunction('return (async () => {})()')();
  } catch {
    // Another engine or layout: calls are slower, not different.
  }
}

/**
 * The world's exports, `{ handle, validateConfig }`, for the entry module to export: they call
 * `handle(Event, Config)` and `validateConfig(Config)` and turn Reject, Retry and InvalidConfig
 * into the world's errors (anything else thrown traps the call, its message in the plugin log).
 * `host` holds the two WIT imports: `{ entries, log }`.
 *
 * `warmUp` is a list of [Event, Config] that `handle` runs on once, here, while the component is
 * built: the engine's state after them (compiled functions, caches) is part of the snapshot
 * every call starts from, the same for every call. Results are ignored.
 */
export function exportPlugin(handle, validateConfig, host, { warmUp = [] } = {}) {
  // No host call while the component is being built: the warm-up logs nowhere.
  logSink = () => {};
  for (const [event, config] of warmUp) {
    try {
      handle(event, config);
    } catch (e) {
      if (!(e instanceof PluginError)) throw e;
    }
  }
  warmBindingsGlobal([host.entries, host.log]);
  logSink = (level, message) => host.log(level, message);
  return {
    handle(wit) {
      let deliveries;
      try {
        deliveries = handle(new Event(wit), new Config(host.entries()));
      } catch (e) {
        const tag = TAGS.find(([kind]) => e instanceof kind);
        if (tag) throw { tag: tag[1], val: e.message };
        throw e;
      }
      return deliveries.map((d) => ({ destination: d.destination, contentType: d.contentType, body: d.body, headers: d.headers, orderingKey: d.orderingKey }));
    },
    validateConfig() {
      if (validateConfig === undefined) return;
      try {
        validateConfig(new Config(host.entries()));
      } catch (e) {
        if (e instanceof InvalidConfig) throw e.message;
        throw e;
      }
    },
  };
}
