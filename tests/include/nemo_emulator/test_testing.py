"""``running_emulator`` and the CLI: start-up, real clients against the subprocess, failure to start."""

from __future__ import annotations

import socket
import time

import pytest
from openai import NotFoundError, OpenAI

from include.nemo_emulator.testing import EmulatorStartError, running_emulator


def test_startup_options_reach_the_subprocess_and_it_stops_on_exit():
    started = time.monotonic()
    with running_emulator(burst_5xx=1, fail_deployment=["bad"], judge_model=["acme/judge-1"],
                          sync_duration=0.1) as emu:
        print(f"emulator start-up took {time.monotonic() - started:.2f} s")
        assert emu.base_url.startswith("http://127.0.0.1:")
        assert emu.datastore_url == emu.base_url and emu.hf_endpoint == emu.base_url + "/v1/hf"
        assert emu.client.get("/v1/datasets").status_code == 503  # the --burst-5xx 1 from the command line
        assert emu.client.get("/v1/datasets").status_code == 200
        faults = emu.client.get("/emulator/faults").json()
        assert faults["fail_deployments"] == ["bad"]
        assert emu.state()["durations"]["sync"] == 0.1
        served = [m["id"] for m in emu.client.get("/nim/v1/models").json()["data"]]
        assert "acme/judge-1" in served
        process = emu.process
    assert process.poll() is not None  # stopped on exit


def test_openai_client_against_the_nim(emu, samples):
    created = emu.client.post("/v1/deployment/model-deployments", json={
        "name": "nim-1b", "namespace": "fw", "config": {"model": samples.base_model, "nim_deployment": {}}})
    assert created.status_code == 200
    emu.advance_clock(1.0)
    client = OpenAI(base_url=emu.nim_url + "/v1", api_key="not-used", max_retries=0)
    assert samples.base_model in [m.id for m in client.models.list().data]
    completion = client.chat.completions.create(
        model=samples.base_model, tools=list(samples.tools),
        messages=[{"role": "user", "content": "Please book a flight ticket to Oslo airport"}])
    call = completion.choices[0].message.tool_calls[0]
    assert call.function.name == "book_flight"
    assert completion.usage.total_tokens > 0
    embeddings = client.embeddings.create(model=samples.embedding_model, input=["one", "two", "three"])
    assert len(embeddings.data) == 3 and len(embeddings.data[0].embedding) == 384
    with pytest.raises(NotFoundError, match="not served"):
        client.chat.completions.create(model="x/unknown", messages=[{"role": "user", "content": "hi"}])


def test_a_server_that_cannot_start_fails_clearly():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(EmulatorStartError, match="cannot bind"):
            with running_emulator(port=port, startup_timeout=20):
                pass
