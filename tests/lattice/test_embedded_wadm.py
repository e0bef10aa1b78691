"""`trellis host --with-wadm` (what `trellis up` runs): a wadm controller on the host's event loop, started
again with backoff when it fails, as `trellis up` restarts a child process (trellis/cli/embedded_wadm.py).
`trellis up` itself with its embedded controller: tests/wadm_e2e/test_up.py, tests/lattice/test_up_orphans.py."""

from __future__ import annotations

import asyncio

from trellis.cli.embedded_wadm import EmbeddedWadm
from trellis.kit.service import Service, Status
from trellis.wadm.controller import ControllerSettings


class FailsOnce(Service):
    """Stands in for a Controller: the first one closes itself as a fatal failure would."""

    name = "wadm"
    made: list[FailsOnce] = []

    def __init__(self) -> None:
        super().__init__()
        self.id = f"stand-in-{len(self.made)}"
        self.fails = not self.made
        self.made.append(self)

    async def _start(self) -> None:
        if self.fails:  # just after it started, as a watch that dies would
            self.closer = asyncio.get_running_loop().create_task(self.close(reason="fatal: the lease bucket is gone"))


def test_a_failed_controller_is_started_again_and_stop_closes_the_running_one() -> None:
    async def scenario() -> None:
        FailsOnce.made.clear()
        stand_in = lambda _s: FailsOnce()  # noqa: E731  # a factory of stand-ins
        wadm = EmbeddedWadm(ControllerSettings(), factory=stand_in)  # type: ignore[arg-type]  # a stand-in Controller
        wadm.start()

        async def second_running() -> None:
            while len(FailsOnce.made) < 2 or FailsOnce.made[1].status is not Status.RUNNING:
                await asyncio.sleep(0.02)

        await asyncio.wait_for(second_running(), 10)
        first, second = FailsOnce.made
        assert first.close_reason == "fatal: the lease bucket is gone"
        assert wadm.starts == 2 and wadm.controller is not None and wadm.controller.id == second.id
        await wadm.stop("signal SIGTERM")
        assert second.close_reason == "signal SIGTERM"
        assert len(FailsOnce.made) == 2  # not started again once stopped

    asyncio.run(scenario())
