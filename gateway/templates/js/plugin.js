// The component's entry point: the logic exported as the plugin world's `handle` and
// `validateConfig` (see wit/plugin.wit), with the gateway's `config` and `log` imports.

import { entries } from 'odoo-gateway:plugin/config@0.1.0';
import { log } from 'odoo-gateway:plugin/log@0.1.0';
import { exportPlugin } from './odoo-gateway.js';
import { handle as logic, validateConfig as check } from './logic.js';

const plugin = exportPlugin(logic, check, { entries, log });

export function handle(event) {
  return plugin.handle(event);
}

export function validateConfig() {
  return plugin.validateConfig();
}
