"""The runtime's restore and commit, against in-memory fakes of Kafka (no broker).

The claim under test is `processor.runtime`'s: whoever owns a partition, however
often it is restored, rewound or restarted, the committed outputs are the ones an
uninterrupted run commits, byte for byte, and the changelog resumes it exactly.
"""

from __future__ import annotations

import logging

import pytest
from hypothesis import given
from hypothesis import strategies as st

from processor.changelog import Position, Wal, encode_input, encode_wal_parts, fold, wal_key
from processor.runner import Fetched, PartitionRunner
from processor.runtime import Runtime
from processor.windows import Config, PartitionState, process
from tests.kafkakit import event_value, tick_value
from tests.processor.fakes import FakeKafka, fetched

CONFIG = Config(grace_ms=1000, reconnect_window_s=5)
T = 1_790_000_000_000
EVENTS = "events"


def scenario(inputs: int = 3) -> list[tuple[bytes, bytes]]:
    """Per input: connect, disconnect, reconnect, disconnect, time out; then a late tick."""
    records: list[tuple[bytes, bytes]] = []
    for step, (kind, at) in enumerate(
        [("connected", 0), ("disconnected", 2000), ("connected", 4000), ("disconnected", 6000)]
    ):
        for n in range(inputs):
            records.append(event_value(f"e{n}-{step}", kind, T + at + n, input_id=f"in{n}"))
        records.append(tick_value(T + at + 1500))
    records.append(event_value("e0-0", "connected", T, T + 7000, input_id="in0"))  # duplicate
    records.append((b"cloudflare:bad", b"{not json"))  # to the DLQ
    records.append(tick_value(T + 60_000))  # every window times out
    return records


def runtime(kafka: FakeKafka) -> Runtime:
    return Runtime(CONFIG, EVENTS, kafka, kafka, kafka)


def run_all(rt: Runtime, records: list[Fetched], batch_size: int) -> None:
    """Feed the partition's records from its position in batches, seeking back on a rewind."""
    at = rt.parts[0].next_offset
    while at < len(records):
        chunk = records[at : at + batch_size]
        rewind = rt.handle({0: chunk})
        at = rewind.offsets[0] if rewind is not None else chunk[-1].offset + 1


def uninterrupted() -> FakeKafka:
    kafka = FakeKafka()
    rt = runtime(kafka)
    rt.assign([0])
    run_all(rt, fetched(scenario()), 1000)
    return kafka


def test_an_uninterrupted_run_writes_windows_late_and_dlq_and_stores_its_position() -> None:
    kafka = uninterrupted()
    destinations = [w.destination for w in kafka.outputs]
    assert destinations.count("windows") == 12  # 3 inputs x 2 windows x opened/closed
    assert destinations.count("dlq") == 1
    stored = fold(0, kafka.changelog[0])
    assert stored.position is not None
    assert stored.position.next_offset == len(scenario())
    assert kafka.fenced == [0]


@given(
    batch_size=st.integers(1, 9),
    restarts=st.lists(st.integers(0, 30), max_size=4),
)
def test_restored_from_the_changelog_at_any_batch_the_outputs_are_the_same(
    batch_size: int, restarts: list[int]
) -> None:
    """A new owner (a restart, a rebalance) restores from the changelog alone."""
    records = fetched(scenario())
    kafka = FakeKafka()
    rt = runtime(kafka)
    rt.assign([0])
    for stop in sorted(restarts):
        at = rt.parts[0].next_offset
        while at < min(stop, len(records)):
            chunk = records[at : at + batch_size]
            rt.handle({0: chunk})
            at = chunk[-1].offset + 1
        rt = runtime(kafka)  # the old one is gone with its memory
        rt.assign([0])
    run_all(rt, records, batch_size)
    assert kafka.outputs == uninterrupted().outputs


def test_an_aborted_batch_is_rewound_and_written_once_byte_identical() -> None:
    records = fetched(scenario())
    kafka = FakeKafka(aborts_to_come=2)
    rt = runtime(kafka)
    rt.assign([0])
    rewind = rt.handle({0: records[:10]})
    assert rewind is not None and rewind.offsets == {0: 0}
    rewind = rt.handle({0: records[:10]})
    assert rewind is not None and rewind.pause_s > 0.5  # grows per abort in a row
    assert kafka.outputs == [] and kafka.changelog[0] == []
    run_all(rt, records, 10)
    assert kafka.outputs == uninterrupted().outputs
    assert rt.counts.aborts == 2 and rt.aborts_in_a_row == 0
    assert rt.counts.records == len(records)  # the aborted attempts counted nothing


def test_a_batch_aborted_for_one_partition_keeps_the_others_written_and_counted() -> None:
    """The Faust engine's writer commits each partition on its own: one refused
    partition is rewound alone; the written one keeps its state and its counts."""
    records = fetched(scenario())
    kafka = FakeKafka(refuse_partitions={1})
    rt = runtime(kafka)
    rt.assign([0, 1])
    kept = rt.parts[0]
    rewind = rt.handle({0: records[:10], 1: records[:10]})
    assert rewind is not None and rewind.offsets == {1: 0}
    assert rt.parts[0] is kept and kept.next_offset == 10
    assert rt.counts.records == 10 and rt.counts.aborts == 1
    assert kafka.changelog[1] == []
    for partition in (0, 1):
        at = rt.parts[partition].next_offset
        while at < len(records):
            chunk = records[at : at + 10]
            rt.handle({partition: chunk})
            at = chunk[-1].offset + 1
    assert rt.counts.records == 2 * len(records)
    # the same records in each partition: the same outputs twice (the DLQ's headers
    # name the partition)
    one = [w for w in uninterrupted().outputs if w.destination != "dlq"]
    assert sorted(w for w in kafka.outputs if w.destination != "dlq") == sorted(one + one)


