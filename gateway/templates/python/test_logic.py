import json
import unittest

import logic


class SummariseTest(unittest.TestCase):
    def test_an_order_above_the_minimum_is_summarised(self):
        with open("sample-event.json") as file:
            payload = json.dumps(json.load(file)["payload"])
        body = logic.summarise("sale.order", payload, 100)
        self.assertEqual(body, b'{"amount_total":1184.5,"id":12,"name":"S00012"}')

    def test_other_models_and_small_orders_are_filtered_out(self):
        self.assertIsNone(logic.summarise("res.partner", "{}", 0))
        self.assertIsNone(logic.summarise("sale.order", '{"amount_total": 5}', 100))


if __name__ == "__main__":
    unittest.main()
