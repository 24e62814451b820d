"""The plugin's logic in plain Python: `python3 -m unittest` tests it without WebAssembly.

It keeps `sale.order` events whose `amount_total` is at least the subscription's
`min_amount_total` (default 0) and delivers a small JSON summary of each, keyed by customer: on a
subscription with `ordering`, one customer's summaries are delivered in order. `odoo_gateway` is
the gateway's plugin SDK: events, configuration, deliveries, errors and Odoo's field conventions.
"""

from odoo_gateway import Delivery, debug


def validate_config(config):
    """Raises InvalidConfig (naming the key) when the configuration cannot work."""
    config.number("min_amount_total", 0.0)


def handle(event, config):
    """The deliveries for `event`: none filters it out; raise Reject or Retry to refuse it."""
    minimum = config.number("min_amount_total", 0.0)
    if event.model != "sale.order":
        return []
    order = event.record()
    total = order.float("amount_total") or 0.0
    if total < minimum:
        debug(f"event {event.id} filtered out")
        return []
    summary = {"amount_total": total, "id": order.id(), "name": order.str("name")}
    delivery = Delivery.json("", summary)
    customer = order.many2one("partner_id")
    if customer is not None:
        delivery.with_ordering_key(f"customer-{customer.id}")
    return [delivery]
