"""`livewindows dev` (what `make run` runs): the whole pipeline on one machine.

Kafka from the local launcher, the four topics, then the producer, the worker and
the billing consumer as child processes (each logging to a file), and a live
table of windows in the terminal. Development secrets are generated once and kept
in `<data-dir>/dev.env`, which `livewindows --env-file` reads, so a second
terminal can send signed test webhooks. Ctrl-C (or SIGTERM) stops everything.
"""

from __future__ import annotations

import argparse
import base64
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from plumbing.clients import reader_config
from plumbing.processes import die_with_parent
from plumbing.settings import ConfigError, Settings

_SECRET_NAMES = (
    "VIDEO_EVENTS_TOKEN",
    "CF_WEBHOOK_SECRET",
    "FASTPIX_WEBHOOK_SECRET",
    "GJIRAFA_WEBHOOK_TOKEN",
)
_READY_TIMEOUT_S = 90.0
_STOP_TIMEOUT_S = 15.0
_TABLE_ROWS = 15


class _Stop(Exception):
    """SIGINT or SIGTERM: leave the main loop and clean up."""


def dev_command(args: argparse.Namespace, settings: Settings) -> int:
    from livewindows.kafka.launcher import KafkaCluster, port_free
    from plumbing.topics import ensure_topics

    data_dir = Path(args.data_dir).resolve()
    for name, port in (("--port", args.port), ("--kafka-port", args.kafka_port)):
        if not port_free(port):
            raise ConfigError(f"{name} {port} is already in use (choose another)")
    (data_dir / "logs").mkdir(parents=True, exist_ok=True)
    env_file = data_dir / "dev.env"
    bootstrap = f"127.0.0.1:{args.kafka_port}"
    dev_env = _dev_environment(env_file, bootstrap)

    children: list[_Child] = []
    cluster = KafkaCluster([args.kafka_port], data_dir=data_dir / "kafka")
    with _signals_stop():
        try:
            _say(f"starting Kafka on {bootstrap} (first run resolves jars; logs in {data_dir})")
            cluster.start()
            ensure_topics(bootstrap, settings.topics, settings.topic_partitions, 1)
            env = {**os.environ, **dev_env}
            # One by one into `children`: a signal between two starts stops those started.
            children.append(
                _Child.start(  # loopback only: development secrets
                    "producer",
                    ["serve", "--host", "127.0.0.1", "--port", str(args.port)],
                    env,
                    data_dir,
                )
            )
            children.append(
                _Child.start(
                    "worker", ["worker", "--data-dir", str(data_dir / "worker")], env, data_dir
                )
            )
            children.append(
                _Child.start(
                    "billing",
                    ["billing", "--db", f"sqlite:///{data_dir / 'billing.db'}"],
                    env,
                    data_dir,
                )
            )
            url = f"http://127.0.0.1:{args.port}"
            _wait_ready(f"{url}/readyz", children)
            _banner(url, bootstrap, env_file, data_dir, settings)
            _watch(bootstrap, settings.windows_topic, children)
        except _Stop:
            _say("stopping ...")
        finally:
            for child in reversed(children):
                child.stop()
            cluster.stop()
    failed = [c for c in children if c.failed]
    for child in failed:
        _say(f"{child.name} exited with {child.process.returncode}; last lines of {child.log}:")
        sys.stderr.write(child.tail())
    return 1 if failed else 0


def _dev_environment(env_file: Path, bootstrap: str) -> dict[str, str]:
    """Secrets from the environment, else from the env file, else new ones (kept there)."""
    kept: dict[str, str] = {}
    if env_file.exists():
        for line in env_file.read_text().splitlines():
            name, sep, value = line.partition("=")
            if sep and not line.startswith("#"):
                kept[name.strip()] = value.strip()
    token = os.environ.get("VIDEO_EVENTS_TOKEN") or kept.get("VIDEO_EVENTS_TOKEN")
    token = token or secrets.token_urlsafe(18)
    values = {
        "VIDEO_EVENTS_TOKEN": token,
        "CF_WEBHOOK_SECRET": kept.get("CF_WEBHOOK_SECRET", token),
        "FASTPIX_WEBHOOK_SECRET": kept.get(
            "FASTPIX_WEBHOOK_SECRET", base64.b64encode(secrets.token_bytes(32)).decode()
        ),
        "GJIRAFA_WEBHOOK_TOKEN": kept.get("GJIRAFA_WEBHOOK_TOKEN", secrets.token_urlsafe(18)),
    }
    values = {name: os.environ.get(name) or value for name, value in values.items()}
    values["KAFKA_BOOTSTRAP_SERVERS"] = bootstrap
    env_file.write_text(
        "# Written by 'livewindows dev': development secrets, never for production.\n"
        + "".join(f"{name}={value}\n" for name, value in values.items())
    )
    env_file.chmod(0o600)
    return values


