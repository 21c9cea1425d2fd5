"""Turn SQLite's errors into StoreErrors that say what went wrong and what to do about it.

Translated once, here, at the layer boundary (``raise translate(...) from exc``), so callers
only ever see :class:`~blockfeed.errors.StoreError`. Python 3.11 gives each ``sqlite3.Error`` its
primary result code name (``SQLITE_FULL``, ...); the message text is the fallback.
"""

from __future__ import annotations

import sqlite3

from blockfeed.errors import StoreError

_START_OVER = (
    "blockfeed never starts over silently: move the file aside (keep it for inspection) and "
    "start again with a new state file, or restore a backup"
)


def corrupt(path: str, detail: str) -> StoreError:
    """The file exists but is not a readable blockfeed database."""
    return StoreError(f"state file {path} is corrupt or not a database ({detail}). {_START_OVER}")


def translate(exc: sqlite3.Error, *, path: str, action: str) -> StoreError:
    """A StoreError for ``exc``, raised while doing ``action`` on the file at ``path``."""
    name = getattr(exc, "sqlite_errorname", "") or ""
    text = str(exc)
    lowered = text.lower()
    if name.startswith(("SQLITE_NOTADB", "SQLITE_CORRUPT")) or "malformed" in lowered:
        return corrupt(path, text)
    if name.startswith("SQLITE_FULL") or "disk is full" in lowered:
        return StoreError(
            f"cannot {action}: the disk holding state file {path} is full (nothing of this "
            "write was kept; the checkpoint is unchanged). Free disk space, or lower the "
            "window / outbox size"
        )
    if name.startswith("SQLITE_READONLY") or "readonly" in lowered:
        return StoreError(
            f"cannot {action}: state file {path} is read-only. Make the file and its directory "
            "writable by this user, or choose another state file (--state / BLOCKFEED_STATE)"
        )
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "locked" in lowered:
        return StoreError(
            f"cannot {action}: state file {path} stayed locked by another connection past the "
            "busy timeout. Is another program (a backup, an sqlite3 shell) holding it open?"
        )
    if name.startswith("SQLITE_CANTOPEN") or "unable to open" in lowered:
        return StoreError(
            f"cannot open state file {path}: check that its directory exists and that the file "
            "and directory are readable and writable by this user"
        )
    if name.startswith("SQLITE_IOERR") or "disk i/o" in lowered:
        return StoreError(
            f"cannot {action}: I/O error on state file {path} ({text}). Check the disk and the "
            "file system; the checkpoint is unchanged"
        )
    return StoreError(f"cannot {action} in state file {path}: {text}")
