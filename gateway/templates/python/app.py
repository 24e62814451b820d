"""The component's entry point: the logic exported as the plugin world's `handle` and
`validate-config` (see wit/plugin.wit).

`warm_up` runs `handle` on a sample event while componentize-py builds the component, so that
every call starts from an interpreter that has already run that code once (the snapshot keeps
it; each call still starts from the same snapshot, whatever came before)."""

import odoo_gateway
from odoo_gateway import Config, Event

import logic

WARM_UP = [
    (
        Event.new("sale.order", "confirmed", {"id": 1, "name": "S1", "amount_total": 10.0}),
        Config({"min_amount_total": "1"}),
    )
]

WitWorld = odoo_gateway.export(logic.handle, logic.validate_config, warm_up=WARM_UP)
