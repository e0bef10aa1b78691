"""Baselines: the apps Trellis is measured against, written as ordinary always-on services.

See README.md here. The launcher is :mod:`bench.baselines.services`;
``python -m bench.baselines --help`` starts them from a shell.
"""

from .services import (
    BaselineError,
    System,
    start_platform_poc_services,
    start_small_app_services,
)

__all__ = ["BaselineError", "System", "start_platform_poc_services", "start_small_app_services"]
