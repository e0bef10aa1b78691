"""Python side of the `greeter` test component."""

import os
import sys

import wit_world
from componentize_py_types import Err


class WitWorld(wit_world.WitWorld):
    def greet(self, name: str) -> str:
        return f"Hello, {name}!"

    def env_var(self, name: str) -> str | None:
        return os.environ.get(name)

    def read_file(self, path: str) -> str:
        try:
            with open(path) as f:
                return f.read()
        except OSError as e:
            raise Err(f"{type(e).__name__}: {e}") from e

    def write_file(self, path: str, contents: str) -> None:
        try:
            with open(path, "w") as f:
                f.write(contents)
        except OSError as e:
            raise Err(f"{type(e).__name__}: {e}") from e

    def hog(self, megabytes: int) -> int:
        held = []
        for _ in range(megabytes):
            held.append(bytearray(1024 * 1024))
        return len(held)

    def spin(self) -> None:
        while True:
            pass

    def fail(self, message: str) -> None:
        print(message, file=sys.stderr)
        raise RuntimeError(message)
