// The component's entry point: the plugin world's exports, on top of `routing.js`.
//
// The warm-up runs `handle` once on a small order while componentize-js builds the component,
// so that every call starts from an engine that has already compiled the functions it runs
// (SpiderMonkey compiles a function to bytecode at its first call; the snapshot keeps it).

import { entries } from 'odoo-gateway:plugin/config@0.2.0';
import { log } from 'odoo-gateway:plugin/log@0.2.0';
import { Config, Event, exportPlugin } from '../../plugin-sdk-js/odoo-gateway.js';
import { handle as route, validateConfig as check } from './routing.js';

const ORDER =
  '{"id": 1, "name": "S1", "amount_total": 10.0, "partner_id": [1, "A"], "order_line": [' +
  '{"id": 1, "display_type": false, "product_id": [1, "[P1] One"], "product_uom_qty": 1.0, ' +
  '"route_id": [1, "Ship: A"]}, {"id": 2, "display_type": "line_note", "name": "note"}, ' +
  '{"id": 3, "display_type": false, "product_id": [2, "Two"], "route_id": [2, "Ship: B"]}]}';
const WARM_UP = [
  [
    Event.new('sale.order', 'confirmed', ORDER),
    new Config([
      ['route.Ship: A', 'a'],
      ['route.2', 'b'],
      ['product.P1', 'c'],
    ]),
  ],
];

const plugin = exportPlugin(route, check, { entries, log }, { warmUp: WARM_UP });

export function handle(event) {
  return plugin.handle(event);
}

export function validateConfig() {
  return plugin.validateConfig();
}
