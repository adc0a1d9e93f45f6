"""What every benchmark shares: the run context, results, child processes, the machine."""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import os
import platform
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from plumbing.processes import descendants

if TYPE_CHECKING:
    from plumbing.settings import Settings

RESULT_SCHEMA = "livewindows/bench/v1"
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Row:
    """One line of the BENCHMARKS.md table: a figure, its baseline and its target."""

    metric: str
    value: float
    unit: str
    baseline: str | None = None
    baseline_value: float | None = None
    target: str = ""
    passed: bool | None = None  # None: no target for this row

    @property
    def ratio(self) -> float | None:
        if self.baseline_value in (None, 0) or self.value != self.value:
            return None
        return self.value / self.baseline_value  # type: ignore[operator]

    def to_dict(self) -> dict[str, Any]:
        ratio = self.ratio
        return {**asdict(self), "ratio": None if ratio is None else round(ratio, 4)}


@dataclass
class Result:
    name: str
    parameters: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self, *, quick: bool, started_at: str, seconds: float,
                machine: Mapping[str, Any]) -> dict[str, Any]:  # fmt: skip
        return {
            "schema": RESULT_SCHEMA,
            "name": self.name,
            "quick": quick,
            "started_at": started_at,
            "duration_s": round(seconds, 1),
            "machine": dict(machine),
            "parameters": self.parameters,
            "metrics": self.metrics,
            "rows": [row.to_dict() for row in self.rows],
            "notes": self.notes,
        }


@dataclass
class Context:
    """One `python -m bench` run: the broker, the sizes, where files go."""

    bootstrap: str
    quick: bool
    work_dir: Path
    results_dir: Path
    kafka_log_dirs: list[Path]  # empty when the broker is not ours
    profile: bool = False
    cache: dict[str, Any] = field(default_factory=dict)
    secrets: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.secrets:
            token = secrets.token_urlsafe(18)
            self.secrets = {
                "VIDEO_EVENTS_TOKEN": token,
                "CF_WEBHOOK_SECRET": token,
                "FASTPIX_WEBHOOK_SECRET": base64.b64encode(secrets.token_bytes(32)).decode(),
                "GJIRAFA_WEBHOOK_TOKEN": secrets.token_urlsafe(18),
            }

    def env(self, **extra: str) -> dict[str, str]:
        """The environment of a child: this one, the broker, the run's secrets, `extra`."""
        return {
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
            **self.secrets,
            "PYTHONUNBUFFERED": "1",
            **extra,
        }

    def settings(self, **extra: Any) -> Settings:
        """Settings with the run's broker and secrets (to sign requests in this process)."""
        from plumbing.settings import load_settings

        given = {name.lower(): value for name, value in self.secrets.items()}
        return load_settings(kafka_bootstrap_servers=self.bootstrap, **given, **extra)

    def topics(self, *prefixes: str, partitions: int = 6) -> list[str]:
        """Fresh, uniquely named topics (created, with leaders)."""
        from plumbing.topics import ensure_topics

        suffix = uuid.uuid4().hex[:8]
        names = [f"bench-{prefix}-{suffix}" for prefix in prefixes]
        ensure_topics(self.bootstrap, names, partitions, 1, timeout_s=30)
        return names

    def topic_disk_bytes(self, topic: str) -> int | None:
        """Bytes of `topic`'s partitions on the broker's disk, if the broker is ours."""
        if not self.kafka_log_dirs:
            return None
        total = 0
        for log_dir in self.kafka_log_dirs:
            for partition_dir in log_dir.glob(f"{topic}-*"):
                if re.fullmatch(re.escape(topic) + r"-\d+", partition_dir.name):
                    total += dir_bytes(partition_dir)
        return total


def say(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def dir_bytes(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.stat(os.path.join(root, name)).st_blocks * 512
    return total


def percentile(sorted_values: list[float], q: float) -> float:
    from bench.loadgen import percentile as nearest_rank

    return nearest_rank(sorted_values, q)


class Service:
    """A child process (a livewindows command, an app, a tool) with its output in a file.

    It dies with the bench (PR_SET_PDEATHSIG) and `stop` sends SIGTERM, then SIGKILL.
    """

    def __init__(self, name: str, argv: list[str], env: Mapping[str, str], log_dir: Path) -> None:
        from plumbing.processes import die_with_parent

        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self.started = time.monotonic()
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                argv,
                env=dict(env),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent,
            )

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def tail(self, lines: int = 15) -> str:
        return "\n".join(self.output().splitlines()[-lines:])

    def cpu_seconds(self) -> float:
        """User + system CPU time so far of the process and its children (a Faust
        worker's runtime runs in one), from /proc; 0 once it has exited."""
        total = 0
        for pid in [self.pid, *descendants(self.pid)]:
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += sum(int(field) for field in fields[11:15])  # own and reaped children's
        return total / _CLOCK_TICKS

    def peak_rss_bytes(self) -> int | None:
        """The kernel's high-water marks of the resident sets (VmHWM) of the process and
        its children, added up: at most what they held at once."""
        peaks = []
        for pid in [self.pid, *descendants(self.pid)]:
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            match = re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)
            if match:
                peaks.append(int(match.group(1)) * 1024)
        return sum(peaks) if peaks else None

    def wait_for(self, condition: Callable[[], bool], timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while not condition():
            if not self.alive():
                raise RuntimeError(
                    f"{self.name} exited with {self.process.returncode} while waiting for "
                    f"{what}; last lines:\n{self.tail()}"
                )
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"{self.name}: no {what} within {timeout_s:.0f} s:\n{self.tail()}"
                )
            time.sleep(0.1)

    def stop(self, timeout_s: float = 20.0) -> int:
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


