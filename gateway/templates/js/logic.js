// The plugin's logic in plain JavaScript: `node --test` tests it without WebAssembly.

/** The JSON body to deliver for this event, or undefined to filter it out. */
export function summarise(model, payload, minAmountTotal) {
  if (model !== 'sale.order') return undefined;
  const order = JSON.parse(payload);
  const total = order.amount_total || 0;
  if (total < minAmountTotal) return undefined;
  return JSON.stringify({ amount_total: total, id: order.id, name: order.name });
}
