"""Deprecated alias of :mod:`pytest_tokrate.machine.calibration`
(moved after 0.1.0; kept for one release). Importing it warns.
"""

from __future__ import annotations

from typing import Any

from pytest_tokrate._moved import warn_moved
from pytest_tokrate.machine import calibration as _moved

warn_moved(__name__, _moved.__name__)


def __getattr__(name: str) -> Any:
    return getattr(_moved, name)
