"""The component's entry point: the plugin world's exports (see wit/plugin.wit)."""

from componentize_py_types import Err

import logic
import wit_world
from wit_world.imports import config, log, types


def min_amount_total():
    value = config.get("min_amount_total") or "0"
    try:
        return float(value)
    except ValueError:
        raise Err(f"config key `min_amount_total`: {value!r} is not a number") from None


class WitWorld(wit_world.WitWorld):
    def handle(self, event: types.Event) -> list[types.Delivery]:
        try:
            minimum = min_amount_total()
        except Err as error:
            raise Err(types.PluginError_InvalidConfig(error.value)) from None
        body = logic.summarise(event.model, event.payload, minimum)
        if body is None:
            log.log(log.Level.DEBUG, f"event {event.id} filtered out")
            return []
        return [types.Delivery("", "application/json", body, [])]

    def validate_config(self) -> None:
        min_amount_total()
