"""The component's entry point: the plugin world's exports, on top of `routing`.

The warm-up runs `handle` once on a small order while componentize-py builds the component, so
every call starts from an interpreter whose code paths have already run once (CPython's
specialised bytecode is in the snapshot)."""

import odoo_gateway
from odoo_gateway import Config, Event

import routing

ORDER = (
    '{"id": 1, "name": "S1", "amount_total": 10.0, "partner_id": [1, "A"], "order_line": ['
    '{"id": 1, "display_type": false, "product_id": [1, "[P1] One"], "product_uom_qty": 1.0, '
    '"route_id": [1, "Ship: A"]}, {"id": 2, "display_type": "line_note", "name": "note"}, '
    '{"id": 3, "display_type": false, "product_id": [2, "Two"], "route_id": [2, "Ship: B"]}]}'
)
WARM_UP = [
    (
        Event.new("sale.order", "confirmed", ORDER),
        Config([("route.Ship: A", "a"), ("route.2", "b"), ("product.P1", "c")]),
    )
]

WitWorld = odoo_gateway.export(routing.handle, routing.validate_config, warm_up=WARM_UP)
