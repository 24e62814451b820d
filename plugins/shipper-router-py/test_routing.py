"""The logic without WebAssembly: `python3 -m unittest` in this directory."""

import json
import pathlib
import sys
import unittest

HERE = pathlib.Path(__file__).parent
sys.path.insert(0, str(HERE / "../../plugin-sdk-py"))

from odoo_gateway import Config, Event, InvalidConfig, Reject  # noqa: E402

import routing  # noqa: E402

RICH = (HERE / "../../tests/fixtures/odoo/rich/sale.order.confirmed.json").read_text()
SAMPLE = Config([
    ("route.Ship: FastFreight", "fastfreight"),
    ("route.6", "parcelpost"),
    ("product.FURN_8888", "fragile-goods"),
])


class RoutingTest(unittest.TestCase):
    def test_the_rich_order_goes_to_two_shippers(self):
        routed = routing.handle(Event.new("sale.order", "confirmed", RICH), SAMPLE)
        self.assertEqual([d.destination for d in routed], ["fragile-goods", "parcelpost"])
        lines = json.loads(routed[1].body)["order_line"]
        self.assertEqual([line["id"] for line in lines], [32])
        self.assertIn(b'"product_uom_qty":5.0', routed[1].body)

    def test_unknown_keys_and_unrouted_lines_are_refused(self):
        with self.assertRaisesRegex(InvalidConfig, "unknown key"):
            routing.validate_config(Config([("routes.5", "x")]))
        with self.assertRaisesRegex(Reject, r"no shipper for line 32"):
            routing.handle(Event.new("sale.order", "confirmed", RICH), Config([("route.5", "x")]))

    def test_ids_only_and_other_models(self):
        with self.assertRaisesRegex(Reject, r"holds only ids \[31, 32\]"):
            routing.handle(Event.new("sale.order", "confirmed", {"order_line": [31, 32]}), SAMPLE)
        self.assertEqual(routing.handle(Event.new("res.partner", "write", "{}"), SAMPLE), [])


if __name__ == "__main__":
    unittest.main()
