"""One feed per state file: an exclusive ``flock`` on a sidecar ``<state>.lock`` file.

SQLite's own locking lets two processes take turns writing one file, which would interleave two
feeds' checkpoints. An advisory ``flock`` held for the store's whole life makes the second feed
fail at once with a clear message instead. The kernel drops the lock when the process dies (even
on SIGKILL), so a crashed feed never leaves a stale lock behind. The lock file is never deleted:
deleting it while another process waits on it would let two holders exist.
"""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path

from blockfeed.errors import StoreError

LOCK_SUFFIX = ".lock"
MAX_PID_TEXT = 32


def lock_path_for(state_path: Path) -> Path:
    """The sidecar lock file of ``state_path``."""
    return state_path.with_name(state_path.name + LOCK_SUFFIX)


class StateLock:
    """An exclusive, non-blocking lock on a state file, held until :meth:`release`."""

    def __init__(self, state_path: Path) -> None:
        self.path = lock_path_for(state_path)
        self._fd: int | None = None
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise _open_error(self.path, exc) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = _read_pid(fd)
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                who = f"process {holder}" if holder else "another process"
                raise StoreError(
                    f"state file {state_path} is in use by {who} (lock {self.path}): another "
                    "blockfeed is running with it. Stop that one, or give this one its own "
                    "state file (--state / BLOCKFEED_STATE)"
                ) from exc
            raise StoreError(f"cannot lock {self.path}: {exc.strerror or exc}") from exc
        self._fd = fd
        _write_pid(fd)

    def release(self) -> None:
        """Drop the lock (idempotent)."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)


def _open_error(lock_path: Path, exc: OSError) -> StoreError:
    if exc.errno == errno.EROFS:
        return StoreError(
            f"cannot create lock file {lock_path}: the file system is read-only. Put the state "
            "file on a writable disk (--state / BLOCKFEED_STATE)"
        )
    if exc.errno in (errno.EACCES, errno.EPERM):
        return StoreError(
            f"cannot create or open lock file {lock_path}: permission denied (read-only "
            f"directory or a lock file owned by another user). Make {lock_path.parent} and the "
            "lock file writable by this user, or choose another state file"
        )
    if exc.errno == errno.ENOSPC:
        return StoreError(
            f"cannot create lock file {lock_path}: no space left on the device. Free disk space"
        )
    return StoreError(f"cannot create lock file {lock_path}: {exc.strerror or exc}")


def _write_pid(fd: int) -> None:
    """Note our pid in the lock file so a second feed can say who holds it (best effort)."""
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    except OSError:
        pass


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, MAX_PID_TEXT, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None
