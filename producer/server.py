"""`livewindows serve`: the producer app behind a real listener.

It refuses to start rather than serve an open or useless endpoint: every
webhook secret must be configured (exit 2 through `ConfigError`) and Kafka must
answer with the events topic in place (exit 1). SIGTERM and SIGINT stop it
gracefully: in-flight requests finish, queued records are flushed.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import signal
import subprocess
import sys
import time
from types import FrameType
from typing import Any

from aiohttp import web

from plumbing.logs import configure_logging
from plumbing.settings import ConfigError, Settings
from plumbing.tracing import configure_tracing
from producer import auth
from producer.app import create_app
from producer.publisher import probe

log = logging.getLogger("livewindows.producer")

__all__ = ["RUNNER_OPTIONS", "check_config", "serve_command"]

# Options every runner of the app must pass (run_app, AppRunner, TestServer):
# aiohttp's access log prints the request path, and a path may carry a token.
# The app logs one line per request itself (DEBUG below 400, WARNING from 400),
# naming the route pattern instead.
RUNNER_OPTIONS: dict[str, Any] = {"access_log": None}

# Allocations between collections of the youngest generation (Python's default: 700).
GC_THRESHOLD_0 = 20_000

# How long start-up waits for Kafka to answer before giving up.
STARTUP_PROBE_S = 5.0


def check_config(settings: Settings) -> None:
    """Raises `ConfigError` (one line) when a secret is missing or unusable."""
    missing = auth.missing_secrets(settings)
    if missing:
        raise ConfigError(
            f"missing secret(s) {', '.join(missing)}: refusing to serve unauthenticated endpoints"
        )
    auth.Credentials.from_settings(settings)  # a FastPix secret must be base64


def serve_command(args: argparse.Namespace, settings: Settings) -> int:
    check_config(settings)
    if args.workers < 1:
        raise ConfigError("--workers must be at least 1")
    problem = probe(settings.kafka_bootstrap_servers, settings.events_topic, STARTUP_PROBE_S)
    if problem is not None:
        print(
            f"livewindows: Kafka at {settings.kafka_bootstrap_servers}: {problem}",
            file=sys.stderr,
        )
        return 1
    if args.workers > 1:
        return _supervise(args, settings)
    configure_logging(settings, service="producer", level=logging.INFO)
    host, port = args.host, args.port
    app = create_app(settings, tracer_provider=configure_tracing("livewindows-producer"))
    app.on_startup.append(_stop_once)
    # What start-up made (modules, app, settings) lives as long as the process:
    # out of the collector's sight, full collections skip it. At saturation they
    # took ~7% of the CPU, most of it rescanning these objects.
    gc.collect()
    gc.freeze()
    # Each webhook allocates a few hundred objects (its JSON, the redacted copy,
    # aiohttp's request and response), nearly all freed by reference counting
    # before a collection would find them. A larger first generation lets them
    # go before the collector walks them; the rare cycles are still collected.
    gc.set_threshold(GC_THRESHOLD_0, *gc.get_threshold()[1:])
    web.run_app(
        app,
        host=host,
        port=port,
        **RUNNER_OPTIONS,
        # In-flight requests may wait up to the publish timeout for their ack.
        shutdown_timeout=settings.publish_timeout_ms / 1000 + 1,
        reuse_port=args.reuse_port or None,
        print=lambda _text: print(
            f"livewindows producer listening on http://{host}:{port}", flush=True
        ),
    )
    return 0


async def _stop_once(_app: web.Application) -> None:
    """The first SIGTERM/SIGINT stops the server; later ones while it stops do nothing.

    aiohttp's own handlers stay in place during the stop, and a second signal
    would abort it: in-flight requests dropped unanswered, queued records never
    flushed. A process group signalled as a whole (Ctrl-C, systemd) gets a signal
    from there and another from the `--workers` supervisor. Installed at start-up,
    after aiohttp's, which it replaces.
    """
    loop = asyncio.get_running_loop()

    def again() -> None:
        log.info("already stopping: answering the requests in flight first")

    def first() -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, again)
        raise web.GracefulExit()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, first)


def _supervise(args: argparse.Namespace, settings: Settings) -> int:
    """Run `--workers` copies of the server on one port and stop them together.

    Each process has its own idempotent Kafka producer, so webhooks of one input
    that arrive at the same moment on two processes may be written in either
    order; the processor's grace (which orders by `occurred_at` within it)
    absorbs that, as it does for several producer replicas behind a balancer.
    """
    argv = [sys.executable, "-m", "livewindows.cli"]
    if args.kafka_bootstrap_servers:
        argv += ["--bootstrap-servers", args.kafka_bootstrap_servers]
    if args.env_file:
        argv += ["--env-file", args.env_file]
    argv += ["serve", "--host", args.host, "--port", str(args.port), "--reuse-port"]
    children = [subprocess.Popen(argv) for _ in range(args.workers)]
    stopping = False

    def stop(_signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        while not stopping and all(child.poll() is None for child in children):
            time.sleep(0.2)
    finally:
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        # A child may take the publish timeout to answer what is in flight, then
        # to flush: killed only well after that.
        patience_s = 2 * settings.publish_timeout_ms / 1000 + 10
        for child in children:
            try:
                child.wait(patience_s)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    # A child the stop reached before it had installed its handlers (still starting,
    # no listener yet) dies of that SIGTERM: a clean stop too.
    clean = stopping and all(child.returncode in (0, -signal.SIGTERM) for child in children)
    if not clean:
        codes = ", ".join(str(child.returncode) for child in children)
        print(f"livewindows: producer processes exited ({codes})", file=sys.stderr)
    return 0 if clean else 1