@dataclass
class _Child:
    name: str
    process: subprocess.Popen[bytes]
    log: Path
    failed: bool = False

    @classmethod
    def start(cls, name: str, argv: list[str], env: Mapping[str, str], data_dir: Path) -> _Child:
        log = data_dir / "logs" / f"{name}.log"
        with log.open("ab") as sink:
            process = subprocess.Popen(
                [sys.executable, "-m", "livewindows.cli", *argv],
                env=dict(env),
                stdout=sink,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # Ctrl-C reaches us only; we stop children in order
                preexec_fn=die_with_parent,  # and if we are killed, they go too
            )
        return cls(name, process, log)

    def check(self) -> None:
        if self.process.poll() is not None:
            self.failed = True
            raise _Stop

    def stop(self) -> None:
        if self.process.poll() is not None:
            self.failed = self.failed or self.process.returncode not in (0, -signal.SIGTERM)
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def tail(self, lines: int = 20) -> str:
        try:
            return "".join(
                f"  {line}\n" for line in self.log.read_text(errors="replace").splitlines()[-lines:]
            )
        except OSError:
            return ""


def _wait_ready(url: str, children: list[_Child]) -> None:
    deadline = time.monotonic() + _READY_TIMEOUT_S
    while time.monotonic() < deadline:
        for child in children:
            child.check()
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                if answer.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    raise ConfigError(f"the producer did not become ready at {url} in {_READY_TIMEOUT_S:.0f}s")


def _banner(url: str, bootstrap: str, env_file: Path, data_dir: Path, settings: Settings) -> None:
    here = Path.cwd()
    shown = env_file.relative_to(here) if env_file.is_relative_to(here) else env_file
    _say(
        "\n".join(
            [
                "livewindows is running:",
                f"  producer   {url}  (POST /api/v1/video/..., GET /metrics, /openapi.json)",
                f"  kafka      {bootstrap}  topics {', '.join(settings.topics)}",
                f"  billing    sqlite:///{data_dir / 'billing.db'}",
                f"  logs       {data_dir / 'logs'}",
                "send test webhooks from another terminal:",
                f"  .venv/bin/livewindows --env-file {shown} send-test-events "
                f"--provider cloudflare --url {url}",
                "  (or: make send PROVIDER=fastpix)",
                "windows appear below as they open and close; Ctrl-C stops everything.",
            ]
        )
    )


def _watch(bootstrap: str, topic: str, children: list[_Child]) -> None:
    """Show windows as they open and close until a signal or a child's death."""
    from confluent_kafka import Consumer

    consumer = Consumer(reader_config(bootstrap, f"livewindows-dev-view-{uuid.uuid4().hex}"))
    consumer.subscribe([topic])
    view = _WindowView()
    try:
        with view.live() as refresh:
            while True:
                for child in children:
                    child.check()
                message = consumer.poll(0.5)
                if message is None or message.error():
                    continue
                value = message.value()
                if value:
                    line = view.add(value)
                    if line is not None:
                        refresh(line)
    finally:
        consumer.close()


@dataclass
class _WindowView:
    rows: dict[str, dict[str, Any]] = field(default_factory=dict)

    def add(self, value: bytes) -> str | None:
        import orjson

        try:
            record = orjson.loads(value)
            window_id = record["window_id"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return None
        row = self.rows.setdefault(window_id, {})
        if record.get("type") == "window.closed" or "closed_at" not in row:
            row.update(record)
        closed = record.get("closed_at")
        return (
            f"{record.get('type', '?'):<14} {record.get('provider')}:{record.get('input_id')} "
            f"opened {record.get('opened_at')} ({record.get('open_reason')})"
            + (
                f" closed {closed} ({record.get('close_reason')}, {record.get('duration_ms')} ms)"
                if closed
                else ""
            )
        )

    @contextmanager
    def live(self) -> Iterator[Any]:
        """A rich live table on a terminal, one line per record elsewhere."""
        if not sys.stdout.isatty():
            yield lambda line: print(line, flush=True)
            return
        from rich.live import Live

        with Live(self.table(), refresh_per_second=4, transient=False) as live:
            yield lambda _line: live.update(self.table())

    def table(self) -> Any:
        from rich.table import Table

        open_now = sum(1 for row in self.rows.values() if not row.get("closed_at"))
        table = Table(
            title=f"disconnect windows: {open_now} open, {len(self.rows) - open_now} closed",
            caption="Ctrl-C stops everything",
        )
        for column in ("input", "opened at", "closed at", "duration", "reason"):
            table.add_column(column)
        newest = sorted(self.rows.values(), key=lambda r: str(r.get("opened_at")))[-_TABLE_ROWS:]
        for row in reversed(newest):
            closed = row.get("closed_at")
            table.add_row(
                f"{row.get('provider')}:{row.get('input_id')}",
                str(row.get("opened_at")),
                str(closed) if closed else "[bold yellow]open[/]",
                f"{row['duration_ms'] / 1000:.3f} s" if closed else "",
                f"{row.get('open_reason')} → {row.get('close_reason') or '…'}",
            )
        return table


@contextmanager
def _signals_stop() -> Iterator[None]:
    stopping = False

    def stop(_signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        if stopping:  # a second Ctrl-C must not abort the clean-up
            _say("still stopping: children and Kafka are shutting down ...")
            return
        stopping = True
        raise _Stop

    # SIGHUP: the terminal closed.
    signals = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {sig: signal.signal(sig, stop) for sig in signals}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _say(text: str) -> None:
    print(text, flush=True)
