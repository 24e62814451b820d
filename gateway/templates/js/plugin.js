// The component's entry point: the plugin world's exports (see wit/plugin.wit).
// A thrown value becomes the `err` of the export's result.

import { get } from 'odoo-gateway:plugin/config@0.1.0';
import { log } from 'odoo-gateway:plugin/log@0.1.0';
import { summarise } from './logic.js';

function minAmountTotal() {
  const value = get('min_amount_total') ?? '0';
  const number = Number(value);
  if (value.trim() === '' || Number.isNaN(number)) {
    throw `config key \`min_amount_total\`: ${JSON.stringify(value)} is not a number`;
  }
  return number;
}

export function handle(event) {
  let minimum;
  try {
    minimum = minAmountTotal();
  } catch (message) {
    throw { tag: 'invalid-config', val: message };
  }
  const body = summarise(event.model, event.payload, minimum);
  if (body === undefined) {
    log('debug', `event ${event.id} filtered out`);
    return [];
  }
  return [{ destination: '', contentType: 'application/json', body: new TextEncoder().encode(body), headers: [] }];
}

export function validateConfig() {
  minAmountTotal();
}
