"""A component exporting a custom interface, `example:greeter/greet`."""

from componentize_py_types import Err
from wit_world import exports


class Greet(exports.Greet):
    def hello(self, name: str) -> str:
        return f"Hello, {name}!"

    def strict_hello(self, name: str) -> str:
        # A WIT `result`: return the ok value, raise Err(...) for the error.
        if not name.strip():
            raise Err("name is empty")
        if len(name) > 64:
            raise Err(f"name is {len(name)} characters long; at most 64 please")
        return self.hello(name)
