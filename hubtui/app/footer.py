"""The footer: the app's own keys (help, quit) first, so they are never the ones cut off at 80 columns, then
the focused screen's in the order it declares them, each action once. The tabs show the F-keys of the
screens, so the footer does not."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.dom import DOMNode
from textual.widgets import Footer
from textual.widgets._footer import FooterKey


def _declared(node: DOMNode, binding: Binding) -> int:
    ids = [b.id for b in getattr(node, "BINDINGS", []) if isinstance(b, Binding)]
    return ids.index(binding.id) if binding.id in ids else len(ids)


class KeyFooter(Footer):
    def compose(self) -> ComposeResult:
        if not self._bindings_ready:
            return
        first: list[tuple] = []
        rest: list[tuple] = []
        seen: set[str] = set()
        for node, binding, enabled, tooltip in self.screen.active_bindings.values():
            if not binding.show or binding.action in seen:
                continue
            seen.add(binding.action)
            entry = (_declared(node, binding), binding, enabled, tooltip)
            (first if node is self.app else rest).append(entry)
        keys = sorted(first, key=lambda e: e[0]) + sorted(rest, key=lambda e: e[0])
        self.styles.grid_size_columns = len(keys)
        for _, binding, enabled, tooltip in keys:
            yield FooterKey(
                binding.key,
                self.app.get_key_display(binding),
                binding.description,
                binding.action,
                disabled=not enabled,
                tooltip=tooltip,
            ).data_bind(compact=Footer.compact)
