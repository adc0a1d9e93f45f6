"""`livewindows worker`: the processor app run as a Faust worker.

Before either engine starts, a short metadata request checks that Kafka answers
and that the four topics exist, and the consumer group is checked for workers of
the other engine (`processor.group`), so the common mistakes end in one line
instead of a traceback or an endless retry loop; the metadata also gives the
events topic's real partition count, which the state's changelog must match.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from plumbing.clients import admin_config
from plumbing.logs import configure_logging
from plumbing.processes import FATAL_EXIT_CODE, collect_young_garbage_less_often, exit_now
from plumbing.settings import ConfigError, Settings
from plumbing.topics import adopt_topic_config
from plumbing.tracing import configure_tracing
from processor.changelog import CHANGELOG_CONFIG, changelog_topic
from processor.datadir import DataDirInUse, open_data_dir, transactional_id
from processor.group import (
    patience_s,
    wait_for_group,
)
from processor.metrics import METRICS_HOST, serve_metrics
from processor.restore import ensure_changelog
from processor.transactions import Fenced, report_fenced

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

__all__ = ["DEFAULT_DATA_DIR", "worker_command"]

DEFAULT_DATA_DIR = Path(".data/worker")
log = logging.getLogger("livewindows.worker")
_METADATA_TIMEOUT_S = 5.0


class KafkaUnavailable(Exception):
    """Kafka did not answer a metadata request."""


def worker_command(args: argparse.Namespace, settings: Settings) -> int:
    data_dir = Path(args.data_dir or DEFAULT_DATA_DIR).resolve()
    engine = getattr(args, "engine", None) or settings.processor_engine
    metrics_port = getattr(args, "metrics_port", None)
    if metrics_port is None:
        metrics_port = settings.processor_metrics_port
    elif not 1 <= metrics_port <= 65535:
        raise ConfigError(f"--metrics-port must be 1-65535, not {metrics_port}")
    _configure_logging()
    try:
        admin = _admin_client(settings)
        partitions = events_partitions(admin, settings)
        patience = patience_s(settings.processor_session_timeout_ms)
        wait_for_group(admin, settings.processor_app_id, engine, patience)
        # The changelog is created with CHANGELOG_CONFIG; one that exists is not
        # altered, but an earlier version's has the broker's 1 GiB segments.
        ensure_changelog(settings, partitions)
        adopt_topic_config(
            settings.kafka_bootstrap_servers,
            changelog_topic(settings.processor_app_id),
            CHANGELOG_CONFIG,
        )
        if engine == "kafka":
            open_data_dir(data_dir)
            txn_id = transactional_id(data_dir, settings.processor_app_id)
        else:
            # only this engine imports Faust
            from processor.app import create_app, highwater, run_faust

            log.info("engine faust: joining consumer group %s", settings.processor_app_id)
            app, runtime = create_app(settings, data_dir, partitions=partitions)
            if metrics_port is not None:
                end_offset = highwater(app, settings.events_topic)
                serve_metrics(
                    METRICS_HOST,
                    metrics_port,
                    lambda: runtime.counts,
                    lambda now_ms: runtime.gauges(end_offset, now_ms),
                )
    except KafkaUnavailable as exc:
        print(f"livewindows worker: {exc}", file=sys.stderr)
        return 1
    except DataDirInUse as exc:
        raise ConfigError(str(exc)) from None
    except OSError as exc:
        raise ConfigError(f"cannot use data dir {data_dir}: {exc.strerror or exc}") from None
    if engine == "kafka":
        # (the Faust engine's runtime process configures its own)
        return _run_kafka_engine(
            settings, txn_id, metrics_port, configure_tracing("livewindows-worker")
        )
    return run_faust(app, admin, settings.processor_app_id, patience)


def _run_kafka_engine(
    settings: Settings,
    txn_id: str,
    metrics_port: int | None,
    tracing: TracerProvider | None,
) -> int:
    """The confluent-kafka engine (`processor.kafka_worker`); exit 70 on a fatal error."""
    from processor.kafka_worker import KafkaWorker

    log.info("engine kafka: transactional.id %s", txn_id)
    collect_young_garbage_less_often()
    try:
        worker = KafkaWorker(settings, txn_id, tracer_provider=tracing)
        if metrics_port is not None:
            serve_metrics(METRICS_HOST, metrics_port, lambda: worker.stored_counts, worker.gauges)
        clean = worker.run()
    except ConfigError:
        raise
    except Fenced as exc:
        return report_fenced(exc)
    except Exception as exc:
        log.critical("fatal error, stopping: %r", exc, exc_info=exc)
        return FATAL_EXIT_CODE
    if not clean:  # Kafka is unreachable: its clients would hold the exit up
        exit_now(0)
    return 0


def _admin_client(settings: Settings) -> AdminClient:
    # librdkafka would print every failed connection attempt to stderr.
    return AdminClient(
        admin_config(settings.kafka_bootstrap_servers, _silent("livewindows.worker.admin"))
    )


def events_partitions(admin: AdminClient, settings: Settings) -> int:
    """Partition count of the events topic; raises if Kafka or a topic is missing."""
    try:
        metadata = admin.list_topics(timeout=_METADATA_TIMEOUT_S)
    except KafkaException as exc:
        raise KafkaUnavailable(
            f"cannot reach Kafka at {settings.kafka_bootstrap_servers}: {exc.args[0].str()}"
        ) from None
    missing = [topic for topic in settings.topics if topic not in metadata.topics]
    if missing:
        raise ConfigError(
            f"missing topic(s) {', '.join(missing)} (run 'livewindows topics create')"
        )
    return len(metadata.topics[settings.events_topic].partitions)


def _configure_logging() -> None:
    """Warnings from the libraries (a repeated one once per 10 s), INFO from livewindows:
    the lines an operator reads."""
    configure_logging(service="worker", level=logging.WARNING, own_level=logging.INFO)


def _silent(name: str) -> logging.Logger:
    logger = logging.getLogger(name)
    logger.propagate = False
    logger.addHandler(logging.NullHandler())
    return logger
