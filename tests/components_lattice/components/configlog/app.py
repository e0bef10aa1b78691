"""Test component: config and logging served by the host itself."""

import wit_world
from wit_world.imports import logging, runtime


class WitWorld(wit_world.WitWorld):
    def get(self, key: str) -> str | None:
        logging.log(logging.Level.INFO, "configlog", f"looking up {key}")
        return runtime.get(key)

    def all(self) -> list[tuple[str, str]]:
        return runtime.get_all()
