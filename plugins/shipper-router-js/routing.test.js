// The logic without WebAssembly: `node --test` in this directory.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';

import { Config, Event, InvalidConfig, Reject } from '../../plugin-sdk-js/odoo-gateway.js';
import { handle, validateConfig } from './routing.js';

const RICH = readFileSync(new URL('../../tests/fixtures/odoo/rich/sale.order.confirmed.json', import.meta.url), 'utf8');
const SAMPLE = new Config([
  ['route.Ship: FastFreight', 'fastfreight'],
  ['route.6', 'parcelpost'],
  ['product.FURN_8888', 'fragile-goods'],
]);
const order = (payload) => Event.new('sale.order', 'confirmed', payload);

test('the rich order goes to two shippers', () => {
  const routed = handle(order(RICH), SAMPLE);
  assert.deepEqual(routed.map((d) => d.destination), ['fragile-goods', 'parcelpost']);
  const body = new TextDecoder().decode(routed[1].body);
  assert.match(body, /"product_uom_qty":5\.0/);
  assert.deepEqual(JSON.parse(body).order_line.map((line) => line.id), [32]);
});

test('unknown keys and unrouted lines are refused', () => {
  assert.throws(() => validateConfig(new Config([['routes.5', 'x']])), InvalidConfig);
  assert.throws(() => handle(order(RICH), new Config([['route.5', 'x']])), (e) => e instanceof Reject && /no shipper for line 32/.test(e.message));
});

test('ids only and other models', () => {
  assert.throws(() => handle(order({ order_line: [31, 32] }), SAMPLE), /holds only ids \[31, 32\]/);
  assert.deepEqual(handle(Event.new('res.partner', 'write', '{}'), SAMPLE), []);
});
