"""A provider in one file: ``trellis start provider ./hello_provider.py hello-provider``.

It exports ``example:hello/greet.hello(name) -> string``; the host runs the file as a
script (``python hello_provider.py``) and hands it the lattice on stdin.
"""

from trellis.providers.sdk import Provider, run

hello = Provider("hello-provider")


@hello.export("example:hello/greet", "hello")
async def greet(name: str, **kwargs: object) -> str:
    return f"Hello, {name}, from a provider!"


if __name__ == "__main__":
    run(hello)
