"""The `livewindows` console script (SPEC §6).

Each sub-command is a thin entry `module:function(args, settings) -> exit code`,
imported only when chosen so `livewindows --help` stays fast and a command does
not pay for another's dependencies.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Sequence

from plumbing.logs import LOG_FORMAT_ENV
from plumbing.settings import ConfigError, Settings, load_settings

Handler = Callable[[argparse.Namespace, Settings], int]

_DESCRIPTION = """\
livewindows turns live-video provider webhooks (Cloudflare Stream Live, FastPix,
Gjirafa VP) into exact, replayable disconnect windows per live input, over Kafka.

Configuration comes from the environment (KAFKA_BOOTSTRAP_SERVERS, VIDEO_EVENTS_TOKEN,
WINDOW_GRACE_MS, ... see README); flags override it.
"""


def _entry(target: str) -> Handler:
    module_name, _, function = target.partition(":")

    def run(args: argparse.Namespace, settings: Settings) -> int:
        handler: Handler = getattr(importlib.import_module(module_name), function)
        return handler(args, settings)

    return run


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="livewindows",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--bootstrap-servers",
        dest="kafka_bootstrap_servers",
        metavar="HOST:PORT",
        help="Kafka bootstrap servers (env KAFKA_BOOTSTRAP_SERVERS, default 127.0.0.1:9092)",
    )
    parser.add_argument(
        "--env-file",
        metavar="FILE",
        help="read settings from this KEY=value file too (the environment wins); "
        "'livewindows dev' writes one with its development secrets",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    kafka = commands.add_parser(
        "kafka", help="a local Apache Kafka (KRaft) from Maven Central jars"
    )
    kafka_commands = kafka.add_subparsers(dest="kafka_command", metavar="ACTION", required=True)
    start = kafka_commands.add_parser(
        "start",
        help="start Kafka in the foreground until SIGTERM/Ctrl-C",
        description="Start a real Apache Kafka in KRaft mode on loopback, no Docker. "
        "Prints 'bootstrap=127.0.0.1:PORT' once the cluster answers.",
    )
    start.add_argument("--brokers", type=int, default=1, metavar="N", help="nodes (default 1)")
    start.add_argument(
        "--port",
        type=int,
        default=9092,
        metavar="P",
        help="first broker port (default 9092; node i listens on P+i)",
    )
    start.add_argument("--data-dir", metavar="D", help="logs and data (default: a temp dir)")
    start.set_defaults(handler=_entry("livewindows.kafka.launcher:start_command"))

    topics = commands.add_parser("topics", help="manage the four topics")
    topic_commands = topics.add_subparsers(dest="topics_command", metavar="ACTION", required=True)
    create = topic_commands.add_parser(
        "create",
        help="create the events, windows, late and DLQ topics (idempotent)",
        description="Create the four topics with TOPIC_PARTITIONS and TOPIC_REPLICATION; "
        "existing topics are left as they are.",
    )
    create.set_defaults(handler=_entry("plumbing.topics:create_command"))

    serve = commands.add_parser(
        "serve", help="run the webhook producer (aiohttp)", description="Run the producer."
    )
    serve.add_argument("--host", default="0.0.0.0", help="listen address (default 0.0.0.0)")
    serve.add_argument("--port", type=int, default=8080, help="listen port (default 8080)")
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="processes sharing the port (SO_REUSEPORT), each with its own Kafka producer; "
        "one process uses about one core (default 1)",
    )
    serve.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)
    serve.set_defaults(handler=_entry("producer.server:serve_command"))

    worker = commands.add_parser(
        "worker",
        help="run the window processor (Faust worker)",
        description="Run the processor: events topic -> window core -> windows topic, with "
        "state in the changelog topic <PROCESSOR_APP_ID>-state-changelog. Workers with the "
        "same PROCESSOR_APP_ID share the partitions. Stops cleanly on SIGTERM or Ctrl-C.",
    )
    worker.add_argument(
        "--data-dir", metavar="D", help="local state and lock (default ./.data/worker)"
    )
    worker.add_argument(
        "--engine",
        choices=("faust", "kafka"),
        help="faust: the Faust worker; kafka: the same core on a confluent-kafka loop with one "
        "Kafka transaction per batch (exactly-once, several times the throughput). Both "
        "read the same changelog; faust -> kafka is a supported move, not back. "
        "(default: PROCESSOR_ENGINE, else faust)",
    )
    worker.add_argument(
        "--metrics-port",
        type=int,
        metavar="P",
        help="serve Prometheus metrics at http://0.0.0.0:P/metrics "
        "(default: PROCESSOR_METRICS_PORT, else none)",
    )
    worker.set_defaults(handler=_entry("processor.worker:worker_command"))

    replay = commands.add_parser(
        "replay",
        help="recompute windows from the events topic into another topic",
        description="Recompute windows from the events topic with fresh state, through the "
        "same core as the worker, write them to --output-topic, exit when caught up. "
        "Partitions replay in parallel, one process per group of partitions (--jobs); "
        "each output key gets the same records in the same order whatever the job count.",
    )
    start_at = replay.add_mutually_exclusive_group(required=True)
    start_at.add_argument("--from-beginning", action="store_true", help="every partition from 0")
    start_at.add_argument("--from-offset", type=int, metavar="N", help="every partition from N")
    start_at.add_argument("--from-timestamp", metavar="T", help="RFC 3339 time or epoch ms")
    replay.add_argument("--output-topic", required=True, metavar="T2", help="where windows go")
    replay.add_argument(
        "--jobs",
        type=int,
        metavar="N",
        help="processes that share the partitions (default: one per CPU, at most one per "
        "partition with records to replay); 1 replays in this process",
    )
    replay.set_defaults(handler=_entry("processor.replay:replay_command"))

    billing = commands.add_parser(
        "billing",
        help="reference billing consumer: windows topic into a SQL table",
        description="Consume the windows topic into disconnect_windows and per-input totals.",
    )
    billing.add_argument(
        "--db",
        default="sqlite:///livewindows.db",
        metavar="URL",
        help="sqlite:///relative/path, sqlite:////absolute/path or postgresql://... "
        "(default sqlite:///livewindows.db)",
    )
    billing.add_argument(
        "--group",
        default="livewindows-billing",
        help="consumer group (default livewindows-billing)",
    )
    billing.set_defaults(handler=_entry("livewindows.billing.consumer:billing_command"))

    dev = commands.add_parser(
        "dev",
        help="Kafka, topics, producer, worker and billing in one command",
        description="Start everything locally for a first try; Ctrl-C stops it all.",
    )
    dev.add_argument("--port", type=int, default=8080, help="producer port (default 8080)")
    dev.add_argument("--kafka-port", type=int, default=9092, help="Kafka port (default 9092)")
    dev.add_argument("--data-dir", default=".data/dev", metavar="D", help="(default .data/dev)")
    dev.set_defaults(handler=_entry("livewindows.dev:dev_command"))

    send = commands.add_parser(
        "send-test-events",
        help="send signed sample webhooks like a provider would",
        description="Send a realistic, signed sequence of a provider's webhooks to a producer.",
    )
    send.add_argument("--provider", required=True, choices=("cloudflare", "fastpix", "gjirafa"))
    send.add_argument("--url", required=True, metavar="U", help="producer base URL")
    send.add_argument("--input", metavar="ID", help="live input id (default: a random one)")
    send.set_defaults(handler=_entry("producer.test_events:send_command"))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings(
            env_file=args.env_file, kafka_bootstrap_servers=args.kafka_bootstrap_servers
        )
        # The worker's and replay's logging setups are given no settings, and
        # replay's jobs are processes of their own: the format reaches them here,
        # an --env-file's included.
        os.environ[LOG_FORMAT_ENV] = settings.log_format
        return int(args.handler(args, settings))
    except ConfigError as exc:
        print(f"livewindows: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
