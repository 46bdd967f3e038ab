"""ElasticsearchLogSource: the real elasticsearch client and Airflow Connection, HTTP faked on loopback."""

from __future__ import annotations

import json
import os
import socket
import uuid
from datetime import datetime, timedelta, timezone
from urllib.parse import urlsplit

import pytest

from include.flywheel.config import LogSettings
from include.flywheel.logs import LogSourceError, open_log_source
from include.flywheel.logs.elasticsearch import INDEX_MAPPINGS, TIMESTAMP_FORMAT, ElasticsearchLogSource

START = datetime(2026, 11, 18, tzinfo=timezone.utc)
END = START + timedelta(days=1)
T0 = int(START.timestamp())
WORKLOAD, CLIENT = "customer-support-tools", "acme-retail"


def _doc(n: int, seconds: int, workload: str | None = WORKLOAD, client: str = CLIENT) -> dict:
    doc = {"n": n, "client_id": client, "timestamp": T0 + seconds,
           "request": {"messages": [{"role": "user", "content": f"q{n}"}]}}
    if workload is not None:
        doc["workload_id"] = workload
    return doc


def _matching(count: int) -> list[dict]:
    # Deliberately out of time order, and two with the same timestamp (the tiebreaker decides).
    seconds = [500, 100, 100, 86_399, 0, 7_200, 3_600, 42, 9_000, 10][:count]
    return [_doc(n, s) for n, s in enumerate(seconds)]


NOISE = [
    _doc(100, 50, workload=None),  # this client, no workload id
    _doc(101, 60, workload=None),
    _doc(102, 70, workload="faq-chat"),  # this client, another workload
    _doc(103, 80, workload="faq-chat"),
    _doc(104, 90, workload="other"),
    _doc(105, 95, client="globex"),  # this workload, another client
    _doc(106, 86_400),  # at the exclusive end of the window
    _doc(107, -1),  # just before the window
    _doc(108, -5, workload=None),  # no workload id, but outside the window: not counted
]


def _order(docs: list[dict]) -> list[int]:
    return [d["n"] for d in sorted(docs, key=lambda d: (d["timestamp"], docs.index(d)))]


def test_pages_with_pit_and_search_after(fake_es_factory, es_connection) -> None:
    docs = _matching(7) + NOISE
    fake = fake_es_factory(docs)
    es_connection(fake.port)
    source = ElasticsearchLogSource("elasticsearch_default", "flywheel", page_size=3)

    records = list(source.iter_records(WORKLOAD, CLIENT, START, END))

    assert [r["n"] for r in records] == _order(_matching(7))
    assert records[0] == _matching(7)[4]  # the _source, untouched
    # The PIT is opened on the index, then every page searches through it (no index in the path).
    pit_calls = [r for r in fake.requests if r["path"] == "/flywheel/_pit"]
    assert len(pit_calls) == 1 and pit_calls[0]["params"]["keep_alive"] == "5m"
    searches = fake.bodies("POST", "/_search")
    assert len(searches) == 3  # 3 + 3 + 1 hits
    expected_query = {
        "bool": {
            "filter": [
                {"term": {"workload_id": WORKLOAD}},
                {"term": {"client_id": CLIENT}},
                {"range": {"timestamp": {"gte": "2026-11-18T00:00:00Z", "lt": "2026-11-19T00:00:00Z",
                                         "format": TIMESTAMP_FORMAT}}},
            ]
        }
    }
    assert searches[0] == {
        "pit": {"id": "pit-1", "keep_alive": "5m"},
        "query": expected_query,
        "sort": [{"timestamp": {"order": "asc"}}, {"_shard_doc": "asc"}],
        "size": 3,
        "track_total_hits": False,
    }
    # Each next page passes the PIT id of the previous answer and the sort values of its last hit.
    assert searches[1]["pit"]["id"] == "pit-1~1" and searches[2]["pit"]["id"] == "pit-1~2"
    third = sorted(_matching(7), key=lambda d: (d["timestamp"], _matching(7).index(d)))[2]
    assert searches[1]["search_after"] == [third["timestamp"] * 1000, _matching(7).index(third)]
    assert all(s["query"] == expected_query and s["size"] == 3 for s in searches)
    search_params = [r["params"] for r in fake.requests if r["path"] == "/_search"]
    assert all(p["allow_partial_search_results"] == "false" for p in search_params)
    # Closed once, with the latest id.
    assert fake.closed_pits == ["pit-1~3"] and not fake.open_pits
    stats = source.stats.as_dict()
    assert stats == {"read": 7, "matched": 7, "missing_workload_id": 2, "other_workload": 3, "other_client": 1,
                     "out_of_window": 0, "malformed": 0}


