"""The async client for triggers: same retry rules, one HTTP client per poll loop, async Connection lookup."""

from __future__ import annotations

import httpx
import pytest

from include.nemo.exceptions import NemoApiError, NemoNotFoundError, NemoTimeoutError
from include.nemo.hooks import NemoAsyncClient, customization_status_of


def make_client(peer, sleeps, conn_id="nemo_default", **kwargs):
    kwargs.setdefault("retry_limit", 4)
    kwargs.setdefault("retry_delay", 0.01)
    return NemoAsyncClient(conn_id, transport=peer.async_transport(), sleep=sleeps.asleep, **kwargs)


async def test_retries_5xx_and_429_then_succeeds(nemo_conn, script, sleeps):
    peer = script(500, (429, {}, {"Retry-After": "3"}), (200, {"status": "running"}))
    async with make_client(peer, sleeps) as client:
        payload = await client.get_customization_status("cust-1")
    assert customization_status_of(payload).value == "running"
    assert peer.paths == ["GET /v1/customization/jobs/cust-1/status"] * 3
    assert sleeps.waits == [0.01, 3.0]


async def test_connection_errors_are_retried(nemo_conn, script, sleeps):
    peer = script(httpx.ConnectError, (200, {"status": "pending"}))
    async with make_client(peer, sleeps) as client:
        assert (await client.get_evaluation_job("e"))["status"] == "pending"
    assert len(peer.requests) == 2


async def test_4xx_is_not_retried(nemo_conn, script, sleeps):
    peer = script((404, {"detail": "no such job"}))
    async with make_client(peer, sleeps) as client:
        with pytest.raises(NemoNotFoundError, match="no such job") as info:
            await client.get_evaluation_job("eval-404")
    assert len(peer.requests) == 1
    assert str(info.value).startswith("evaluation job eval-404: GET http://nemo.test:8000/v1/evaluation/jobs/eval-404")


async def test_gives_up_after_the_limit(nemo_conn, script, sleeps):
    peer = script((503, {"detail": "down"}))
    async with make_client(peer, sleeps, retry_limit=3) as client:
        with pytest.raises(NemoApiError, match="failed 3 times. Giving up.") as info:
            await client.get_deployment("ns", "d")
    assert info.value.status_code == 503
    assert len(peer.requests) == 3


async def test_timeout_is_reported(nemo_conn, script, sleeps):
    peer = script(httpx.ReadTimeout)
    async with make_client(peer, sleeps, retry_limit=2) as client:
        with pytest.raises(NemoTimeoutError, match="raise the timeout"):
            await client.get_deployment("ns", "d")


async def test_one_http_client_for_the_whole_poll_loop(nemo_conn, script, sleeps):
    peer = script((200, {"status": "running"}))
    async with make_client(peer, sleeps) as client:
        first = client._client
        for _ in range(3):
            await client.get_customization_status("c")
        assert client._client is first
    assert client._client is None
    assert len(peer.requests) == 3
    assert peer.requests[0].headers["Authorization"] == "Bearer secret-key-123"


async def test_nim_models_from_a_nim_connection(set_connection, script, sleeps):
    set_connection("nim_default", conn_type="nim", host="http://nim.test")
    peer = script((200, {"data": [{"id": "base"}, {"id": "flywheel/adapter@v1"}]}))
    async with make_client(peer, sleeps, conn_id="nim_default") as client:
        assert await client.list_nim_models() == ["base", "flywheel/adapter@v1"]
        assert await client.is_model_served("flywheel/adapter@v1")
        assert not await client.is_model_served("missing")
    assert peer.requests[0].url == "http://nim.test/v1/models"


async def test_cleanup_calls_tolerate_finished_or_missing(nemo_conn, script, sleeps):
    def route(request):
        return {
            "/v1/customization/jobs/done/cancel": (409, {"detail": "already completed"}),
            "/v1/customization/jobs/live/cancel": (200, {"status": "cancelled"}),
            "/v1/evaluation/jobs/e/cancel": (404, {}),
            "/v1/evaluation/jobs/e": (404, {}),
            "/v1/deployment/model-deployments/ns/d": (200, {"deleted": True}),
        }[request.url.path]

    peer = script(route=route)
    async with make_client(peer, sleeps) as client:
        assert await client.cancel_customization_job("done") is False
        assert await client.cancel_customization_job("live") is True
        assert await client.cancel_evaluation_job("e") is False
        assert await client.delete_evaluation_job("e") is False
        assert await client.delete_deployment("ns", "d") is True
    assert ("DELETE /v1/deployment/model-deployments/ns/d") in peer.paths


async def test_missing_connection_fails_clearly(script, sleeps):
    client = NemoAsyncClient("no_such_conn", transport=script().async_transport())
    with pytest.raises(Exception, match="no_such_conn"):
        await client.open()


def test_conn_id_is_validated():
    with pytest.raises(ValueError, match="conn_id"):
        NemoAsyncClient("")


def test_endpoint_before_open_says_how_to_use_it():
    with pytest.raises(RuntimeError, match="async with"):
        NemoAsyncClient("nemo_default").endpoint
