"""Heavy modules are imported on first use, from worker threads; one lock makes those imports one at a time.

Two threads importing the same package at once can see it half-initialised ("cannot import name ... from
partially initialized module"), e.g. the Local listing and the download queue both reaching `hubtui.hub`.
"""

from __future__ import annotations

import importlib
import sys
import threading
from types import ModuleType

_LOCK = threading.RLock()


def load(name: str) -> ModuleType:
    module = sys.modules.get(name)
    if module is not None and getattr(getattr(module, "__spec__", None), "_initializing", False) is False:
        return module
    with _LOCK:
        return importlib.import_module(name)
