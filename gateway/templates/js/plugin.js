// The component's entry point: the logic exported as the plugin world's `handle` and
// `validateConfig` (see wit/plugin.wit), with the gateway's `config` and `log` imports.
//
// `warmUp` runs `handle` on a sample event while componentize-js builds the component, so that
// every call starts from an engine that has already compiled that code (the snapshot keeps it;
// each call still starts from the same snapshot, whatever came before).

import { entries } from 'odoo-gateway:plugin/config@0.2.0';
import { log } from 'odoo-gateway:plugin/log@0.2.0';
import { Config, Event, exportPlugin } from './odoo-gateway.js';
import { handle as logic, validateConfig as check } from './logic.js';

const WARM_UP = [[Event.new('sale.order', 'confirmed', { id: 1, name: 'S1', amount_total: 10.0 }), new Config({ min_amount_total: '1' })]];

const plugin = exportPlugin(logic, check, { entries, log }, { warmUp: WARM_UP });

export function handle(event) {
  return plugin.handle(event);
}

export function validateConfig() {
  return plugin.validateConfig();
}
