"""A tiny provider for host supervision tests: echoes, reports its pid, can crash."""

import os

from trellis.providers.sdk import Provider, run

echo = Provider("echo")


@echo.export("test:echo/echo", "echo")
async def do_echo(text: str, **kwargs: object) -> str:
    return text


@echo.export("test:echo/echo", "pid")
def pid(**kwargs: object) -> int:
    return os.getpid()


@echo.export("test:echo/echo", "env")
def env(name: str, **kwargs: object) -> str | None:
    return os.environ.get(name)


if __name__ == "__main__":
    run(echo)
