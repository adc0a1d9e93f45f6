"""A short chaos run in `make test`: webhooks under load while a worker, a broker
node and the producer are killed; nothing accepted is lost, no window is wrong.

`make chaos` runs the long version (tests/chaos/: every kind of fault several
times, data dirs lost, the engines in turn); this one runs both engines at once
on the session's 3-node cluster, one fault of each kind, within about 90 s.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chaos.processes import SharedCluster
from tests.chaos.rounds import SHORT, run_rounds, summary
from tests.localkafka import Supervised

pytestmark = pytest.mark.kafka


@pytest.mark.timeout(420)
def test_a_short_chaos_run_loses_no_accepted_webhook_and_writes_the_cores_windows(
    three_node_cluster: Supervised, tmp_path: Path
) -> None:
    cluster = SharedCluster(three_node_cluster)
    results = run_rounds(cluster, ["faust", "kafka"], SHORT, tmp_path, print)
    print(summary(results, cluster))
    for result in results:
        assert result.problems == [], result.engine
        assert result.answered_202 > 0 and result.windows > 0
        assert (result.faults["worker"], result.faults["producer"]) == (1, 1)
        assert result.worker_restarts == result.producer_restarts == 1
    assert cluster.kills == 1 and cluster.restarts == 1
