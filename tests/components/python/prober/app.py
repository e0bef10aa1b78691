"""Python side of the `prober` test component: each export tries to reach outside."""

import os
import socket

import wit_world
from componentize_py_types import Err


def _err(e: BaseException) -> Err:
    return Err(f"{type(e).__name__}: {e}")


class WitWorld(wit_world.WitWorld):
    def connect(self, host: str, port: int) -> str:
        # a numeric address as bytes: straight to connect(), no name lookup and no idna codec
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.settimeout(5)
                s.connect((host.encode(), port))
                s.sendall(b"escaped\n")
                return "connected"
        except Exception as e:  # OSError from the sandbox
            raise _err(e) from e

    def resolve(self, name: str) -> list[str]:
        try:
            return sorted({str(info[4][0]) for info in socket.getaddrinfo(name.encode(), 80)})
        except Exception as e:
            raise _err(e) from e

    def read_file(self, path: str) -> str:
        try:
            with open(path) as f:
                return f.read()
        except Exception as e:
            raise _err(e) from e

    def list_dir(self, path: str) -> list[str]:
        try:
            return sorted(os.listdir(path))
        except Exception as e:
            raise _err(e) from e
