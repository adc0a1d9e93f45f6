"""The worker's data directory: a lock, and the kafka engine's `transactional.id`.

State is not kept here: both engines hold it in memory and restore it from the
changelog topic, the state of record. An earlier version kept the Faust
engine's RocksDB tables under `tables/`; they are no longer read, and removed.
"""

from __future__ import annotations

import fcntl
import os
import secrets
import shutil
from pathlib import Path

__all__ = ["DataDirInUse", "open_data_dir", "transactional_id"]

_LOCK = "lock"
_TXN_ID = "transactional-id"
_EARLIER_VERSION = ("tables", "clean-shutdown")


class DataDirInUse(RuntimeError):
    """Another worker holds the data directory."""


def open_data_dir(data_dir: Path) -> None:
    """Lock `data_dir` for this process (until it exits), so that two workers never
    share one, nor its `transactional.id`."""
    data_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(data_dir / _LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise DataDirInUse(f"data dir {data_dir} is in use by another worker") from None
    for name in _EARLIER_VERSION:
        path = data_dir / name
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


def transactional_id(data_dir: Path, app_id: str) -> str:
    """The kafka engine's `transactional.id`, kept in the data dir.

    Stable across restarts, so `init_transactions` fences a crashed predecessor's
    open transaction at once; distinct per data dir, so two workers never share one.
    """
    path = data_dir / _TXN_ID
    try:
        suffix = path.read_text().strip()
    except FileNotFoundError:
        suffix = ""
    if not suffix:
        suffix = secrets.token_hex(8)
        path.write_text(suffix + "\n")
    return f"{app_id}-{suffix}"
