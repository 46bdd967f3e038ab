"""Hook for an OpenAI-compatible NIM endpoint (the NIM proxy, a deployed NIM, or a remote judge)."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from include.nemo.exceptions import NemoApiError
from include.nemo.hooks.base import NemoBaseHook

log = logging.getLogger(__name__)


def model_ids(models_body: Any) -> list[str]:
    """The ``data[].id`` of a ``GET /v1/models`` answer (entries without an id are skipped and counted)."""
    data = models_body.get("data") if isinstance(models_body, Mapping) else None
    if not isinstance(data, list):
        return []
    ids = [entry["id"] for entry in data if isinstance(entry, Mapping) and isinstance(entry.get("id"), str)]
    skipped = len(data) - len(ids)
    if skipped:
        log.warning("GET /v1/models: %d entr%s without a string id skipped.", skipped, "y" if skipped == 1 else "ies")
    return ids


class NimHook(NemoBaseHook):
    """An OpenAI-compatible NIM endpoint (``nim`` Connection; the password is an optional API key).

    The host is the base URL *without* ``/v1`` (e.g. ``https://nim.example.com``); paths add ``/v1/...``.
    """

    conn_type = "nim"
    default_conn_name = "nim_default"
    hook_name = "NVIDIA NIM (OpenAI-compatible)"
    # Generation can take a while; give reads more time than the platform APIs.
    default_read_timeout = 120.0
    test_connection_path = "/v1/models"
    test_connection_params: Mapping[str, Any] = {}

    def list_models(self) -> list[str]:
        """``GET /v1/models`` -> the served model ids (base models and synced LoRA adapters)."""
        return model_ids(self._request("GET", "/v1/models", object_id="NIM models"))

    def is_model_served(self, model_id: str) -> bool:
        """Whether ``model_id`` is listed right now (one call, no waiting; triggers do the waiting)."""
        return model_id in self.list_models()

    def chat_completion(
        self, model: str, messages: Sequence[Mapping[str, Any]], **params: Any
    ) -> dict[str, Any]:
        """``POST /v1/chat/completions``; extra keyword arguments (``tools``, ``max_tokens``, ...) go in the body."""
        if not messages:
            raise ValueError("chat_completion needs at least one message")
        body = {"model": model, "messages": list(messages), **params}
        result = self._request("POST", "/v1/chat/completions", json=body, object_id=f"chat completion ({model})")
        if not isinstance(result, Mapping) or not isinstance(result.get("choices"), list):
            raise NemoApiError(
                method="POST", url=self.endpoint.url("/v1/chat/completions"), status_code=200, body=str(result),
                object_id=f"chat completion ({model})", reason="no 'choices' in the answer",
                hint="Check that the Connection points at an OpenAI-compatible endpoint.",
            )
        return dict(result)

    def embeddings(self, model: str, texts: Sequence[str] | str, **params: Any) -> dict[str, Any]:
        """``POST /v1/embeddings``; NVIDIA retrieval models also want ``input_type="query"|"passage"``."""
        inputs = [texts] if isinstance(texts, str) else list(texts)
        if not inputs:
            raise ValueError("embeddings needs at least one text")
        body = {"model": model, "input": inputs, **params}
        return self._request("POST", "/v1/embeddings", json=body, object_id=f"embeddings ({model})")

    def embed(self, model: str, texts: Sequence[str], **params: Any) -> list[list[float]]:
        """Vectors for ``texts``, in input order (answers are re-ordered by ``index``)."""
        result = self.embeddings(model, texts, **params)
        data = result.get("data") if isinstance(result, Mapping) else None
        if not isinstance(data, list) or len(data) != len(texts):
            raise NemoApiError(
                method="POST", url=self.endpoint.url("/v1/embeddings"), status_code=200, body=str(result)[:500],
                object_id=f"embeddings ({model})",
                reason=f"expected {len(texts)} embeddings, got {len(data) if isinstance(data, list) else 'none'}",
                hint="Check the embedding model name and the endpoint's batch limits.",
            )
        ordered = sorted(data, key=lambda item: item.get("index", 0))
        return [list(item["embedding"]) for item in ordered]
