"""The policy-service options of `trellis host`, `trellis wadm` and `trellis up`."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

import typer

PANEL = "Policy"

_OPTIONS: list[tuple[str, str, str, Any, Any]] = [
    ("policy_subject", "TRELLIS_POLICY_SUBJECT",
     "ask the policy service on this NATS subject before starts, links and privileged control requests "
     "(off when unset)", None, str | None),
    ("policy_timeout", "TRELLIS_POLICY_TIMEOUT", "seconds to wait for a policy decision", 1.0, float),
    ("policy_default", "TRELLIS_POLICY_DEFAULT",
     "decision when the policy service does not answer in time: deny or allow", "deny", str),
]
_NAMES = [name for name, *_ in _OPTIONS]


def _param(name: str, envvar: str, help: str, default: Any, annotation: Any) -> inspect.Parameter:
    return inspect.Parameter(
        name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation,
        default=typer.Option(default, f"--{name.replace('_', '-')}", envvar=envvar, help=help, rich_help_panel=PANEL))


def with_policy(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Give a command the --policy-* flags; it receives them as ``policy: PolicySettings``."""
    sig = inspect.signature(fn)
    params = [p for p in sig.parameters.values() if p.name != "policy"]
    kw_at = next((i for i, p in enumerate(params) if p.kind is inspect.Parameter.KEYWORD_ONLY), len(params))
    params[kw_at:kw_at] = [_param(*opt) for opt in _OPTIONS]

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from trellis.interfaces.policy import PolicySettings

        from .output import fail

        values = {k: kwargs.pop(k) for k in _NAMES}
        try:
            policy = PolicySettings(subject=values["policy_subject"], timeout_s=values["policy_timeout"],
                                    default=values["policy_default"].strip().lower())
        except ValueError as exc:
            raise fail(f"--policy-*: {exc}") from None
        return fn(*args, policy=policy, **kwargs)

    wrapper.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]  # functions take __signature__; typeshed does not say so
    return wrapper
