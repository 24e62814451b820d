"""The logic without WebAssembly: `python3 -m unittest` in this directory."""

import json
import pathlib
import unittest

import routing

RICH = pathlib.Path(__file__).parent / "../../tests/fixtures/odoo/rich/sale.order.confirmed.json"
SAMPLE = [
    ("route.Ship: FastFreight", "fastfreight"),
    ("route.6", "parcelpost"),
    ("product.FURN_8888", "fragile-goods"),
]


class RoutingTest(unittest.TestCase):
    def test_the_rich_order_goes_to_two_shippers(self):
        routed = routing.handle("sale.order", RICH.read_text(), SAMPLE)
        self.assertEqual([d for d, _ in routed], ["fragile-goods", "parcelpost"])
        lines = json.loads(routed[1][1])["order_line"]
        self.assertEqual([line["id"] for line in lines], [32])

    def test_unknown_keys_and_unrouted_lines_are_refused(self):
        with self.assertRaisesRegex(routing.InvalidConfig, "unknown key"):
            routing.Rules([("routes.5", "x")])
        with self.assertRaisesRegex(routing.Reject, r"no shipper for line 32"):
            routing.handle("sale.order", RICH.read_text(), [("route.5", "x")])

    def test_floats_are_printed_as_the_rust_plugin_prints_them(self):
        self.assertEqual(routing.body([2.0, 1.5e-7, 1e16, 1e-5, 0.0]), b"[2.0,1.5e-7,1e16,0.00001,0.0]")


if __name__ == "__main__":
    unittest.main()
