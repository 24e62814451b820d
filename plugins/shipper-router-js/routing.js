// shipper-router's logic in plain JavaScript: no WebAssembly here, so `node --test` tests it
// on any machine. `plugin.js` exports it as the component's `handle` and `validateConfig`.
//
// Behaviour, configuration and error messages are those of the Rust plugin
// (plugins/shipper-router/README.md); the golden tests compare both, byte for byte. Odoo's field
// conventions, the configuration errors and the JSON bodies come from the JavaScript plugin SDK
// (`plugin-sdk-js/odoo-gateway.js`); the payload is read with `exactNumbers`, so that `2.0`
// stays `2.0` in the bodies, as the Rust plugin writes it.

import { ConfigError, Delivery, InvalidConfig, RawJson, Reject, X2many, byCodePoint, toJson } from '../../plugin-sdk-js/odoo-gateway.js';

export const MODEL = 'sale.order';
const LINES = 'order_line';

/** Removes the white space Rust's `trim` removes. */
const trim = (s) => s.replace(/^[\s\u0085]+|[\s\u0085]+$/gu, '');

function defaultCode(line, product) {
  const code = line.str('default_code');
  if (code !== undefined) return code;
  const name = product.name;
  if (name === undefined || !name.startsWith('[') || !name.includes(']')) return undefined;
  const found = name.slice(1).split(']', 1)[0];
  return found === '' ? undefined : found;
}

/** Destinations by product and by route, plus the fallback (see the README). */
export class Rules {
  constructor(config) {
    this.products = new Map();
    this.routes = new Map();
    this.defaultDestination = undefined;
    for (const [key, value] of config.entries()) {
      const destination = trim(value);
      if (destination === '') throw ConfigError.invalid(key, value, 'the destination name is empty');
      let table;
      let name;
      if (key.startsWith('product.')) [table, name] = [this.products, key.slice(8)];
      else if (key.startsWith('route.')) [table, name] = [this.routes, key.slice(6)];
      else if (key === 'default_destination') {
        this.defaultDestination = destination;
        continue;
      } else {
        throw ConfigError.invalid(
          key,
          value,
          'unknown key: expected `product.<id or default_code>`, `route.<id or name>` or `default_destination`',
        );
      }
      if (trim(name) === '') throw ConfigError.invalid(key, value, 'the key names no product or route');
      table.set(trim(name), destination);
    }
    if (this.products.size === 0 && this.routes.size === 0 && this.defaultDestination === undefined) {
      throw new InvalidConfig('config key `route.*`, `product.*` or `default_destination` is required but not set');
    }
  }

  destinationFor(line) {
    const product = line.many2one('product_id');
    if (product !== undefined) {
      let found = this.products.get(String(product.id));
      if (found === undefined) {
        const code = defaultCode(line, product);
        if (code !== undefined) found = this.products.get(code);
      }
      if (found !== undefined) return found;
    }
    const route = line.many2one('route_id');
    if (route !== undefined) {
      let found = this.routes.get(String(route.id));
      if (found === undefined && route.name !== undefined) found = this.routes.get(route.name);
      if (found !== undefined) return found;
    }
    return this.defaultDestination;
  }
}

/** "line 31 ([FURN_8888] Office Lamp)", for error messages. */
function describe(line) {
  const id = line.id();
  const product = line.many2one('product_id');
  const name = line.str('name');
  let label = 'no product';
  if (product !== undefined && product.name !== undefined) label = product.name;
  else if (name !== undefined) label = name;
  return `line ${id === undefined ? '?' : id} (${label})`;
}

/** [Delivery], one per shipper in destination name order. */
export function route(order, rules) {
  const lines = X2many.of(order.get(LINES));
  if (lines === undefined) throw new Reject(`the order has no \`${LINES}\` list of line records`);
  if (lines.records === undefined) {
    if (lines.length === 0) return [];
    throw new Reject(
      `\`${LINES}\` holds only ids [${lines.ids().join(', ')}]: shipper-router needs the line records ` +
        'embedded in the payload (a richer Odoo payload or an enrichment step)',
    );
  }
  const byDestination = new Map();
  const unmatched = [];
  for (const line of lines.records) {
    if (line.get('display_type') !== undefined) continue; // a section or note line
    const destination = rules.destinationFor(line);
    if (destination === undefined) unmatched.push(describe(line));
    else {
      if (!byDestination.has(destination)) byDestination.set(destination, []);
      byDestination.get(destination).push(line.fields);
    }
  }
  if (unmatched.length > 0) {
    throw new Reject(
      `no shipper for ${unmatched.join(', ')}: add a \`product.*\` or \`route.*\` rule or set \`default_destination\``,
    );
  }
  // Every line goes to one shipper, and the order's other fields to all: each is written once,
  // and each body is put together from those texts.
  const others = Object.fromEntries(
    Object.keys(order.fields)
      .filter((key) => key !== LINES)
      .map((key) => [key, new RawJson(toJson(order.fields[key]))]),
  );
  return [...byDestination.keys()].sort(byCodePoint).map((destination) => {
    const lines = new RawJson(`[${byDestination.get(destination).map(toJson).join(',')}]`);
    return Delivery.json(destination, { ...others, [LINES]: lines });
  });
}

/** The plugin's `handle`: the deliveries, or Reject / InvalidConfig. */
export function handle(event, config) {
  const rules = new Rules(config);
  if (event.model !== MODEL) return [];
  return route(event.record({ exactNumbers: true }), rules);
}

export function validateConfig(config) {
  new Rules(config);
}
