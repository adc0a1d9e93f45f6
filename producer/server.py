"""`livewindows serve`: the producer app behind a real listener.

It refuses to start rather than serve an open or useless endpoint: every
webhook secret must be configured (exit 2 through `ConfigError`) and Kafka must
answer with the events topic in place (exit 1). SIGTERM and SIGINT stop it
gracefully: in-flight requests finish, queued records are flushed.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

from aiohttp import web

from livewindows.settings import ConfigError, Settings
from producer import auth
from producer.app import create_app
from producer.publisher import probe

__all__ = ["RUNNER_OPTIONS", "check_config", "serve_command"]

# Options every runner of the app must pass (run_app, AppRunner, TestServer):
# aiohttp's access log prints the request path, and a path may carry a token.
# The app logs one line per request itself, naming the route pattern instead.
RUNNER_OPTIONS: dict[str, Any] = {"access_log": None}

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
    problem = probe(settings.kafka_bootstrap_servers, settings.events_topic, STARTUP_PROBE_S)
    if problem is not None:
        print(
            f"livewindows: Kafka at {settings.kafka_bootstrap_servers}: {problem}",
            file=sys.stderr,
        )
        return 1
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s"
        )
    host, port = args.host, args.port
    web.run_app(
        create_app(settings),
        host=host,
        port=port,
        **RUNNER_OPTIONS,
        # In-flight requests may wait up to the publish timeout for their ack.
        shutdown_timeout=settings.publish_timeout_ms / 1000 + 1,
        print=lambda _text: print(
            f"livewindows producer listening on http://{host}:{port}", flush=True
        ),
    )
    return 0
