"""One Kafka per test session, started only if a collected test asks for it.

`kafka_bootstrap` is, in order of preference: `KAFKA_BOOTSTRAP_SERVERS` from the
environment; a testcontainers `KafkaContainer` when a Docker daemon answers; else
a real Kafka from the local launcher (Maven Central jars, needs Java 17+) on free
loopback ports with its data in a temp dir, shared by the pytest-xdist workers of a
run (`make test` runs two). Tests that use it are marked `kafka` automatically, so
`pytest -m "not kafka"` runs without a broker.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator

import pytest
from hypothesis import HealthCheck, settings

from livewindows.kafka.launcher import KafkaCluster, LauncherError
from plumbing.topics import ensure_topics
from tests.localkafka import SharedBroker, Supervised, start_cluster, supervised_cluster

# Property tests have no per-example deadline: one stall of a busy CI host is not a
# failure. On top of the profile Hypothesis chose (its "ci" one when CI is set:
# derandomized).
settings.register_profile(
    "livewindows",
    parent=settings(),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("livewindows")

BOOTSTRAP_ENV = "KAFKA_BOOTSTRAP_SERVERS"


# The brokers this xdist worker shares with the others of its run (`make test`
# runs two, tests/localkafka.py `SharedBroker`): stopped after the last test.
_SHARED: list[SharedBroker] = []


@pytest.hookimpl(tryfirst=True)  # before xdist's, which reads the groups
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        fixtures = getattr(item, "fixturenames", ())
        if "kafka_bootstrap" in fixtures:
            item.add_marker(pytest.mark.kafka)
        # Under `--dist loadgroup` one xdist worker runs each group, so an expensive
        # fixture is set up once per run, not once per worker: the 3-node cluster,
        # and a module's own (tests/bench's quick benchmarks run for a minute).
        if "three_node_cluster" in fixtures:
            item.add_marker(pytest.mark.xdist_group("three_node_cluster"))
            item.add_marker(pytest.mark.alone)  # it kills and restarts nodes
        elif _uses_a_module_fixture(item):
            item.add_marker(pytest.mark.xdist_group(item.nodeid.split("::")[0]))


def _uses_a_module_fixture(item: pytest.Item) -> bool:
    info = getattr(item, "_fixtureinfo", None)
    defs = info.name2fixturedefs.values() if info is not None else ()
    return any(d[-1].scope == "module" for d in defs)


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish() -> None:
    for broker in _SHARED:
        broker.stop_when_unused()


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Bootstrap servers of this session's Kafka (one broker, replication 1); under
    pytest-xdist, of the one broker every worker of the run shares."""
    configured = os.environ.get(BOOTSTRAP_ENV)
    if configured:
        yield configured
        return
    if _docker_answers():
        from testcontainers.community.kafka import KafkaContainer

        # One broker: the transaction log must fit it too (the kafka engine's
        # transactions), as the local launcher configures its single node.
        container = (
            KafkaContainer("confluentinc/cp-kafka:7.6.0")
            .with_kraft()
            .with_env("KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR", "1")
            .with_env("KAFKA_TRANSACTION_STATE_LOG_MIN_ISR", "1")
        )
        with container:
            yield container.get_bootstrap_server()
        return
    if os.environ.get("PYTEST_XDIST_WORKER"):
        broker = SharedBroker(tmp_path_factory.getbasetemp().parent, _local_cluster)
        _SHARED.append(broker)
        try:
            yield broker.join()
        finally:
            broker.leave()
        return
    cluster = _local_cluster()
    try:
        yield cluster.bootstrap
    finally:
        cluster.stop()


def _docker_answers() -> bool:
    try:
        import docker

        client = docker.from_env(timeout=2)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:
        return False


def _local_cluster() -> KafkaCluster:
    try:
        return start_cluster()
    except LauncherError as error:
        pytest.fail(f"no Kafka for the tests: {error} (or set {BOOTSTRAP_ENV})", pytrace=False)


@pytest.fixture(scope="session")
def three_node_cluster() -> Iterator[Supervised]:
    """A local 3-node cluster (every node broker and controller) whose nodes are
    restarted when they die, for the tests of start-up races and faults; started
    on first use. Its topics get replication 3 when the tests ask for it."""
    try:
        with supervised_cluster(3) as supervised:
            yield supervised
    except LauncherError as error:
        pytest.fail(f"no 3-node Kafka for the tests: {error}", pytrace=False)


@pytest.fixture
def make_topics(kafka_bootstrap: str) -> Callable[..., list[str]]:
    """`make_topics("events", "windows", partitions=3)` -> fresh, uniquely named topics."""

    def make(*prefixes: str, partitions: int = 1) -> list[str]:
        suffix = uuid.uuid4().hex[:12]
        names = [f"{prefix}-{suffix}" for prefix in prefixes]
        ensure_topics(kafka_bootstrap, names, partitions, 1)
        return names

    return make
