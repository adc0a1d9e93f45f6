"""Fault tests of the whole pipeline under load: `make chaos` (`python -m tests.chaos`).

A 3-node local cluster (`livewindows kafka start --brokers 3`, replication 3,
min.insync 2), the producer (`livewindows serve`) taking signed webhooks of the
three providers from a load generator, and two workers of each engine in turn,
each round on its own topics and app id. During the load, brokers, workers
(some restarted without their data dir) and the producer are killed with
SIGKILL and started again; then `rounds.py` checks that no accepted webhook was
lost and that the windows are exactly the core's. `tests/test_chaos.py` runs a
short version in `make test`.

- processes.py: the cluster, producer and worker processes, killed and restarted;
- load.py: the webhook senders, retrying as providers do, recording each 202;
- rounds.py: a round's plan of faults, its checks and the summary.
"""
