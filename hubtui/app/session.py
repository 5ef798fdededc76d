"""What every screen may read about the running app, as one typed object instead of loose app attributes.

Screens read `self.session` (a `UsesSession` mixin) and ask the app for anything else by posting the
messages in `hubtui.app.messages`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, cast

if TYPE_CHECKING:
    from hubtui.app.config import Settings
    from hubtui.app.target import TargetChoice


@dataclass
class Session:
    settings: Settings
    endpoint: str | None  # the hub URL given on the command line or by the tests; None: HF_ENDPOINT
    output_dir: str  # where conversions and bundles go
    target: TargetChoice
    offline: bool
    offline_note: str = ""  # why the hub is off, shown on Local
    imatrix: str = ""  # the Convert screen's importance matrix: "" off, "auto", or a file's path

    @property
    def has_imatrix(self) -> bool:
        """Sizing recommends the imatrix-only types (and no float type) when conversions will have one."""
        return bool(self.imatrix)


class _HasSession(Protocol):
    session: Session


class UsesSession:
    """For widgets: `self.session` is the app's `Session`."""

    @property
    def session(self) -> Session:
        return cast(_HasSession, self.app).session  # type: ignore[attr-defined]
