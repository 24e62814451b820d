// The component's entry point: the plugin world's exports, on top of `routing.js`.
// A thrown value becomes the `err` of the export's result.

import { entries } from 'odoo-gateway:plugin/config@0.1.0';
import { log } from 'odoo-gateway:plugin/log@0.1.0';
import { handle as route, InvalidConfig, Reject, Rules } from './routing.js';

const encoder = new TextEncoder();

export function handle(event) {
  let routed;
  try {
    routed = route(event.model, event.payload, entries());
  } catch (error) {
    if (error instanceof InvalidConfig) throw { tag: 'invalid-config', val: error.message };
    if (error instanceof Reject) throw { tag: 'reject', val: error.message };
    throw error;
  }
  if (routed.length === 0) log('debug', `event ${event.id}: nothing to route`);
  return routed.map(([destination, body]) => ({
    destination,
    contentType: 'application/json',
    body: encoder.encode(body),
    headers: [],
  }));
}

export function validateConfig() {
  try {
    new Rules(entries());
  } catch (error) {
    if (error instanceof InvalidConfig) throw error.message;
    throw error;
  }
}
