import unittest

from odoo_gateway import Config, Event, InvalidConfig

import logic

ORDER = {"id": 12, "name": "S00012", "amount_total": 1184.5, "partner_id": [9, "Deco Addict"]}


class HandleTest(unittest.TestCase):
    def test_an_order_above_the_minimum_is_summarised(self):
        event = Event.new("sale.order", "confirmed", ORDER)
        deliveries = logic.handle(event, Config({"min_amount_total": "100"}))
        self.assertEqual(deliveries[0].body, b'{"amount_total":1184.5,"id":12,"name":"S00012"}')
        self.assertEqual(deliveries[0].ordering_key, "customer-9", "one customer's in order")

    def test_other_models_and_small_orders_are_filtered_out(self):
        self.assertEqual(logic.handle(Event.new("res.partner", "write", {}), Config()), [])
        small = Event.new("sale.order", "confirmed", {"amount_total": 5})
        self.assertEqual(logic.handle(small, Config({"min_amount_total": "100"})), [])

    def test_a_bad_minimum_is_refused(self):
        with self.assertRaisesRegex(InvalidConfig, "min_amount_total"):
            logic.validate_config(Config({"min_amount_total": "lots"}))


if __name__ == "__main__":
    unittest.main()
