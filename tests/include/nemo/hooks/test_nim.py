"""NimHook: model listing, chat completions, embeddings, and the answers it refuses."""

from __future__ import annotations

import pytest

from include.nemo.exceptions import NemoApiError
from include.nemo.hooks import NimHook, model_ids


@pytest.fixture
def nim(set_connection, script):
    set_connection("nim_default", conn_type="nim", host="http://nim.test", password="nim-key")

    def _make(*answers, **kwargs):
        peer = script(*answers, **kwargs)
        return NimHook(transport=peer.transport(), retry_limit=2, retry_delay=0.0, sleep=lambda s: None), peer

    return _make


def test_models_and_served(nim):
    hook, peer = nim((200, {"object": "list", "data": [{"id": "a"}, {"id": "b"}]}))
    assert hook.list_models() == ["a", "b"]
    assert hook.is_model_served("b") and not hook.is_model_served("c")
    assert peer.requests[0].headers["Authorization"] == "Bearer nim-key"


def test_model_ids_skips_and_counts_malformed_entries(caplog):
    assert model_ids({"data": [{"id": "a"}, {"name": "no-id"}, "junk"]}) == ["a"]
    assert "2 entries without a string id" in caplog.text
    assert model_ids({"unexpected": True}) == []


def test_chat_completion_sends_extra_params(nim):
    hook, peer = nim((200, {"choices": [{"message": {"content": "hello"}}]}))
    result = hook.chat_completion("m", [{"role": "user", "content": "hi"}], tools=[{"type": "function"}], max_tokens=5)
    assert result["choices"][0]["message"]["content"] == "hello"
    assert peer.json_of(0) == {"model": "m", "messages": [{"role": "user", "content": "hi"}],
                               "tools": [{"type": "function"}], "max_tokens": 5}


def test_chat_completion_without_choices_is_an_error(nim):
    hook, _ = nim((200, {"error": "weird"}))
    with pytest.raises(NemoApiError, match="no 'choices'"):
        hook.chat_completion("m", [{"role": "user", "content": "hi"}])


def test_chat_completion_needs_messages(nim):
    hook, _ = nim()
    with pytest.raises(ValueError, match="at least one message"):
        hook.chat_completion("m", [])


def test_embed_orders_by_index(nim):
    hook, peer = nim((200, {"data": [{"index": 1, "embedding": [2.0]}, {"index": 0, "embedding": [1.0]}]}))
    assert hook.embed("e", ["first", "second"], input_type="query") == [[1.0], [2.0]]
    assert peer.json_of(0) == {"model": "e", "input": ["first", "second"], "input_type": "query"}


def test_embed_count_mismatch_is_an_error(nim):
    hook, _ = nim((200, {"data": [{"index": 0, "embedding": [1.0]}]}))
    with pytest.raises(NemoApiError, match="expected 2 embeddings, got 1"):
        hook.embed("e", ["a", "b"])


def test_nim_test_connection_lists_models(nim):
    hook, peer = nim((200, {"data": []}))
    ok, message = hook.test_connection()
    assert ok and "nim_default" in message
    assert peer.paths == ["GET /v1/models"]


def test_nim_reads_get_more_time():
    assert NimHook.default_read_timeout > 60
