"""The worker's data directory, trusted only after a clean shutdown.

Faust writes a table key to the local RocksDB before its changelog record is
acknowledged. After a SIGKILL (or a fatal error) the local store can therefore
hold writes the changelog never got, and Faust's recovery, which replays the
changelog from the last offset it saw acknowledged, can even roll a key back
over a newer local value. Neither happens after a clean stop, where every write
was acknowledged before the worker let go. So the worker leaves a marker when it
stops cleanly, and a start without the marker discards the local tables: Faust
then rebuilds them from the changelog, which is the state of record (the same
rule Kafka Streams applies to its stores under exactly-once).
"""

from __future__ import annotations

import fcntl
import os
import secrets
import shutil
from pathlib import Path

__all__ = ["DataDirInUse", "mark_clean", "open_data_dir", "tables_dir", "transactional_id"]

_CLEAN = "clean-shutdown"
_LOCK = "lock"
_TXN_ID = "transactional-id"


class DataDirInUse(RuntimeError):
    """Another worker holds the data directory."""


def tables_dir(data_dir: Path) -> Path:
    return data_dir / "tables"


def open_data_dir(data_dir: Path) -> bool:
    """Lock `data_dir` for this process and prepare it for a run.

    Returns True if local tables were discarded as untrusted. The lock (held
    until the process exits) keeps a second worker from sharing, or wiping, the
    tables of a running one.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(data_dir / _LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise DataDirInUse(f"data dir {data_dir} is in use by another worker") from None
    marker = data_dir / _CLEAN
    tables = tables_dir(data_dir)
    discarded = False
    if not marker.exists() and tables.exists() and any(tables.iterdir()):
        shutil.rmtree(tables)
        discarded = True
    # From here until `mark_clean`, any exit counts as a crash.
    marker.unlink(missing_ok=True)
    return discarded


def mark_clean(data_dir: Path) -> None:
    """Record that every local table write is also in the changelog."""
    (data_dir / _CLEAN).touch()


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
