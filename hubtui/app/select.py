"""Textual's Select, without a traceback when the app quits while one is still being mounted.

Select sets its first value in its own Mount handler, which updates the label inside its SelectCurrent
child. When the app exits in that instant (ctrl+q during start-up, while the screens built after the first
frame are still mounting), Textual has already removed the child's label and the update raises NoMatches,
which ends the app with a traceback. A widget being torn down needs no label: that one case is ignored.
"""

from __future__ import annotations

from typing import Any

from textual.css.query import NoMatches
from textual.widgets import Select as _TextualSelect


class Select(_TextualSelect[Any]):
    # Mount calls _setup_options_renderables (which fills the SelectOverlay child), then sets the value
    # (whose watcher updates the SelectCurrent child's label): both are guarded.
    def _setup_options_renderables(self) -> None:
        try:
            super()._setup_options_renderables()
        except NoMatches:
            if self._torn_down():
                return
            raise

    def _watch_value(self, value: Any) -> None:
        try:
            super()._watch_value(value)
        except NoMatches:
            if self._torn_down():
                return
            raise

    def _torn_down(self) -> bool:
        return bool(getattr(self.app, "_exit", False)) or self._closing or not self.is_attached
