// The plugin's logic in plain JavaScript: `npm test` (node --test) tests it without WebAssembly.
//
// It keeps `sale.order` events whose `amount_total` is at least the subscription's
// `min_amount_total` (default 0) and delivers a small JSON summary of each, keyed by customer: on
// a subscription with `ordering`, one customer's summaries are delivered in order.
// `odoo-gateway.js` is the gateway's plugin SDK: events, configuration, deliveries, errors and
// Odoo's field conventions.

import { Delivery, debug } from './odoo-gateway.js';

/** Throws InvalidConfig (naming the key) when the configuration cannot work. */
export function validateConfig(config) {
  config.number('min_amount_total', 0);
}

/** The deliveries for `event`: none filters it out; throw Reject or Retry to refuse it. */
export function handle(event, config) {
  const minimum = config.number('min_amount_total', 0);
  if (event.model !== 'sale.order') return [];
  const order = event.record();
  const total = order.float('amount_total') ?? 0;
  if (total < minimum) {
    debug(`event ${event.id} filtered out`);
    return [];
  }
  const delivery = Delivery.json('', { amount_total: total, id: order.id(), name: order.str('name') });
  const customer = order.many2one('partner_id');
  if (customer !== undefined) delivery.withOrderingKey(`customer-${customer.id}`);
  return [delivery];
}
