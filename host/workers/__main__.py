"""A worker process (``python -P -m trellis.host.workers``, started by ``pool.py``)."""

from trellis.host.runtime import wasmtime_patches

from .worker import main

wasmtime_patches.apply()  # before any Wasm runs: wasmtime-py corrected and made faster (see that module)
main()
