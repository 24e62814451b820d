// shipper-router's logic in plain JavaScript: no WebAssembly here, so `node --test` tests it
// on any machine. `plugin.js` wires it to the gateway's plugin world.
//
// Behaviour, configuration and error messages are those of the Rust plugin
// (plugins/shipper-router/README.md); the golden tests compare both, byte for byte.
//
// JSON numbers are kept as written (`Num`), so an integer stays an integer and `2.0` stays
// `2.0`: JavaScript's own JSON.parse would turn both into the same number and print `2`.

export const MODEL = 'sale.order';
const LINES = 'order_line';

export class Reject extends Error {}
export class InvalidConfig extends Error {}

/** A JSON number as written. */
export class Num {
  constructor(text) {
    this.text = text;
  }
  /** The integer it stands for, or undefined when it is not an integer within i64. */
  int() {
    if (!/^-?(0|[1-9][0-9]*)$/.test(this.text)) return undefined;
    const n = BigInt(this.text);
    return n >= -(2n ** 63n) && n < 2n ** 63n ? n : undefined;
  }
}

/** Parses JSON text into plain values, objects as Maps (keys in order), numbers as Num. */
export function parse(text) {
  let at = 0;
  const fail = (what) => {
    throw new SyntaxError(`${what} at character ${at}`);
  };
  const space = () => {
    while (at < text.length && ' \t\n\r'.includes(text[at])) at++;
  };
  const literal = (word, value) => {
    if (text.startsWith(word, at)) {
      at += word.length;
      return value;
    }
    return fail('unexpected character');
  };
  const string = () => {
    const start = at;
    at++; // the opening quote
    while (at < text.length && text[at] !== '"') at += text[at] === '\\' ? 2 : 1;
    if (at >= text.length) fail('unterminated string');
    at++;
    return JSON.parse(text.slice(start, at));
  };
  const value = () => {
    space();
    const c = text[at];
    if (c === '{') {
      at++;
      const map = new Map();
      space();
      if (text[at] === '}') {
        at++;
        return map;
      }
      for (;;) {
        space();
        if (text[at] !== '"') fail('expected a key');
        const key = string();
        space();
        if (text[at++] !== ':') fail('expected `:`');
        map.set(key, value());
        space();
        if (text[at] === ',') at++;
        else if (text[at] === '}') {
          at++;
          return map;
        } else fail('expected `,` or `}`');
      }
    }
    if (c === '[') {
      at++;
      const list = [];
      space();
      if (text[at] === ']') {
        at++;
        return list;
      }
      for (;;) {
        list.push(value());
        space();
        if (text[at] === ',') at++;
        else if (text[at] === ']') {
          at++;
          return list;
        } else fail('expected `,` or `]`');
      }
    }
    if (c === '"') return string();
    if (c === 't') return literal('true', true);
    if (c === 'f') return literal('false', false);
    if (c === 'n') return literal('null', null);
    const number = /^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?/.exec(text.slice(at, at + 400));
    if (!number) fail('unexpected character');
    at += number[0].length;
    return new Num(number[0]);
  };
  const result = value();
  space();
  if (at !== text.length) fail('trailing characters');
  return result;
}

/** Compares strings by code point, as Rust and Python order them. */
function byCodePoint(a, b) {
  const x = [...a];
  const y = [...b];
  for (let i = 0; i < Math.min(x.length, y.length); i++) {
    const d = x[i].codePointAt(0) - y[i].codePointAt(0);
    if (d !== 0) return d;
  }
  return x.length - y.length;
}

/** Compact JSON with sorted keys: the bytes the Rust plugin writes. */
export function stringify(value) {
  if (value instanceof Num) return value.text;
  if (value instanceof Map) {
    const keys = [...value.keys()].sort(byCodePoint);
    return `{${keys.map((k) => `${JSON.stringify(k)}:${stringify(value.get(k))}`).join(',')}}`;
  }
  if (Array.isArray(value)) return `[${value.map(stringify).join(',')}]`;
  return JSON.stringify(value);
}

