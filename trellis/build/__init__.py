"""Building Python and JavaScript apps into WebAssembly components (`trellis build`).

An *app* is a folder holding a Python module (``app.py`` by default) or a
JavaScript ES module (``app.js``) and either a ``wit/`` folder with the world it
targets, or a ``trellis.toml``::

    [component]
    name = "hello"                       # output hello.wasm (default: folder name)
    world = "trellis:http/proxy@0.1.0"   # a world of wit/ or of a shared package
    module = "app"                       # the Python module (default: app), or a .js file
    language = "python"                  # or "js"; default: js when module is a .js file
    wit = "wit"                          # the app's WIT folder (default: wit, if present)
    python-path = ["../common"]          # more folders on the module path (Python)

Python apps build with componentize-py, JavaScript apps with componentize-js
(trellis/build_js.py installs it from npm on first use).

The shared packages of ``interfaces/wit/`` (``wasi:keyvalue``, ``trellis:http``,
...) are always available to the app's WIT as dependencies, plus any folders
given with ``wit_dirs``; a package the app's own ``wit/deps/`` already holds
wins. componentize-py runs on a copy of the sources with ``VIRTUAL_ENV``
pointing at an empty folder (it would otherwise scan the active environment
for packages shipping WIT).

Outputs are cached by content hash: the key covers the app's files, every WIT
file it is built against, the world, the module and the componentize-py
version. A build whose output is already in place with the same key is
skipped ("unchanged"); one whose key is in the cache is copied ("cached").

    from trellis.build import build_app, build_tree
    wasm = build_app("examples/hello-python/greeter")      # -> .../build/greeter.wasm
    wasms = build_tree("examples/hello-python")            # every app below
"""

from __future__ import annotations

from .apps import (
                   APP_FILE,
                   AppSpec,
                   BuildError,
                   BuildOptions,
                   BuildResult,
                   Progress,
                   default_cache_dir,
                   find_apps,
                   is_app,
                   load_app,
)
from .builder import BuildPlan, _resolve_world, _trim, build, build_all, build_app, build_tree, find_tool, plan  # noqa: F401 (for the tests)

__all__ = [
    "APP_FILE",
    "AppSpec",
    "BuildError",
    "BuildOptions",
    "BuildPlan",
    "BuildResult",
    "Progress",
    "build",
    "build_all",
    "build_app",
    "build_tree",
    "default_cache_dir",
    "find_apps",
    "find_tool",
    "is_app",
    "load_app",
    "plan",
]
