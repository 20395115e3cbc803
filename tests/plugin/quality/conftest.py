"""Quality tests run pytest in-process with ``pytester``, which restores ``sys.modules``
after each run. NumPy (under llama-cpp-python) cannot be imported twice in one process,
so the engine is imported here once, before any run, and stays loaded."""

from __future__ import annotations

import contextlib

with contextlib.suppress(ImportError):
    import llama_cpp  # noqa: F401
