"""The annotations wadm puts on the components and providers it places.

Hosts report them back in their inventories; wadm reads them to know what it placed, and
the host's usage and metrics and the lattice views group by them. Spelled here once.
"""

from __future__ import annotations

#: the application that placed a part (its manifest name)
APP_ANNOTATION = "trellis.app"
#: the version of that application's manifest (not a manifest's own ``version`` annotation)
APP_VERSION_ANNOTATION = "trellis.app.version"
#: the spread (of the app's spreadscaler) a placement belongs to
SPREAD_ANNOTATION = "trellis.spread"
#: the named configs a part reads, comma-separated
CONFIG_ANNOTATION = "trellis.config"
#: the reconcile pass that made a placement
PASS_ANNOTATION = "trellis.pass"
#: references to the secrets a part is granted (never the values)
SECRETS_ANNOTATION = "trellis.secrets"
#: a component's per-call deadline in milliseconds, when its manifest sets one (``properties.timeout_ms``)
TIMEOUT_ANNOTATION = "trellis.timeout_ms"

__all__ = ["APP_ANNOTATION", "APP_VERSION_ANNOTATION", "CONFIG_ANNOTATION", "PASS_ANNOTATION", "SECRETS_ANNOTATION",
           "SPREAD_ANNOTATION", "TIMEOUT_ANNOTATION"]