/** A string quoted the way the Rust plugin quotes it in messages (Rust's `{:?}`). */
function debugStr(value) {
  let out = '"';
  for (const ch of value) {
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

const invalid = (key, value, reason) =>
  new InvalidConfig(`config key \`${key}\`: invalid value ${debugStr(value)}: ${reason}`);

/** Removes the white space Rust's `trim` removes. */
const trim = (s) => s.replace(/^[\s\u0085]+|[\s\u0085]+$/gu, '');

/** A field's value, or undefined when absent or unset (Odoo's `false`, or null). */
function field(record, name) {
  const value = record.get(name);
  return value === false || value === null ? undefined : value;
}

const intOf = (value) => (value instanceof Num ? value.int() : undefined);

/** [id, name or undefined] from `[id, "name"]`, `[id]` or a bare id; undefined otherwise. */
function many2one(value) {
  if (intOf(value) !== undefined) return [intOf(value), undefined];
  if (!Array.isArray(value) || intOf(value[0]) === undefined) return undefined;
  if (value.length === 1) return [intOf(value[0]), undefined];
  if (value.length !== 2) return undefined;
  if (typeof value[1] === 'string') return [intOf(value[0]), value[1]];
  if (value[1] === false || value[1] === null) return [intOf(value[0]), undefined];
  return undefined;
}

function defaultCode(line, product) {
  const code = field(line, 'default_code');
  if (typeof code === 'string') return code;
  const name = product[1];
  if (name === undefined || !name.startsWith('[') || !name.includes(']')) return undefined;
  const found = name.slice(1).split(']', 1)[0];
  return found === '' ? undefined : found;
}

/** Destinations by product and by route, plus the fallback (see the README). */
export class Rules {
  constructor(entries) {
    this.products = new Map();
    this.routes = new Map();
    this.defaultDestination = undefined;
    for (const [key, value] of [...entries].sort((a, b) => byCodePoint(a[0], b[0]))) {
      const destination = trim(value);
      if (destination === '') throw invalid(key, value, 'the destination name is empty');
      let table;
      let name;
      if (key.startsWith('product.')) [table, name] = [this.products, key.slice(8)];
      else if (key.startsWith('route.')) [table, name] = [this.routes, key.slice(6)];
      else if (key === 'default_destination') {
        this.defaultDestination = destination;
        continue;
      } else {
        throw invalid(
          key,
          value,
          'unknown key: expected `product.<id or default_code>`, `route.<id or name>` or `default_destination`',
        );
      }
      if (trim(name) === '') throw invalid(key, value, 'the key names no product or route');
      table.set(trim(name), destination);
    }
    if (this.products.size === 0 && this.routes.size === 0 && this.defaultDestination === undefined) {
      throw new InvalidConfig(
        'config key `route.*`, `product.*` or `default_destination` is required but not set',
      );
    }
  }

  destinationFor(line) {
    const product = many2one(field(line, 'product_id'));
    if (product !== undefined) {
      let found = this.products.get(String(product[0]));
      if (found === undefined) {
        const code = defaultCode(line, product);
        if (code !== undefined) found = this.products.get(code);
      }
      if (found !== undefined) return found;
    }
    const route = many2one(field(line, 'route_id'));
    if (route !== undefined) {
      let found = this.routes.get(String(route[0]));
      if (found === undefined && route[1] !== undefined) found = this.routes.get(route[1]);
      if (found !== undefined) return found;
    }
    return this.defaultDestination;
  }
}

/** "line 31 ([FURN_8888] Office Lamp)", for error messages. */
function describe(line) {
  const id = intOf(field(line, 'id'));
  const product = many2one(field(line, 'product_id'));
  const name = field(line, 'name');
  let label = 'no product';
  if (product !== undefined && product[1] !== undefined) label = product[1];
  else if (typeof name === 'string') label = name;
  return `line ${id === undefined ? '?' : id} (${label})`;
}

/** [[destination, body text]], one per shipper in destination name order. */
export function route(order, rules) {
  if (!(order instanceof Map)) throw new Reject('payload is not a JSON object');
  const lines = field(order, LINES);
  if (!Array.isArray(lines)) throw new Reject(`the order has no \`${LINES}\` list of line records`);
  if (lines.every((item) => intOf(item) !== undefined)) {
    if (lines.length === 0) return [];
    throw new Reject(
      `\`${LINES}\` holds only ids [${lines.map(intOf).join(', ')}]: shipper-router needs the line records ` +
        'embedded in the payload (a richer Odoo payload or an enrichment step)',
    );
  }
  if (!lines.every((item) => item instanceof Map)) {
    throw new Reject(`the order has no \`${LINES}\` list of line records`);
  }
  const byDestination = new Map();
  const unmatched = [];
  for (const line of lines) {
    if (field(line, 'display_type') !== undefined) continue; // a section or note line
    const destination = rules.destinationFor(line);
    if (destination === undefined) unmatched.push(describe(line));
    else {
      if (!byDestination.has(destination)) byDestination.set(destination, []);
      byDestination.get(destination).push(line);
    }
  }
  if (unmatched.length > 0) {
    throw new Reject(
      `no shipper for ${unmatched.join(', ')}: add a \`product.*\` or \`route.*\` rule or set \`default_destination\``,
    );
  }
  return [...byDestination.keys()].sort(byCodePoint).map((destination) => {
    const part = new Map(order);
    part.set(LINES, byDestination.get(destination));
    return [destination, stringify(part)];
  });
}

/** The plugin's `handle`: [destination, body text] pairs, or Reject / InvalidConfig. */
export function handle(model, payload, entries) {
  const rules = new Rules(entries);
  if (model !== MODEL) return [];
  let order;
  try {
    order = parse(payload);
  } catch (error) {
    throw new Reject(`payload is not valid JSON: ${error.message}`);
  }
  return route(order, rules);
}
