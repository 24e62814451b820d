"""Tests of the Python plugin SDK, without WebAssembly: `python3 -m unittest` in this directory."""

import io
import json
import pathlib
import unittest
from contextlib import redirect_stderr

import odoo_gateway as og
from odoo_gateway import Config, Delivery, Event, Many2one, Record, X2many

RICH = (pathlib.Path(__file__).parent / "../tests/fixtures/odoo/rich/sale.order.confirmed.json").read_text()


class ConfigTest(unittest.TestCase):
    def test_readers_and_defaults(self):
        config = Config([("min", " 1000 "), ("states", "sale, ,sent"), ("route.B", "b"), ("route.A", "a")])
        self.assertEqual(config.number("min"), 1000.0)
        self.assertEqual(config.integer("min"), 1000)
        self.assertEqual(config.number("absent", 5.0), 5.0)
        self.assertEqual(config.list("states"), ["sale", "sent"])
        self.assertEqual(config.list("absent", "draft"), ["draft"])
        self.assertEqual(config.with_prefix("route."), [("A", "a"), ("B", "b")])
        self.assertEqual([k for k, _ in config.entries()], ["min", "route.A", "route.B", "states"])
        self.assertIsNone(config.get("absent"))
        self.assertIn("states", config)

    def test_errors_name_the_key_as_the_rust_sdk_does(self):
        config = Config({"min": "lots\n", "flag": "yes", "blank": "  "})
        with self.assertRaises(og.InvalidConfig) as caught:
            config.number("min")
        self.assertEqual(str(caught.exception), 'config key `min`: invalid value "lots\\n": invalid float literal')
        with self.assertRaisesRegex(og.ConfigError, "provided string was not `true` or `false`"):
            config.boolean("flag")
        with self.assertRaisesRegex(og.ConfigError, "^config key `blank` is required but not set$"):
            config.required("blank")
        self.assertEqual(Config({"on": "true"}).boolean("on"), True)


class EventAndRecordTest(unittest.TestCase):
    def test_the_payload_parses_once_or_rejects(self):
        event = Event.new("sale.order", "confirmed", RICH)
        self.assertEqual(event.event_type, "sale.order.confirmed")
        self.assertIs(event.payload_json(), event.payload_json())
        with self.assertRaisesRegex(og.Reject, "^payload is not valid JSON"):
            Event.new("sale.order", "confirmed", "{nope").payload_json()
        with self.assertRaisesRegex(og.Reject, "^payload is not a JSON object$"):
            Event.new("sale.order", "confirmed", "[1]").record()

    def test_odoo_conventions(self):
        order = Event.new("sale.order", "confirmed", RICH).record()
        self.assertEqual(order.id(), 12)
        self.assertEqual(order.many2one("partner_id"), Many2one(9, "Deco Addict"))
        self.assertEqual(order.many2one("partner_id").name, "Deco Addict")
        self.assertIsNone(order.get("commitment_date"))  # `false` is "no value"
        self.assertFalse(order.bool("locked"))
        self.assertEqual(order.float("amount_total"), 1184.5)
        lines = order.x2many("order_line")
        self.assertEqual(lines.ids(), [31, 32, 33])
        self.assertEqual(lines.records[0].many2one("route_id"), Many2one(5, "Ship: FastFreight"))

    def test_many2one_and_x2many_shapes(self):
        self.assertEqual(Many2one.of(7), Many2one(7, None))
        self.assertEqual(Many2one.of([7]), Many2one(7, None))
        self.assertEqual(Many2one.of([7, False]), Many2one(7, None))
        for odd in (False, None, [], ["7", "x"], [7, 8], [7, "x", 1], True, 7.0, 2**63):
            self.assertIsNone(Many2one.of(odd), odd)
        self.assertEqual(X2many.of([]).ids(), [])
        self.assertIsNone(X2many.of([1, {"id": 2}]))
        self.assertEqual(len(X2many.of([{"id": 1}, {"name": "x"}])), 2)
        self.assertEqual(X2many.of([{"id": 1}, {"name": "x"}]).ids(), [1])
        self.assertIsNone(Record({"n": True}).int("n"))
        self.assertIsNone(Record({"n": "1"}).float("n"))


class JsonTest(unittest.TestCase):
    def test_bodies_are_compact_with_sorted_keys(self):
        value = {"b": [1, 2.0, None, True], "a": "Déco – \"München\"", "é": {"z": 1, "Z": 2}}
        self.assertEqual(og.to_json(value), '{"a":"Déco – \\"München\\"","b":[1,2.0,null,true],"é":{"Z":2,"z":1}}')

    def test_floats_are_written_as_the_rust_sdk_writes_them(self):
        self.assertEqual(og.to_json([2.0, 1.5e-7, 1e16, 1e-5, 0.0, -0.0, 1184.5, 1e15, 1.5e300]),
                         "[2.0,1.5e-7,1e16,0.00001,0.0,-0.0,1184.5,1000000000000000.0,1.5e300]")
        # A string that looks like an exponent takes the exact writer, with the same result.
        self.assertEqual(og.to_json({"note": "1e-05", "x": 0.5}), '{"note":"1e-05","x":0.5}')

    def test_keys_sort_by_code_point_as_bytes_do(self):
        self.assertEqual(og.to_json({"\U0001F600": 1, "\uFF5A": 2, "z": 3}), '{"z":3,"ｚ":2,"😀":1}')

    def test_the_rich_order_round_trips(self):
        order = json.loads(RICH)
        self.assertEqual(json.loads(og.to_json(order)), order)


class DeliveryAndLogTest(unittest.TestCase):
    def test_deliveries(self):
        delivery = Delivery.json("erp", {"id": 1}).with_header("x-shop", "eu")
        self.assertEqual(delivery, Delivery("erp", "application/json", b'{"id":1}', [("x-shop", "eu")]))
        self.assertEqual(Delivery.xml("", "<a/>").body, b"<a/>")

    def test_a_delivery_may_name_its_ordering_key(self):
        keyed = Delivery.json("erp", {}).with_ordering_key(42)
        self.assertEqual(keyed.ordering_key, "42")
        self.assertIsNone(Delivery.json("erp", {}).ordering_key, "the event's key by default")
        self.assertNotEqual(keyed, Delivery.json("erp", {}), "the key is part of the delivery")
        self.assertIn("ordering_key='42'", repr(keyed))
        self.assertIsNone(keyed.with_ordering_key(None).ordering_key, "None: the event's key")

    def test_the_log_goes_to_stderr_outside_the_gateway(self):
        err = io.StringIO()
        with redirect_stderr(err):
            og.warn("careful")
        self.assertEqual(err.getvalue(), "[warn] careful\n")


if __name__ == "__main__":
    unittest.main()
