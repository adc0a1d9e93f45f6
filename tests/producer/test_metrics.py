"""The producer's counters: Prometheus semantics on plain ints."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from producer.metrics import Histogram, Metrics


def _samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = metrics.exposition().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_a_value_on_a_bound_counts_in_that_bucket_and_every_later_one() -> None:
    histogram = Histogram((1, 2, 5))
    for value in (0.5, 1, 2, 2.5, 5, 7):
        histogram.observe(value)
    assert histogram.cumulative() == [("1.0", 2.0), ("2.0", 3.0), ("5.0", 5.0), ("+Inf", 6.0)]
    assert histogram.sum == 18


def test_exposition_counts_by_label_and_parses_as_prometheus_text() -> None:
    metrics = Metrics()
    for status in (202, 202, 401):
        metrics.count_request("fastpix", status)
    metrics.count_request("none", 404)
    metrics.observe_body_bytes("fastpix", 600)
    metrics.observe_body_bytes("fastpix", 256)
    metrics.observe_publish_seconds("gjirafa", 0.003)
    samples = _samples(metrics)
    requests = "livewindows_http_requests_total"
    assert samples[requests, (("provider", "fastpix"), ("status", "202"))] == 2
    assert samples[requests, (("provider", "fastpix"), ("status", "401"))] == 1
    assert samples[requests, (("provider", "none"), ("status", "404"))] == 1
    body = "livewindows_request_body_bytes"
    assert samples[f"{body}_bucket", (("le", "256.0"), ("provider", "fastpix"))] == 1
    assert samples[f"{body}_bucket", (("le", "1024.0"), ("provider", "fastpix"))] == 2
    assert samples[f"{body}_count", (("provider", "fastpix"),)] == 2
    assert samples[f"{body}_sum", (("provider", "fastpix"),)] == 856
    publish = "livewindows_publish_seconds"
    assert samples[f"{publish}_bucket", (("le", "0.002"), ("provider", "gjirafa"))] == 0
    assert samples[f"{publish}_bucket", (("le", "0.005"), ("provider", "gjirafa"))] == 1
    assert samples[f"{publish}_bucket", (("le", "+Inf"), ("provider", "gjirafa"))] == 1


def test_two_apps_keep_separate_counts() -> None:
    one, two = Metrics(), Metrics()
    one.count_request("gjirafa", 202)
    key = ("livewindows_http_requests_total", (("provider", "gjirafa"), ("status", "202")))
    assert key in _samples(one)
    assert key not in _samples(two)