@contextlib.contextmanager
def services() -> Iterator[list[Service]]:
    """A list to put started services in; every one is stopped on the way out."""
    started: list[Service] = []
    try:
        yield started
    finally:
        for service in reversed(started):
            service.stop()


class CpuMeter:
    """CPU time of some processes over an interval, as a share of one core."""

    def __init__(self, services: Mapping[str, Service]) -> None:
        self._services = dict(services)
        self._started = time.monotonic()
        self._before = {name: s.cpu_seconds() for name, s in self._services.items()}

    def shares(self) -> dict[str, float]:
        elapsed = max(1e-9, time.monotonic() - self._started)
        return {
            name: round((s.cpu_seconds() - self._before[name]) / elapsed, 3)
            for name, s in self._services.items()
        }


def free_port() -> int:
    from livewindows.kafka.launcher import free_ports

    return free_ports(1)[0]


def wait_http_ok(url: str, timeout_s: float, service: Service) -> None:
    import urllib.error
    import urllib.request

    def ok() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    service.wait_for(ok, timeout_s, f"200 from {url}")


# --- profiles ------------------------------------------------------------------


def py_spy() -> str | None:
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


class Profiler:
    """py-spy sampling one process (and its children) for a while; `summary` gives
    the hottest frames."""

    def __init__(self, pid: int, seconds: float, out: Path, *, idle: bool = False) -> None:
        tool = py_spy()
        self.out = out  # py-spy's collapsed stacks (flamegraph.pl input); not committed
        self.process: subprocess.Popen[bytes] | None = None
        if tool is None:
            return
        argv = [tool, "record", "-p", str(pid), "-d", str(max(1, round(seconds))), "-r", "200",
                "--format", "raw", "--nonblocking", "--subprocesses", "-o", str(out)]  # fmt: skip
        if idle:
            argv.append("--idle")
        self.process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def summary(self, top: int = 12) -> dict[str, Any] | None:
        if self.process is None:
            return None
        try:
            self.process.wait(120)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return None
        if not self.out.exists():
            return None
        return summarize_stacks(self.out.read_text(errors="replace"), top)


def _frame_name(frame: str) -> str:
    # "function (path/to/module.py:123)" -> "function (module.py)"
    match = re.match(r"^(.*?) \((.*?)(?::\d+)?\)$", frame)
    if match is None:
        return frame
    function, where = match.groups()
    parts = where.split("/")
    short = "/".join(parts[-2:]) if "site-packages" not in where else parts[-1]
    if "site-packages/" in where:
        package = where.split("site-packages/", 1)[1].split("/", 1)[0]
        short = f"{package}:{parts[-1]}"
    return f"{function} ({short})"


def summarize_stacks(collapsed: str, top: int = 12) -> dict[str, Any]:
    """Self and inclusive shares of the hottest frames in py-spy's collapsed stacks."""
    self_counts: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_frame_name(f) for f in stack.split(";") if f]
        if frames and frames[0].startswith("process ") and "(" not in frames[0]:
            frames = frames[1:]  # py-spy's "process 123:..." header
        if not frames:
            continue
        total += count
        self_counts[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count

    def share(counter: Counter[str]) -> list[dict[str, Any]]:
        return [
            {"frame": frame, "share": round(count / total, 4)}
            for frame, count in counter.most_common(top)
        ]

    return {"samples": total, "self": share(self_counts), "inclusive": share(inclusive)}


# --- the machine ----------------------------------------------------------------


def machine() -> dict[str, Any]:
    """CPU, cores, memory and the versions the figures depend on."""
    import aiohttp
    import confluent_kafka

    from livewindows.kafka.runtime import KAFKA_VERSION

    cpu = platform.processor() or "unknown"
    with contextlib.suppress(OSError):
        found = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.M)
        if found:
            cpu = found.group(1).strip()
    memory_gib = None
    with contextlib.suppress(OSError):
        found = re.search(r"^MemTotal:\s+(\d+) kB", Path("/proc/meminfo").read_text(), re.M)
        if found:
            memory_gib = round(int(found.group(1)) / 1024**2, 1)
    java = "unknown"
    with contextlib.suppress(Exception):
        from livewindows.kafka.runtime import java_executable

        shown = (
            subprocess.run(
                [java_executable(), "-version"], capture_output=True, text=True, timeout=30
            )
            .stderr.strip()
            .splitlines()
        )
        java = shown[0] if shown else java
    faust_version = "unknown"
    with contextlib.suppress(Exception):
        from importlib.metadata import version

        faust_version = version("faust-streaming")
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": memory_gib,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "java": java,
        "kafka": KAFKA_VERSION,
        "confluent_kafka": str(confluent_kafka.version()),
        "librdkafka": confluent_kafka.libversion()[0],
        "aiohttp": aiohttp.__version__,
        "faust_streaming": faust_version,
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
