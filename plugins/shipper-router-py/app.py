"""The component's entry point: the plugin world's exports, on top of `routing`."""

from componentize_py_types import Err

import routing
import wit_world
from wit_world.imports import config, log, types


class WitWorld(wit_world.WitWorld):
    def handle(self, event: types.Event) -> list[types.Delivery]:
        try:
            routed = routing.handle(event.model, event.payload, config.entries())
        except routing.InvalidConfig as error:
            raise Err(types.PluginError_InvalidConfig(str(error)))
        except routing.Reject as error:
            raise Err(types.PluginError_Reject(str(error)))
        if not routed:
            log.log(log.Level.DEBUG, f"event {event.id}: nothing to route")
        return [types.Delivery(destination, "application/json", body, []) for destination, body in routed]

    def validate_config(self) -> None:
        try:
            routing.Rules(config.entries())
        except routing.InvalidConfig as error:
            raise Err(str(error))
