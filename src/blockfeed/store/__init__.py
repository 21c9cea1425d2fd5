"""SQLite checkpoint store: last delivered block, recent-block window, trigger records, outbox.

See :mod:`blockfeed.store.checkpoint` for what a crash can repeat and how each failure is reported.
"""

from blockfeed.store.checkpoint import (
    DEFAULT_OUTBOX_MAX,
    DEFAULT_WINDOW,
    MEMORY,
    CheckpointStore,
    TriggerRecord,
    open_store,
)
from blockfeed.store.paths import STATE_ENV_VAR, default_state_path

__all__ = [
    "DEFAULT_OUTBOX_MAX",
    "DEFAULT_WINDOW",
    "MEMORY",
    "STATE_ENV_VAR",
    "CheckpointStore",
    "TriggerRecord",
    "default_state_path",
    "open_store",
]
