"""One feed per state file: an exclusive ``flock`` on the state file itself.

SQLite's own locking lets two processes take turns writing one file, which would interleave two
feeds' checkpoints. An advisory ``flock`` held for the store's whole life makes the second feed
fail at once with a clear message instead. The lock belongs to the file's identity (device and
inode), not to a name: a symlink or a hard link to a live state file opens the same inode and
meets the same lock (a sidecar ``<name>.lock`` would be a different file for every name). The
kernel drops the lock when the process dies (even on SIGKILL), so a crash never leaves a stale
lock, and no file is ever created next to the state file for it.

``flock`` and SQLite's POSIX record locks are independent on Linux, but closing *any*
descriptor of a file drops every POSIX lock the process holds on it. So this module never
closes a descriptor of a file this process already has open as a store: a second open in the
same process is refused from a registry, before any descriptor is opened.
"""

from __future__ import annotations

import errno
import fcntl
import os
import threading
from pathlib import Path

from blockfeed.errors import StoreError

PROC_LOCKS = "/proc/locks"
FILE_MODE = 0o600
"""New state files (and SQLite's -wal / -shm, which copy the file's mode) are private."""

_held: set[tuple[int, int]] = set()
_held_mutex = threading.Lock()


class StateLock:
    """An exclusive, non-blocking lock on a state file, held until :meth:`release`.

    Opens (creating with mode 0600 if missing) the file at ``state_path`` and keeps that
    descriptor: :attr:`fd` lets the store validate the file's header before SQLite sees it.
    """

    def __init__(self, state_path: Path) -> None:
        self.path = state_path
        self._fd: int | None = None
        try:
            known = os.stat(state_path)  # refuse a file this process holds before opening it
        except OSError:
            pass
        else:
            with _held_mutex:
                if (known.st_dev, known.st_ino) in _held:
                    raise _busy(state_path, os.getpid())
        try:
            fd = os.open(state_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
        except OSError as exc:
            raise _open_error(state_path, exc) from exc
        try:
            info = os.fstat(fd)
        except OSError as exc:
            os.close(fd)
            raise StoreError(f"cannot stat state file {state_path}: {exc.strerror}") from exc
        key = (info.st_dev, info.st_ino)
        with _held_mutex:
            if key in _held:
                # Only if the file was swapped in between the stat and the open. Do not close
                # fd: see the module docstring; keep it until the store holding it lets go.
                _park(fd, key)
                raise _busy(state_path, os.getpid())
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                os.close(fd)  # no store of this process has this inode open: safe to close
                if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise _busy(state_path, _holder_pid(info)) from exc
                raise StoreError(f"cannot lock {state_path}: {exc.strerror or exc}") from exc
            _held.add(key)
        self._fd = fd
        self._key = key

    @property
    def fd(self) -> int:
        """The locked descriptor of the state file (read-write)."""
        if self._fd is None:
            raise StoreError(f"the lock on {self.path} was released")
        return self._fd

    def release(self) -> None:
        """Drop the lock (idempotent). Call it only after SQLite closed the file."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            with _held_mutex:
                _held.discard(self._key)
                for parked in _parked.pop(self._key, []):
                    os.close(parked)
            os.close(fd)


_parked: dict[tuple[int, int], list[int]] = {}


def _park(fd: int, key: tuple[int, int]) -> None:
    """Keep ``fd`` open until the store holding ``key`` releases it (caller holds the mutex)."""
    _parked.setdefault(key, []).append(fd)


def _busy(state_path: Path, holder: int | None) -> StoreError:
    who = f"process {holder}" if holder else "another process"
    return StoreError(
        f"state file {state_path} is in use by {who}: another blockfeed is running with it "
        "(under this or another name: a link leads to the same file). Stop that one, or give "
        "this one its own state file (--state / BLOCKFEED_STATE)"
    )


def _holder_pid(info: os.stat_result) -> int | None:
    """The pid holding a ``flock`` on this inode, from ``/proc/locks`` (Linux; best effort)."""
    wanted = f"{os.major(info.st_dev):02x}:{os.minor(info.st_dev):02x}:{info.st_ino}"
    try:
        with open(PROC_LOCKS, encoding="ascii", errors="replace") as handle:
            for line in handle:
                fields = line.split()
                # "1: FLOCK  ADVISORY  WRITE 1234 fd:01:5678 0 EOF"
                if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5] == wanted:
                    return int(fields[4]) if fields[4].isdigit() else None
    except OSError:
        return None
    return None


def _open_error(path: Path, exc: OSError) -> StoreError:
    if exc.errno == errno.EROFS:
        return StoreError(
            f"cannot create state file {path}: the file system is read-only. Put the state "
            "file on a writable disk (--state / BLOCKFEED_STATE)"
        )
    if exc.errno in (errno.EACCES, errno.EPERM):
        return StoreError(
            f"state file {path} is read-only for this user, or its directory is. Make them "
            "writable, or choose another state file (--state / BLOCKFEED_STATE)"
        )
    if exc.errno == errno.ENOSPC:
        return StoreError(
            f"cannot create state file {path}: no space left on the device. Free disk space"
        )
    return StoreError(f"cannot open state file {path}: {exc.strerror or exc}")
