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
        "Prints 'bootstrap=127.0.0.1:PORT' once the cluster answers. With N >= 2 nodes, "
        "a node that dies is reported in one line and restarted while the others keep "
        "serving: after 1 s, or twice the previous pause (at most 60 s) when it had run "
        "less than 30 s. With one node, the launcher exits with code 1 when it dies. "
        "Ctrl-C or SIGTERM stops every node; <data-dir>/node-<i>/kafka.pid holds a "
        "running node's pid.",
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

    explain = commands.add_parser(
        "explain",
        help="one input's timeline: its events as the worker saw them, its windows and why",
        description="Print one input's timeline, computed by the worker's own runner over the "
        "input's partition of the events topic (every record of it: the watermark is per "
        "partition, so other inputs' events and the ticks count; only this input's are "
        "listed): each event with its received and occurred times, kind and provider event "
        "type, and whether it was applied, late (with the reason) or a duplicate; each window "
        "record it caused, with the rule that wrote it (reconnected or ended by event X, or "
        "timed out at opened_at + reconnect window once the watermark passed the opening "
        "event's received_at + reconnect window + grace). Uses WINDOW_GRACE_MS and "
        "RECONNECT_WINDOW_S as the worker does. Reads read_committed up to the end offsets "
        "at start, then exits; progress goes to stderr. Exits 1 if the input has no events "
        "there or Kafka cannot be read, 2 on a bad argument.",
    )
    explain.add_argument(
        "input", metavar="PROVIDER:INPUT_ID", help="the input, as its records' key: cloudflare:abc"
    )
    explain_start = explain.add_mutually_exclusive_group()
    explain_start.add_argument(
        "--from-beginning",
        action="store_true",
        help="read the partition from its first offset, as the worker did (default)",
    )
    explain_start.add_argument(
        "--from-timestamp",
        metavar="T",
        help="RFC 3339 time or epoch ms: start there with empty state (faster on a long "
        "partition, but what happened before T is not known, so outcomes may differ)",
    )
    explain.add_argument(
        "--format",
        choices=("text", "json"),
        default="text",
        help="text: a timeline for a terminal (default); json: one object "
        "(schema livewindows/explain/v1, see README)",
    )
    explain.set_defaults(handler=_entry("processor.explain_command:explain_command"))

    billing = commands.add_parser(
        "billing",
        help="reference billing consumer, billing statements per period",
        description="Without ACTION: consume the windows topic into disconnect_windows, "
        "per-input totals and per-input rollups of each local day and month in "
        "BILLING_TIMEZONE (default UTC), all in one database transaction per batch. "
        "Refuses to start if the rollups are kept in another zone (see rebuild-periods).",
    )
    db_help = (
        "sqlite:///relative/path, sqlite:////absolute/path or postgresql://... "
        "(default sqlite:///livewindows.db)"
    )
    billing.add_argument("--db", default="sqlite:///livewindows.db", metavar="URL", help=db_help)
    billing.add_argument(
        "--group",
        default="livewindows-billing",
        help="consumer group (default livewindows-billing)",
    )
    billing.add_argument(
        "--metrics-port",
        type=int,
        metavar="P",
        help="serve Prometheus metrics at http://0.0.0.0:P/metrics "
        "(default: BILLING_METRICS_PORT, else none)",
    )
    billing.set_defaults(handler=_entry("livewindows.billing.consumer:billing_command"))
    billing_commands = billing.add_subparsers(dest="billing_command", metavar="ACTION")
    report = billing_commands.add_parser(
        "report",
        help="a billing statement per input for a day or month (SPEC §7)",
        description="Print a statement per input for a calendar day or month of a time zone: "
        "closed windows that overlap it (count), billed milliseconds (each window's overlap "
        "with the period), the longest overlap, billed milliseconds by close_reason, and the "
        "opened_at of windows still open (shown, not billed). A window across midnight, a "
        "month's end or a DST change is split there. In the zone the consumer keeps rollups "
        "in the report reads them; in any other zone it computes from the window rows. "
        "Reads the database only; exits 1 if it holds no windows, 2 on a bad argument.",
    )
    report.add_argument(
        "--period",
        required=True,
        metavar="P",
        help="a month (2026-11) or a day (2026-11-30), local to the zone",
    )
    report.add_argument(
        "--tz",
        metavar="ZONE",
        help="IANA time zone of the period, e.g. Europe/Berlin (default BILLING_TIMEZONE, "
        "else UTC)",
    )
    report.add_argument(
        "--input", metavar="PROVIDER:ID", help="only this input, e.g. cloudflare:in1"
    )
    report.add_argument(
        "--format",
        choices=("table", "csv", "json"),
        default="table",
        help="table: for a terminal (default); csv: with a header row, for spreadsheets; "
        "json: one array of SPEC §7's objects",
    )
    # SUPPRESS: `billing --db X report` keeps X; `billing report --db Y` overrides it.
    report.add_argument("--db", default=argparse.SUPPRESS, metavar="URL", help=db_help)
    report.set_defaults(handler=_entry("livewindows.billing.report:report_command"))
    rebuild = billing_commands.add_parser(
        "rebuild-periods",
        help="recompute the period rollups from the window rows in another zone",
        description="Recompute every per-day and per-month rollup from the window rows in "
        "--tz (default BILLING_TIMEZONE) and record that zone, in one transaction: after "
        "changing BILLING_TIMEZONE, instead of replaying Kafka. Run the consumer with the "
        "same BILLING_TIMEZONE afterwards; one still running in the old zone stops at its "
        "next batch without writing it.",
    )
    rebuild.add_argument(
        "--tz", metavar="ZONE", help="IANA time zone (default BILLING_TIMEZONE, else UTC)"
    )
    rebuild.add_argument("--db", default=argparse.SUPPRESS, metavar="URL", help=db_help)
    rebuild.set_defaults(handler=_entry("livewindows.billing.report:rebuild_command"))

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
    send.set_defaults(handler=_entry("producer.sample_webhooks:send_command"))
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
        code = int(args.handler(args, settings))
        sys.stdout.flush()  # here, where a closed pipe is caught below, not at exit
        return code
    except ConfigError as exc:
        print(f"livewindows: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `| head`: the reader has what it wanted. What is left in stdout's buffer
        # goes nowhere, not into a traceback at exit (see the `signal` module's
        # note on SIGPIPE).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())
