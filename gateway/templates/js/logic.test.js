import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';

import { summarise } from './logic.js';

test('an order above the minimum is summarised', () => {
  const payload = JSON.stringify(JSON.parse(readFileSync('sample-event.json', 'utf8')).payload);
  assert.equal(summarise('sale.order', payload, 100), '{"amount_total":1184.5,"id":12,"name":"S00012"}');
});

test('other models and small orders are filtered out', () => {
  assert.equal(summarise('res.partner', '{}', 0), undefined);
  assert.equal(summarise('sale.order', '{"amount_total": 5}', 100), undefined);
});
