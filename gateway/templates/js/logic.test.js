import assert from 'node:assert/strict';
import { test } from 'node:test';

import { handle, validateConfig } from './logic.js';
import { Config, Event, InvalidConfig } from './odoo-gateway.js';

const ORDER = { id: 12, name: 'S00012', amount_total: 1184.5, partner_id: [9, 'Deco Addict'] };
const text = (delivery) => new TextDecoder().decode(delivery.body);

test('an order above the minimum is summarised', () => {
  const deliveries = handle(Event.new('sale.order', 'confirmed', ORDER), new Config({ min_amount_total: '100' }));
  assert.equal(text(deliveries[0]), '{"amount_total":1184.5,"id":12,"name":"S00012"}');
  assert.equal(deliveries[0].orderingKey, 'customer-9', "one customer's in order");
});

test('other models and small orders are filtered out', () => {
  assert.deepEqual(handle(Event.new('res.partner', 'write', {}), new Config()), []);
  assert.deepEqual(handle(Event.new('sale.order', 'confirmed', { amount_total: 5 }), new Config({ min_amount_total: '100' })), []);
});

test('a bad minimum is refused', () => {
  assert.throws(() => validateConfig(new Config({ min_amount_total: 'lots' })), InvalidConfig);
});
