"""The wadm controller: stores manifests, places applications across hosts and keeps them there.

    async with Controller(ControllerSettings(lattice="default")) as ctl:
        await ctl.finished()

See ``docs/wadm.md`` for running it, the API, statuses and high availability.
"""

from .controller import AppWorker, Controller
from .settings import ControllerSettings

__all__ = ["AppWorker", "Controller", "ControllerSettings"]
