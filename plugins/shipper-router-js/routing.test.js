// The logic without WebAssembly: `node --test` in this directory.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';

import { handle, InvalidConfig, parse, Reject, Rules, stringify } from './routing.js';

const RICH = readFileSync(new URL('../../tests/fixtures/odoo/rich/sale.order.confirmed.json', import.meta.url), 'utf8');
const SAMPLE = [
  ['route.Ship: FastFreight', 'fastfreight'],
  ['route.6', 'parcelpost'],
  ['product.FURN_8888', 'fragile-goods'],
];

test('the rich order goes to two shippers', () => {
  const routed = handle('sale.order', RICH, SAMPLE);
  assert.deepEqual(routed.map(([d]) => d), ['fragile-goods', 'parcelpost']);
  assert.match(routed[1][1], /"product_uom_qty":5\.0/);
});

test('unknown keys and unrouted lines are refused', () => {
  assert.throws(() => new Rules([['routes.5', 'x']]), InvalidConfig);
  assert.throws(() => handle('sale.order', RICH, [['route.5', 'x']]), (e) => e instanceof Reject && /no shipper for line 32/.test(e.message));
});

test('numbers are kept as written', () => {
  assert.equal(stringify(parse('{"b": [2.0, 10, -1.5e-7], "a": "\\u00e9"}')), '{"a":"é","b":[2.0,10,-1.5e-7]}');
});
