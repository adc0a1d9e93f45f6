"""Properties of the HTTP layer for arbitrary requests (SPEC §2).

Whatever arrives — any body, any headers, right or wrong credentials, a broker
that fails — the answer is one of the contract's statuses (never a 5xx other
than 503), and a record is handed to the publisher exactly when the answer is 202.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.producer import seeds
from tests.producer.conftest import MakeClient
from tests.producer.fakes import MemoryPublisher

CONTRACT_STATUSES = {202, 400, 401, 413, 422, 503}

ROUTES = {
    "cloudflare": ("/api/v1/video/events/cf-token-old", "/api/v1/video/events/guess"),
    "fastpix": ("/api/v1/video/fastpix/events", "/api/v1/video/fastpix/events"),
    "gjirafa": ("/api/v1/video/gjirafa/events/gj-token-new", "/api/v1/video/gjirafa/events/x"),
}

SEEDS: list[tuple[str, dict[str, Any]]] = [
    ("cloudflare", seeds.cloudflare("live_input.disconnected")),
    ("fastpix", seeds.fastpix_stream("video.live_stream.disconnected")),
    ("fastpix", seeds.fastpix_simulcast("video.live_stream.simulcast_target.created")),
    *(("gjirafa", document) for document in seeds.GJIRAFA.values()),
]

json_leaf = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
    | st.sampled_from(["2024-07-17T11:37:44.5317666Z", "Live", "Interrupted", "", "0"])
)
json_values = st.recursive(
    json_leaf,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=25,
)


def _slots(node: Any) -> list[tuple[dict[str, Any], str]]:
    """Every (mapping, key) of a document, at any depth."""
    if isinstance(node, list):
        return [slot for item in node for slot in _slots(item)]
    if not isinstance(node, dict):
        return []
    return [(node, key) for key in node] + [s for v in node.values() for s in _slots(v)]


@st.composite
def mutated_seed(draw: st.DrawFn) -> tuple[str, Any]:
    """A seed document with up to three fields (at any depth) removed or replaced."""
    provider, document = draw(st.sampled_from(SEEDS))
    document = orjson.loads(orjson.dumps(document))
    for _ in range(draw(st.integers(0, 3))):
        slots = _slots(document)
        if not slots:
            break
        parent, key = draw(st.sampled_from(slots))
        if draw(st.booleans()):
            del parent[key]
        else:
            parent[key] = draw(json_values)
    return provider, document


bodies = st.one_of(
    st.binary(max_size=300),
    mutated_seed().map(lambda pd: orjson.dumps(pd[1])),
    json_values.map(orjson.dumps),
)
header_text = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40)
extra_headers = st.dictionaries(
    st.sampled_from(
        [
            "Content-Type",
            "X-Anything",
            "cf-webhook-auth",
            "FastPix-Signature",
            "Content-Encoding",
            "Accept",
        ]
    ),
    header_text,
    max_size=3,
)


def _credentials(provider: str, body: bytes) -> dict[str, str]:
    if provider == "cloudflare":
        return {"cf-webhook-auth": "cf-header-old"}
    if provider == "fastpix":
        digest = hmac.new(seeds.FASTPIX_KEY_1, body, hashlib.sha256).digest()
        return {"FastPix-Signature": base64.b64encode(digest).decode()}
    return {}


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    provider=st.sampled_from(sorted(ROUTES)),
    authentic=st.booleans(),
    body=bodies,
    headers=extra_headers,
    broker_fails=st.booleans(),
)
async def test_any_request_gets_a_contract_status_and_publishes_only_on_202(
    make_client: MakeClient,
    provider: str,
    authentic: bool,
    body: bytes,
    headers: dict[str, str],
    broker_fails: bool,
) -> None:
    publisher = MemoryPublisher(fail=broker_fails)
    client = await make_client(settings=seeds.settings(max_body_bytes=700), publisher=publisher)
    good_path, bad_path = ROUTES[provider]
    sent = dict(headers)
    if authentic:
        sent |= _credentials(provider, body)
    path = good_path if authentic else bad_path
    sent.pop("Content-Encoding", None)  # the client would try to honour it
    response = await client.post(path, data=body, headers=sent)
    answer = orjson.loads(await response.read())
    assert response.status in CONTRACT_STATUSES, answer
    assert isinstance(answer, dict)
    if response.status == 202:
        assert [e.event_id for e in publisher.events] == [answer["event_id"]]
    else:
        assert publisher.events == []
        assert isinstance(answer["error"], str)
    if not authentic:
        assert response.status in (401, 413)  # 413 before the signature, FastPix only
    await client.close()


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(seeded=mutated_seed())
async def test_an_authentic_seed_variant_is_202_or_422_when_the_broker_is_up(
    make_client: MakeClient, seeded: tuple[str, Any]
) -> None:
    provider, document = seeded
    publisher = MemoryPublisher()
    client = await make_client(publisher=publisher)
    body = orjson.dumps(document)
    response = await client.post(
        ROUTES[provider][0], data=body, headers=_credentials(provider, body)
    )
    assert response.status in (202, 422), await response.text()
    assert len(publisher.events) == (response.status == 202)
    if response.status == 422:
        fields = (await response.json())["fields"]
        assert fields and all(f["field"] and f["message"] for f in fields)
    await client.close()
