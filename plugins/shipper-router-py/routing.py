"""shipper-router's logic in plain Python: no WebAssembly here, so `python3 -m unittest` tests it
on any machine. `app.py` exports it as the component's `handle` and `validate-config`.

Behaviour, configuration and error messages are those of the Rust plugin
(plugins/shipper-router/README.md); the golden tests compare both, byte for byte. Odoo's field
conventions, the configuration errors and the JSON bodies come from the Python plugin SDK
(`plugin-sdk-py/odoo_gateway.py`), which writes bodies as the Rust SDK does.
"""

from odoo_gateway import ConfigError, Delivery, InvalidConfig, Many2one, Reject, X2many

MODEL = "sale.order"
LINES = "order_line"


class Rules:
    """Destinations by product and by route, plus the fallback (see the README)."""

    def __init__(self, config):
        self.products = {}
        self.routes = {}
        self.default_destination = None
        for key, value in config.entries():
            destination = value.strip()
            if not destination:
                raise ConfigError.invalid(key, value, "the destination name is empty")
            if key.startswith("product."):
                table, name = self.products, key[len("product."):]
            elif key.startswith("route."):
                table, name = self.routes, key[len("route."):]
            elif key == "default_destination":
                self.default_destination = destination
                continue
            else:
                raise ConfigError.invalid(
                    key,
                    value,
                    "unknown key: expected `product.<id or default_code>`, "
                    "`route.<id or name>` or `default_destination`",
                )
            if not name.strip():
                raise ConfigError.invalid(key, value, "the key names no product or route")
            table[name.strip()] = destination
        if not self.products and not self.routes and self.default_destination is None:
            raise InvalidConfig(
                "config key `route.*`, `product.*` or `default_destination` is required but not set"
            )

    def destination_for(self, line):
        product = line.many2one("product_id")
        if product is not None:
            found = self.products.get(str(product.id))
            if found is None:
                code = default_code(line, product)
                if code is not None:
                    found = self.products.get(code)
            if found is not None:
                return found
        route = line.many2one("route_id")
        if route is not None:
            found = self.routes.get(str(route.id))
            if found is None and route.name is not None:
                found = self.routes.get(route.name)
            if found is not None:
                return found
        return self.default_destination


def default_code(line, product):
    code = line.str("default_code")
    if code is not None:
        return code
    name = product.name
    if name is None or not name.startswith("[") or "]" not in name:
        return None
    return name[1:].split("]", 1)[0] or None


def describe(line):
    """"line 31 ([FURN_8888] Office Lamp)", for error messages."""
    line_id = line.id()
    product = line.many2one("product_id")
    name = line.str("name")
    if product is not None and product.name is not None:
        label = product.name
    elif name is not None:
        label = name
    else:
        label = "no product"
    return f"line {'?' if line_id is None else line_id} ({label})"


def route(order, rules):
    """[Delivery], one per shipper in destination name order."""
    lines = X2many.of(order.get(LINES))
    if lines is None:
        raise Reject(f"the order has no `{LINES}` list of line records")
    if lines.records is None:
        if not len(lines):
            return []
        raise Reject(
            f"`{LINES}` holds only ids {lines.ids()}: shipper-router needs the line records "
            "embedded in the payload (a richer Odoo payload or an enrichment step)"
        )
    by_destination = {}
    unmatched = []
    for line in lines.records:
        if line.get("display_type") is not None:
            continue  # a section or note line: nothing to ship
        destination = rules.destination_for(line)
        if destination is None:
            unmatched.append(describe(line))
        else:
            by_destination.setdefault(destination, []).append(line.fields)
    if unmatched:
        raise Reject(
            f"no shipper for {', '.join(unmatched)}: add a `product.*` or `route.*` rule "
            "or set `default_destination`"
        )
    out = []
    for destination in sorted(by_destination, key=str.encode):
        part = dict(order.fields)
        part[LINES] = by_destination[destination]
        out.append(Delivery.json(destination, part))
    return out


def handle(event, config):
    """The plugin's `handle`: the deliveries, or Reject / InvalidConfig."""
    rules = Rules(config)
    if event.model != MODEL:
        return []
    return route(event.record(), rules)


def validate_config(config):
    Rules(config)