def test_neighbour_count_queries(fake_es_factory, es_connection) -> None:
    fake = fake_es_factory(NOISE)
    es_connection(fake.port)
    source = ElasticsearchLogSource(page_size=10)

    assert list(source.iter_records(WORKLOAD, CLIENT, START, END)) == []

    window = {"range": {"timestamp": {"gte": "2026-11-18T00:00:00Z", "lt": "2026-11-19T00:00:00Z",
                                      "format": TIMESTAMP_FORMAT}}}
    counts = fake.bodies("POST", "/flywheel/_count")
    assert counts == [
        {"query": {"bool": {"filter": [{"term": {"client_id": CLIENT}}, window],
                            "must_not": [{"exists": {"field": "workload_id"}}]}}},
        {"query": {"bool": {"filter": [{"term": {"client_id": CLIENT}}, window, {"exists": {"field": "workload_id"}}],
                            "must_not": [{"term": {"workload_id": WORKLOAD}}]}}},
        {"query": {"bool": {"filter": [{"term": {"workload_id": WORKLOAD}}, window],
                            "must_not": [{"term": {"client_id": CLIENT}}]}}},
    ]
    assert (source.stats.missing_workload_id, source.stats.other_workload, source.stats.other_client) == (2, 3, 1)
    assert len(fake.bodies("POST", "/_search")) == 1 and fake.closed_pits == ["pit-1~1"]


def test_exact_multiple_of_page_size_ends_on_empty_page(fake_es_factory, es_connection) -> None:
    fake = fake_es_factory(_matching(6))
    es_connection(fake.port)
    source = ElasticsearchLogSource(page_size=3)

    assert len(list(source.iter_records(WORKLOAD, CLIENT, START, END))) == 6
    assert len(fake.bodies("POST", "/_search")) == 3
    assert source.stats.read == source.stats.matched == 6


def test_pit_closed_when_a_page_fails(fake_es_factory, es_connection) -> None:
    fake = fake_es_factory(_matching(7))
    fake.search_failures[2] = [500]  # not a transient status: no retry
    es_connection(fake.port)
    source = ElasticsearchLogSource(page_size=3)
    records = source.iter_records(WORKLOAD, CLIENT, START, END)

    with pytest.raises(LogSourceError, match=r"index 'flywheel' \(connection 'elasticsearch_default'\).*HTTP 500"):
        for _ in records:
            pass

    assert source.stats.matched == 3
    assert fake.closed_pits == ["pit-1~1"] and not fake.open_pits


def test_pit_closed_when_the_consumer_stops_early(fake_es_factory, es_connection) -> None:
    fake = fake_es_factory(_matching(7))
    es_connection(fake.port)
    records = ElasticsearchLogSource(page_size=3).iter_records(WORKLOAD, CLIENT, START, END)

    next(records)
    assert fake.closed_pits == []
    records.close()

    assert fake.closed_pits == ["pit-1~1"] and not fake.open_pits


def test_expired_point_in_time_says_so(fake_es_factory, es_connection) -> None:
    fake = fake_es_factory(_matching(7))
    es_connection(fake.port)
    records = ElasticsearchLogSource(page_size=3).iter_records(WORKLOAD, CLIENT, START, END)
    first_page = [next(records) for _ in range(3)]
    fake.open_pits.clear()  # the server dropped the PIT (keep_alive elapsed)

    with pytest.raises(LogSourceError, match=r"point in time expired while reading page 2 \(keep_alive 5m\)"):
        next(records)
    assert len(first_page) == 3


def test_transient_errors_are_retried_by_the_client(fake_es_factory, es_connection) -> None:
    fake = fake_es_factory(_matching(4))
    fake.search_failures[1] = [503, 429]
    es_connection(fake.port)
    source = ElasticsearchLogSource(page_size=10)

    assert len(list(source.iter_records(WORKLOAD, CLIENT, START, END))) == 4
    assert len(fake.bodies("POST", "/_search")) == 3  # two failed attempts, then the page


def test_shard_failure_is_an_error_not_a_partial_result(fake_es_factory, es_connection) -> None:
    fake = fake_es_factory(_matching(4))
    fake.shard_failure_on_page = 1
    es_connection(fake.port)

    with pytest.raises(LogSourceError, match="failed on 1 of 2 shards"):
        list(ElasticsearchLogSource(page_size=10).iter_records(WORKLOAD, CLIENT, START, END))
    assert not fake.open_pits


