"""$name: a capability provider made with `trellis new provider $name`.

It exports `$package:$world/api` (wit/provider.wit). Each linked component may choose a
language in its link's config (`language = fr`). Run it with `trellis start provider
./$module.py $name`, or name this file as the image of a capability in a manifest; read
docs/providers.md of Trellis for links, config, health, calling components back and the
test harness.
"""

from __future__ import annotations

import logging

from trellis.providers.sdk import Provider, export, run

log = logging.getLogger("$module")
GREETINGS = {"en": "Hello", "fr": "Bonjour", "de": "Hallo", "es": "Hola"}


class $klass:
    @export("$package:$world/api")
    async def greet(self, name: str, *, ctx, **kwargs) -> dict:
        language = ctx.config.get("language", "en")
        if language not in GREETINGS:
            return {"err": f"unknown language {language!r} (known: {', '.join(sorted(GREETINGS))})"}
        return {"ok": f"{GREETINGS[language]}, {name}!"}

    def health(self, **kwargs) -> tuple[bool, str]:
        return True, "ready"


def build() -> Provider:
    """A fresh provider (each test builds its own)."""
    impl = $klass()
    provider = Provider("$name", exports=[impl], description="$name, made with trellis new provider")
    provider.health(impl.health)
    return provider


if __name__ == "__main__":  # a host runs this file; by hand: python $module.py --help
    run(build())
