"""The Kafka runtime: Java, and Kafka's jars resolved once from Maven Central.

The jars come from the packaged `pom.xml` through `mvn dependency:copy-dependencies`
into `$LIVEWINDOWS_CACHE_DIR/kafka-<version>/lib` (default `~/.cache/livewindows`);
the copy of the pom next to `lib/` is written last and marks the cache complete,
so an interrupted resolution is redone and a changed pom re-resolves.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from importlib import resources
from pathlib import Path

KAFKA_VERSION = "4.3.1"
MIN_JAVA = 17
CACHE_ENV = "LIVEWINDOWS_CACHE_DIR"


class LauncherError(Exception):
    """Kafka could not be set up or started: a one-line message for the operator."""


def cache_dir() -> Path:
    """Where resolved jars live: `$LIVEWINDOWS_CACHE_DIR` or `~/.cache/livewindows`."""
    configured = os.environ.get(CACHE_ENV)
    if configured:
        return Path(configured).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "livewindows"


def progress(message: str) -> None:
    print(f"livewindows kafka: {message}", file=sys.stderr, flush=True)


def java_executable() -> str:
    """The `java` to run (JAVA_HOME first, then PATH), checked to be Java 17 or newer."""
    java_home = os.environ.get("JAVA_HOME")
    candidate = Path(java_home) / "bin" / "java" if java_home else None
    java = str(candidate) if candidate and candidate.is_file() else shutil.which("java")
    if java is None:
        raise LauncherError(
            f"java not found: install a Java {MIN_JAVA}+ runtime (e.g. apt-get install "
            "openjdk-17-jre-headless) or set JAVA_HOME"
        )
    try:
        shown = subprocess.run(
            [java, "-version"], capture_output=True, text=True, timeout=30, check=False
        ).stderr
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise LauncherError(f"cannot run {java}: {exc}") from None
    match = re.search(r'version "(\d+)(?:\.(\d+))?', shown)
    if match is None:
        raise LauncherError(f"cannot tell the Java version of {java}")
    major = int(match.group(1))
    if major == 1 and match.group(2):  # "1.8.0_392" is Java 8
        major = int(match.group(2))
    if major < MIN_JAVA:
        raise LauncherError(f"Kafka {KAFKA_VERSION} needs Java {MIN_JAVA}+, {java} is Java {major}")
    return java


def _pom() -> bytes:
    return resources.files("livewindows.kafka").joinpath("pom.xml").read_bytes()


def ensure_jars(report: Callable[[str], None] = progress) -> Path:
    """The directory of Kafka's jars, resolved from Maven Central on first use only."""
    home = cache_dir() / f"kafka-{KAFKA_VERSION}"
    lib = home / "lib"
    pom = _pom()
    if _resolved(home, pom):
        return lib
    home.mkdir(parents=True, exist_ok=True)
    with open(home / ".lock", "w") as lock:
        # Concurrent first runs (parallel test sessions) resolve once; the others wait.
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _resolved(home, pom):
            return lib
        mvn = shutil.which("mvn")
        if mvn is None:
            raise LauncherError(
                "mvn not found: install Maven (e.g. apt-get install maven) to fetch Kafka's jars"
            )
        report(f"resolving Apache Kafka {KAFKA_VERSION} jars from Maven Central (first run only)")
        started = time.monotonic()
        staging = Path(tempfile.mkdtemp(prefix="resolve-", dir=home))
        try:
            (staging / "pom.xml").write_bytes(pom)
            result = subprocess.run(
                [
                    mvn,
                    "-B",
                    "-q",
                    "-f",
                    str(staging / "pom.xml"),
                    "dependency:copy-dependencies",
                    "-DincludeScope=runtime",
                    f"-DoutputDirectory={staging / 'lib'}",
                ],
                capture_output=True,
                text=True,
                check=False,
            )
            if result.returncode != 0:
                tail = " | ".join((result.stdout + result.stderr).strip().splitlines()[-3:])
                raise LauncherError(f"mvn could not resolve Kafka's jars: {tail}")
            if lib.exists():
                shutil.rmtree(lib)
            (staging / "lib").rename(lib)
            (home / "pom.xml").write_bytes(pom)  # written last: marks the cache complete
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        count = len(list(lib.glob("*.jar")))
        report(f"{count} jars in {lib} ({time.monotonic() - started:.0f} s)")
    return lib


def _resolved(home: Path, pom: bytes) -> bool:
    marker = home / "pom.xml"
    return marker.is_file() and marker.read_bytes() == pom and (home / "lib").is_dir()


def java_command(main_class: str, *args: str, heap_mb: int = 512) -> list[str]:
    """A command running `main_class` of the Kafka runtime, e.g. a tool for a benchmark:
    `java_command("org.apache.kafka.tools.ProducerPerformance", "--topic", ...)`."""
    lib = ensure_jars()
    return [java_executable(), f"-Xmx{heap_mb}m", *log_options(), "-cp", f"{lib}/*",
            main_class, *args]  # fmt: skip


def log_options() -> list[str]:
    config = resources.files("livewindows.kafka").joinpath("log4j2.xml")
    return [f"-Dlog4j2.configurationFile={config}", "-Djava.awt.headless=true"]
