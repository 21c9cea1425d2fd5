"""Where the state file lives when nobody says: a per-user data directory, never the cwd.

Order: ``$BLOCKFEED_STATE`` (a file path), else ``$XDG_DATA_HOME/blockfeed/state.sqlite`` (only an
absolute ``XDG_DATA_HOME`` counts, as the XDG spec says), else
``~/.local/share/blockfeed/state.sqlite``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

STATE_ENV_VAR = "BLOCKFEED_STATE"
MEMORY = ":memory:"
"""The state "path" that keeps nothing on disk (no checkpoint survives a restart)."""
STATE_FILE_NAME = "state.sqlite"
APP_DIR_NAME = "blockfeed"


def default_state_path(env: Mapping[str, str] | None = None) -> Path:
    """The state file to use when none is configured (``env`` defaults to ``os.environ``)."""
    environ = os.environ if env is None else env
    override = environ.get(STATE_ENV_VAR, "").strip()
    if override:
        return Path(override).expanduser()
    xdg = environ.get("XDG_DATA_HOME", "").strip()
    if xdg and Path(xdg).is_absolute():
        base = Path(xdg)
    else:
        home = environ.get("HOME", "").strip()
        base = (Path(home) if home else Path.home()) / ".local" / "share"
    return base / APP_DIR_NAME / STATE_FILE_NAME


def resolve_state_path(value: str | os.PathLike[str] | None) -> str:
    """The one place a configured state value becomes a path: ``:memory:`` stays as it is,
    a given path is ``~``-expanded, nothing (None or empty) means :func:`default_state_path`."""
    if value is not None and os.fspath(value) == MEMORY:
        return MEMORY
    if value is not None and os.fspath(value).strip():
        return str(Path(value).expanduser())
    return str(default_state_path())
