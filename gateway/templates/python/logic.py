"""The plugin's logic in plain Python: `python3 -m unittest` tests it without WebAssembly."""

import json


def summarise(model, payload, min_amount_total):
    """The JSON body to deliver for this event, or None to filter it out."""
    if model != "sale.order":
        return None
    order = json.loads(payload)
    total = order.get("amount_total") or 0
    if total < min_amount_total:
        return None
    summary = {"id": order.get("id"), "name": order.get("name"), "amount_total": total}
    return json.dumps(summary, separators=(",", ":"), sort_keys=True).encode()