def test_missing_index_names_index_and_connection(fake_es_factory, es_connection) -> None:
    fake = fake_es_factory(_matching(2), index="flywheel")
    es_connection(fake.port, conn_id="logs_es")
    source = ElasticsearchLogSource("logs_es", "no-such-index")

    with pytest.raises(LogSourceError) as raised:
        list(source.iter_records(WORKLOAD, CLIENT, START, END))

    message = str(raised.value)
    assert "'no-such-index'" in message and "'logs_es'" in message and "does not exist" in message
    assert "logs.index" in message


def test_undefined_connection_is_a_clear_error(monkeypatch) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_NOT_DEFINED_ANYWHERE", raising=False)
    source = ElasticsearchLogSource("not_defined_anywhere")

    with pytest.raises(LogSourceError, match="AIRFLOW_CONN_NOT_DEFINED_ANYWHERE"):
        list(source.iter_records(WORKLOAD, CLIENT, START, END))


def test_connection_without_port_is_a_clear_error(monkeypatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_ES_NO_PORT", json.dumps({"conn_type": "elasticsearch", "host": "127.0.0.1"}))

    with pytest.raises(LogSourceError, match="port"):
        list(ElasticsearchLogSource("es_no_port").iter_records(WORKLOAD, CLIENT, START, END))


def test_unreachable_server(es_connection) -> None:
    with socket.socket() as probe:  # a free port with nothing listening once closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    es_connection(port, max_retries=1)

    with pytest.raises(LogSourceError, match="cannot reach"):
        list(ElasticsearchLogSource().iter_records(WORKLOAD, CLIENT, START, END))


def test_arguments_are_checked_before_connecting() -> None:
    source = ElasticsearchLogSource("never_resolved")
    with pytest.raises(ValueError, match="timezone"):
        source.iter_records(WORKLOAD, CLIENT, START.replace(tzinfo=None), END)
    with pytest.raises(ValueError, match="page_size"):
        ElasticsearchLogSource(page_size=0)


def test_open_log_source_builds_it_from_settings() -> None:
    source = open_log_source(
        LogSettings(source="elasticsearch", es_conn_id="logs_es", index="llm-logs", page_size=250)
    )
    assert isinstance(source, ElasticsearchLogSource)
    assert (source.conn_id, source.index, source.page_size) == ("logs_es", "llm-logs", 250)


@pytest.mark.integration
@pytest.mark.skipif(not os.environ.get("FLYWHEEL_TEST_ES_URL"), reason="needs FLYWHEEL_TEST_ES_URL (a real Elasticsearch)")
def test_against_a_real_elasticsearch(monkeypatch) -> None:
    from elasticsearch import Elasticsearch

    url = urlsplit(os.environ["FLYWHEEL_TEST_ES_URL"])
    connection = {"conn_type": "elasticsearch", "host": url.hostname, "port": url.port or 9200,
                  "schema": url.scheme or "http", "login": url.username, "password": url.password}
    monkeypatch.setenv("AIRFLOW_CONN_FLYWHEEL_TEST_ES", json.dumps(connection))
    index = f"flywheel-test-{uuid.uuid4().hex[:12]}"
    auth = (url.username, url.password) if url.username else None
    admin = Elasticsearch(f"{url.scheme}://{url.hostname}:{url.port or 9200}", basic_auth=auth)
    docs = _matching(7) + NOISE
    # One record with an ISO timestamp: the mapping's format takes both forms.
    docs.append({**_doc(200, 1_000), "timestamp": (START + timedelta(seconds=1_000)).isoformat()})
    admin.indices.create(index=index, mappings=INDEX_MAPPINGS)
    try:
        for position, doc in enumerate(docs):
            admin.index(index=index, id=str(position), document=doc)
        admin.indices.refresh(index=index)
        source = ElasticsearchLogSource("flywheel_test_es", index, page_size=2)

        records = list(source.iter_records(WORKLOAD, CLIENT, START, END))

        assert sorted(r["n"] for r in records) == sorted([*range(7), 200])
        stamps = [r["timestamp"] if isinstance(r["timestamp"], int) else T0 + 1_000 for r in records]
        assert stamps == sorted(stamps)
        assert (source.stats.missing_workload_id, source.stats.other_workload, source.stats.other_client) == (2, 3, 1)
    finally:
        admin.indices.delete(index=index, ignore_unavailable=True)
        admin.close()
