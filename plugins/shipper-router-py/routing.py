"""shipper-router's logic in plain Python: no WebAssembly here, so `python3 -m unittest`
tests it on any machine. `app.py` wires it to the gateway's plugin world.

Behaviour, configuration and error messages are those of the Rust plugin
(plugins/shipper-router/README.md); the golden tests compare both, byte for byte.
"""

import decimal
import json

MODEL = "sale.order"
LINES = "order_line"


class Reject(Exception):
    """The event is wrong for this subscription: dead-lettered with this reason."""


class InvalidConfig(Exception):
    """The subscription's configuration cannot work."""


def debug_str(value):
    """A string quoted the way the Rust plugin quotes it in messages (Rust's `{:?}`)."""
    out = ['"']
    for ch in value:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\0":
            out.append("\\0")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append("\\u{%x}" % ord(ch))
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def invalid(key, value, reason):
    return InvalidConfig(f"config key `{key}`: invalid value {debug_str(value)}: {reason}")


class Rules:
    """Destinations by product and by route, plus the fallback (see the README)."""

    def __init__(self, entries):
        self.products = {}
        self.routes = {}
        self.default_destination = None
        for key, value in sorted(entries, key=lambda kv: kv[0].encode()):
            destination = value.strip()
            if not destination:
                raise invalid(key, value, "the destination name is empty")
            if key.startswith("product."):
                table, name = self.products, key[len("product."):]
            elif key.startswith("route."):
                table, name = self.routes, key[len("route."):]
            elif key == "default_destination":
                self.default_destination = destination
                continue
            else:
                raise invalid(
                    key,
                    value,
                    "unknown key: expected `product.<id or default_code>`, "
                    "`route.<id or name>` or `default_destination`",
                )
            if not name.strip():
                raise invalid(key, value, "the key names no product or route")
            table[name.strip()] = destination
        if not self.products and not self.routes and self.default_destination is None:
            raise InvalidConfig(
                "config key `route.*`, `product.*` or `default_destination` is required but not set"
            )

    def destination_for(self, line):
        product = many2one(field(line, "product_id"))
        if product is not None:
            found = self.products.get(str(product[0]))
            if found is None:
                code = default_code(line, product)
                if code is not None:
                    found = self.products.get(code)
            if found is not None:
                return found
        route = many2one(field(line, "route_id"))
        if route is not None:
            found = self.routes.get(str(route[0]))
            if found is None and route[1] is not None:
                found = self.routes.get(route[1])
            if found is not None:
                return found
        return self.default_destination


def is_int(value):
    return type(value) is int and -(2**63) <= value < 2**63


def field(record, name):
    """A field's value, or None when absent or unset (Odoo's `false`, or null)."""
    value = record.get(name)
    return None if value is False or value is None else value


def many2one(value):
    """(id, name or None) from `[id, "name"]`, `[id]` or a bare id; None otherwise."""
    if is_int(value):
        return (value, None)
    if isinstance(value, list) and len(value) == 1 and is_int(value[0]):
        return (value[0], None)
    if isinstance(value, list) and len(value) == 2 and is_int(value[0]):
        name = value[1]
        if isinstance(name, str):
            return (value[0], name)
        if name is False or name is None:
            return (value[0], None)
    return None


def default_code(line, product):
    code = field(line, "default_code")
    if isinstance(code, str):
        return code
    name = product[1]
    if name is None or not name.startswith("[") or "]" not in name:
        return None
    code = name[1:].split("]", 1)[0]
    return code or None


def describe(line):
    """"line 31 ([FURN_8888] Office Lamp)", for error messages."""
    line_id = field(line, "id")
    line_id = str(line_id) if is_int(line_id) else "?"
    product = many2one(field(line, "product_id"))
    name = field(line, "name")
    if product is not None and product[1] is not None:
        label = product[1]
    elif isinstance(name, str):
        label = name
    else:
        label = "no product"
    return f"line {line_id} ({label})"


def float_text(value):
    """A float as the Rust plugin prints it (shortest digits, serde_json's layout): Python's
    repr has the same digits but writes exponents as `e-07` and switches to them earlier."""
    sign, digit_tuple, exponent = decimal.Decimal(repr(value)).as_tuple()
    digits = "".join(map(str, digit_tuple))
    stripped = digits.rstrip("0")
    exponent += len(digits) - len(stripped)
    digits = stripped or "0"
    if digits == "0":
        exponent = 0
    point = len(digits) + exponent  # 10^(point-1) <= |value| < 10^point
    if 0 <= exponent and point <= 16:
        text = digits + "0" * exponent + ".0"
    elif 0 < point <= 16:
        text = digits[:point] + "." + digits[point:]
    elif -5 < point <= 0:
        text = "0." + "0" * -point + digits
    else:
        text = digits[0] + ("." + digits[1:] if len(digits) > 1 else "") + f"e{point - 1}"
    return ("-" if sign else "") + text


def write(value, out):
    """Compact JSON with sorted keys, as serde_json writes it."""
    if isinstance(value, dict):
        out.append("{")
        for i, key in enumerate(sorted(value, key=str.encode)):
            out.append("," if i else "")
            out.append(json.dumps(key, ensure_ascii=False))
            out.append(":")
            write(value[key], out)
        out.append("}")
    elif isinstance(value, list):
        out.append("[")
        for i, item in enumerate(value):
            out.append("," if i else "")
            write(item, out)
        out.append("]")
    elif isinstance(value, float):
        out.append(float_text(value))
    else:  # str, int, bool, None
        out.append(json.dumps(value, ensure_ascii=False))


def body(value):
    """The bytes the Rust plugin writes for `value`."""
    out = []
    write(value, out)
    return "".join(out).encode()


def route(order, rules):
    """[(destination, body)], one per shipper in destination name order."""
    if not isinstance(order, dict):
        raise Reject("payload is not a JSON object")
    lines = field(order, LINES)
    if not isinstance(lines, list):
        raise Reject(f"the order has no `{LINES}` list of line records")
    if all(is_int(item) for item in lines):
        if not lines:
            return []
        raise Reject(
            f"`{LINES}` holds only ids {lines}: shipper-router needs the line records "
            "embedded in the payload (a richer Odoo payload or an enrichment step)"
        )
    if not all(isinstance(item, dict) for item in lines):
        raise Reject(f"the order has no `{LINES}` list of line records")
    by_destination = {}
    unmatched = []
    for line in lines:
        if field(line, "display_type") is not None:
            continue  # a section or note line: nothing to ship
        destination = rules.destination_for(line)
        if destination is None:
            unmatched.append(describe(line))
        else:
            by_destination.setdefault(destination, []).append(line)
    if unmatched:
        raise Reject(
            f"no shipper for {', '.join(unmatched)}: add a `product.*` or `route.*` rule "
            "or set `default_destination`"
        )
    out = []
    for destination in sorted(by_destination, key=str.encode):
        part = dict(order)
        part[LINES] = by_destination[destination]
        out.append((destination, body(part)))
    return out


def handle(model, payload, entries):
    """The plugin's `handle`: (destination, body) pairs, or Reject / InvalidConfig."""
    rules = Rules(entries)
    if model != MODEL:
        return []
    try:
        order = json.loads(payload)
    except ValueError as error:
        raise Reject(f"payload is not valid JSON: {error}") from None
    return route(order, rules)
