"""The component's entry point: the logic exported as the plugin world's `handle` and
`validate-config` (see wit/plugin.wit)."""

import odoo_gateway

import logic

WitWorld = odoo_gateway.export(logic.handle, logic.validate_config)