def test_records_below_the_position_are_skipped_and_the_engine_seeks_to_it() -> None:
    records = fetched(scenario())
    kafka = FakeKafka()
    rt = runtime(kafka)
    rt.assign([0])
    rt.handle({0: records[:12]})
    rt = runtime(kafka)
    assert rt.assign([0]) == {0: 12}  # where the engine fetches from
    rt.handle({0: records[5:20]})  # a consumer behind the position: 5..11 are done
    run_all(rt, records, 50)
    assert kafka.outputs == uninterrupted().outputs


def test_a_position_deleted_by_retention_resumes_at_the_first_record_left(
    caplog: pytest.LogCaptureFixture,
) -> None:
    kafka = FakeKafka()
    rt = runtime(kafka)
    rt.assign([0])
    rt.handle({0: fetched(scenario())[:3]})
    kafka.earliest_offsets[0] = 7
    rt = runtime(kafka)
    with caplog.at_level(logging.ERROR, "livewindows.worker"):
        assert rt.assign([0]) == {0: 7}
    assert "records 3 to 6 were deleted (retention)" in caplog.text


def test_a_whole_wal_of_an_earlier_version_is_redone_in_the_changelog() -> None:
    """The v1 Faust engine's crash: outputs acked, WAL stored, position not."""
    records = fetched(scenario())
    kafka = FakeKafka()
    rt = runtime(kafka)
    rt.assign([0])
    rt.handle({0: records[:8]})
    # What the old engine would store for 8..13: the changed inputs, in a WAL.
    runner, _ = PartitionRunner.restore(0, EVENTS, CONFIG, fold(0, kafka.changelog[0]), 0)
    assert runner.next_offset == 8
    batch = runner.run(records[8:14])
    assert batch is not None
    changes = {
        key.decode().split("/", 1)[1]: value
        for key, value in ((w.key, w.value) for w in batch.changelog)
        if key is not None and b"~" not in key
    }
    (part,) = encode_wal_parts(Wal(8, 14, runner.state.watermark_ms, changes))
    kafka.changelog[0].append((wal_key(0, 0), part))
    kafka.outputs.extend(batch.outputs)

    rt = runtime(kafka)
    assert rt.assign([0]) == {0: 14}
    assert rt.counts.redone == 1
    assert fold(0, kafka.changelog[0]).position == Position(14, runner.state.watermark_ms)
    run_all(rt, records, 50)
    assert kafka.outputs == uninterrupted().outputs


def test_a_half_written_wal_is_ignored_and_its_batch_runs_again() -> None:
    records = fetched(scenario())
    kafka = FakeKafka()
    rt = runtime(kafka)
    rt.assign([0])
    rt.handle({0: records[:8]})
    half = b'{"first_offset":8,"next_offset":14,"watermark_ms":1,"parts":2,"part":0,"changes":{}}'
    kafka.changelog[0].append((wal_key(0, 0), half))
    rt = runtime(kafka)
    assert rt.assign([0]) == {0: 8}
    assert rt.counts.redone == 0
    run_all(rt, records, 50)
    assert kafka.outputs == uninterrupted().outputs


def test_the_runner_stores_only_changed_inputs_and_the_position_last() -> None:
    records = fetched(scenario(inputs=3))
    runner = PartitionRunner(0, EVENTS, CONFIG, PartitionState(), 0)
    batch = runner.run(records[:1])  # one input connects
    assert batch is not None
    keys = [w.key for w in batch.changelog]
    assert keys == [b"0/cloudflare:in0", b"0/~position"]
    state = runner.state.inputs["cloudflare:in0"]
    assert batch.changelog[0].value == encode_input(state, 0)


def test_outputs_carry_their_source_records_timestamp_and_the_dlq_names_its_source() -> None:
    records = fetched(scenario())
    runner = PartitionRunner(0, EVENTS, CONFIG, PartitionState(), 0)
    batch = runner.run(records)
    assert batch is not None
    (dead,) = [w for w in batch.outputs if w.destination == "dlq"]
    source = next(r for r in records if r.value == b"{not json")
    assert dead.timestamp_ms == source.timestamp_ms and dead.value == b"{not json"
    assert (
        dead.headers is not None and ("source_offset", str(source.offset).encode()) in dead.headers
    )
    by_offset = {r.timestamp_ms for r in records}
    assert all(w.timestamp_ms in by_offset for w in batch.outputs)


def test_the_runner_equals_the_core_run_record_by_record() -> None:
    """The runner adds nothing to the windows: replay, explain and the workers agree with §5."""
    from processor.codec import decode, encode_output

    records = fetched(scenario())
    state = PartitionState()
    expected: list[tuple[str, bytes | None, bytes]] = []
    for record in records:
        try:
            decoded = decode(record.key, record.value)
        except Exception:
            continue
        state, outputs = process(state, decoded, CONFIG)
        for out in outputs:
            encoded = encode_output(out)
            if encoded is not None:
                expected.append(encoded)
    batch = PartitionRunner.fresh(0, EVENTS, CONFIG, 0).run(records)
    assert batch is not None and batch.changelog == []
    got = [(w.destination, w.key, w.value) for w in batch.outputs if w.destination != "dlq"]
    assert got == expected
