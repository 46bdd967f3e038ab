"""The results plugin: its JSON API and page, with FastAPI's TestClient, real Airflow JWTs and a
SQLite results store filled through the store's public methods (see conftest.py)."""

from __future__ import annotations

import re
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient

from plugins import flywheel_ui

from .conftest import FAQ, FAQ_DAG, HOSTILE_PROMPT, MEDIUM, PRIMARY, SMALL, TOOLS, TOOLS_DAG

# unit_tests.cfg signs JWTs with a short test key; PyJWT warns about it on every token.
pytestmark = pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")

EVAL_TYPES = ["base-eval", "icl-eval", "customized-eval"]


@pytest.fixture
def client(demo_results, auth_manager) -> TestClient:
    # Mounted as the api-server mounts it, so URLs and root_path are the real ones.
    from fastapi import FastAPI

    root = FastAPI()
    root.mount(flywheel_ui.URL_PREFIX, flywheel_ui.create_app())
    return TestClient(root, follow_redirects=False)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def run_url(flywheel_run_id: str) -> str:
    return f"/flywheel/api/runs/{flywheel_run_id}"


# -- access -----------------------------------------------------------------------------------------


def test_api_requires_an_airflow_token(client):
    response = client.get("/flywheel/api/workloads")
    assert response.status_code == 401
    assert response.json()["detail"] == "Not authenticated"


def test_api_refuses_a_forged_token(client, tokens):
    forged = tokens["admin"][:-4] + ("AAAA" if not tokens["admin"].endswith("AAAA") else "BBBB")
    response = client.get("/flywheel/api/workloads", headers=bearer(forged))
    assert response.status_code == 403


def test_ui_cookie_authenticates_like_the_airflow_ui(client, tokens):
    client.cookies.set("_token", tokens["viewer"])
    response = client.get("/flywheel/api/workloads")
    assert response.status_code == 200
    assert {w["workload_id"] for w in response.json()["workloads"]} == {TOOLS, FAQ}


def test_user_without_dag_access_sees_nothing(client, tokens, demo_results):
    headers = bearer(tokens["nobody"])
    assert client.get("/flywheel/api/workloads", headers=headers).json() == {"workloads": [], "total": 0}
    response = client.get(run_url(demo_results.second_run), headers=headers)
    assert response.status_code == 403
    assert TOOLS_DAG in response.json()["detail"]
    assert client.get(f"/flywheel/api/workloads/{TOOLS}/runs", headers=headers).status_code == 403


# -- JSON API ---------------------------------------------------------------------------------------


def test_workloads_list_runs_and_latest_status(client, tokens, demo_results):
    body = client.get("/flywheel/api/workloads", headers=bearer(tokens["admin"])).json()
    workloads = {w["workload_id"]: w for w in body["workloads"]}
    assert body["total"] == 2
    assert workloads[TOOLS]["runs"] == 2
    assert workloads[TOOLS]["dag_id"] == TOOLS_DAG
    assert workloads[TOOLS]["last_run_id"] == demo_results.second_run
    assert workloads[TOOLS]["last_status"] == "completed"
    assert workloads[FAQ]["statuses"] == {"failed": 1}
    assert workloads[TOOLS]["configured"] is True


def test_runs_of_a_workload_newest_first_with_scores(client, tokens, demo_results):
    body = client.get(f"/flywheel/api/workloads/{TOOLS}/runs", headers=bearer(tokens["admin"])).json()
    assert body["workload"]["workload_id"] == TOOLS
    assert [run["flywheel_run_id"] for run in body["runs"]] == [demo_results.second_run, demo_results.first_run]
    latest = body["runs"][0]
    assert "evaluations" not in latest  # children are summarized as scores, not repeated
    assert set(latest["scores"]) == {SMALL, MEDIUM}
    assert list(latest["scores"][MEDIUM]) == EVAL_TYPES
    icl = latest["scores"][MEDIUM]["icl-eval"][PRIMARY]
    assert icl == {"mean": 0.30, "low": pytest.approx(0.18), "high": pytest.approx(0.42), "n": 20}


def test_runs_can_be_limited_and_filtered_by_status(client, tokens):
    headers = bearer(tokens["admin"])
    assert client.get(f"/flywheel/api/workloads/{TOOLS}/runs?limit=1", headers=headers).json()["total"] == 1
    assert client.get(f"/flywheel/api/workloads/{FAQ}/runs?status=completed", headers=headers).json()["runs"] == []
    bad = client.get(f"/flywheel/api/workloads/{TOOLS}/runs?status=done", headers=headers)
    assert bad.status_code == 400
    assert "done" in bad.json()["detail"]


def test_run_has_candidates_with_scores_intervals_compute_cases_and_verdicts(client, tokens, demo_results):
    response = client.get(run_url(demo_results.second_run), headers=bearer(tokens["admin"]))
    assert response.status_code == 200
    body = response.json()
    assert body["run"]["status"] == "completed"
    assert body["run"]["summary"]["surfaced"] == [f"{SMALL} (customized-eval)"]
    assert body["llm_judge"]["model_name"] == "meta/llama-3.3-70b-instruct"
    candidates = {c["model_name"]: c for c in body["candidates"]}
    assert list(candidates) == [SMALL, MEDIUM]
    small = candidates[SMALL]
    assert small["status"] == "completed"
    assert small["customization"]["customized_model"] == "flywheel/llama-3.2-1b-instruct-ft"
    assert [e["eval_type"] for e in small["evaluations"]] == EVAL_TYPES
    customized = small["evaluations"][2]
    assert customized["scores"][PRIMARY] == 0.95
    assert customized["ci"][PRIMARY]["low"] == pytest.approx(0.83)
    assert customized["latency"]["p95_ms"] == 1030.0
    assert customized["tokens"]["mean_total"] == 650.0
    assert customized["divergent_cases"][0]["reference"][0]["function"]["name"] == "cancel_order"
    assert customized["verdict"]["decision"] == "surface"
    assert small["evaluations"][0]["verdict"] is None  # the base model is the yardstick, not judged
    medium_icl = candidates[MEDIUM]["evaluations"][1]
    assert medium_icl["verdict"]["decision"] == "hold"
    assert medium_icl["regressions"][0]["previous_run"] == demo_results.first_run.split("/", 1)[1]


def test_run_ids_with_special_characters_round_trip_encoded(client, tokens, demo_results):
    # '+' and ':' of Airflow run ids, percent-encoded by a careful client, reach the store intact.
    encoded = quote(demo_results.first_run, safe="/")
    response = client.get(f"/flywheel/api/runs/{encoded}", headers=bearer(tokens["admin"]))
    assert response.status_code == 200
    assert response.json()["run"]["flywheel_run_id"] == demo_results.first_run


def test_unknown_ids_are_404_and_malformed_ids_400(client, tokens):
    headers = bearer(tokens["admin"])
    missing = client.get(run_url(f"{TOOLS_DAG}/manual__2030-01-01T00:00:00+00:00"), headers=headers)
    assert missing.status_code == 404
    assert "not in the results store" in missing.json()["detail"]
    unknown_workload = client.get("/flywheel/api/workloads/no-such-workload/runs", headers=headers)
    assert unknown_workload.status_code == 404
    assert "no-such-workload" in unknown_workload.json()["detail"]
    malformed = client.get(run_url("not-a-run-id"), headers=headers)
    assert malformed.status_code == 400
    assert "<dag_id>/<run_id>" in malformed.json()["detail"]


def test_settings_are_read_per_request_and_their_errors_are_reported(client, tokens, monkeypatch, tmp_path):
    monkeypatch.setenv("FLYWHEEL_CONFIG", str(tmp_path / "missing.yaml"))
    response = client.get("/flywheel/api/workloads", headers=bearer(tokens["admin"]))
    assert response.status_code == 503
    assert "missing.yaml" in response.json()["detail"]


# -- the page ---------------------------------------------------------------------------------------


def test_page_without_a_token_redirects_to_airflow_login(client):
    response = client.get("/flywheel/?workload=" + TOOLS)
    assert response.status_code == 303
    location = response.headers["location"]
    assert location.startswith("/auth/login")
    assert "next=" in location and quote("/flywheel/", safe="") in location


def test_page_shows_the_latest_runs_candidates_scores_and_cases(client, tokens, demo_results):
    client.cookies.set("_token", tokens["viewer"])
    response = client.get("/flywheel/")
    assert response.status_code == 200
    assert "script-src" not in response.headers["content-security-policy"]  # no script may run at all
    page = response.text
    # Workloads -> runs -> candidates of the latest run.
    assert TOOLS in page and FAQ in page
    assert demo_results.second_run.split("/", 1)[1] in page and demo_results.first_run.split("/", 1)[1] in page
    assert SMALL in page and MEDIUM in page
    # Scores with their 95% intervals, latency and tokens.
    assert "0.950" in page and "[0.830, 1.000]" in page
    assert "1,030 ms" in page and "1,550" in page
    # Verdicts, the regression and the divergent cases (escaped: shown, never run).
    assert "surface" in page and "Regression" in page
    assert "divergent case" in page and "cancel_order" in page
    assert "<script>" not in page and "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
    assert HOSTILE_PROMPT not in page
    # One chart per candidate and score key, with a point per run and eval type.
    charts = re.findall(r'<svg class="trend".*?</svg>', page, flags=re.S)
    assert len(charts) == 2 * 3
    assert all(chart.count("<circle") == 2 * 3 for chart in charts)


def test_page_selects_a_run_and_workload_from_the_query(client, tokens, demo_results):
    client.cookies.set("_token", tokens["admin"])
    first = client.get("/flywheel/", params={"run": demo_results.first_run}).text
    selected_row = re.search(r'<tr class="active">.*?</tr>', first, flags=re.S).group(0)
    assert demo_results.first_run.split("/", 1)[1] in selected_row
    assert "Regression" not in first  # only the second run flags one
    failed = client.get("/flywheel/", params={"workload": FAQ}).text
    assert "only 12 usable records" in failed and "failed" in failed
    assert f"/dags/{FAQ_DAG}" in failed  # link back into Airflow


def test_page_in_airflows_frame_offers_no_links_the_sandbox_would_block(client, tokens):
    client.cookies.set("_token", tokens["admin"])
    alone = client.get("/flywheel/", params={"workload": FAQ}).text
    framed = client.get("/flywheel/", params={"workload": FAQ}, headers={"Sec-Fetch-Dest": "iframe"}).text
    assert 'target="_top"' in alone
    assert 'target="_top"' not in framed and FAQ_DAG in framed


def test_page_reports_unknown_ids(client, tokens):
    client.cookies.set("_token", tokens["admin"])
    response = client.get("/flywheel/", params={"workload": "no-such-workload"})
    assert response.status_code == 404
    assert "no-such-workload" in response.text and "neither configured nor recorded" in response.text


# -- the plugin -------------------------------------------------------------------------------------


def test_plugin_is_loaded_by_airflow_with_app_and_nav_entry():
    from airflow import plugins_manager
    from airflow.api_fastapi.app import RESERVED_URL_PREFIXES

    plugins, errors = plugins_manager._get_plugins()
    assert not {path: error for path, error in errors.items() if "flywheel_ui" in path}
    plugin = next(p for p in plugins if p.name == "flywheel_ui")
    (mounted,) = plugin.fastapi_apps
    assert mounted["url_prefix"] == flywheel_ui.URL_PREFIX
    assert not any(mounted["url_prefix"].startswith(prefix) for prefix in RESERVED_URL_PREFIXES)
    (view,) = plugin.external_views
    assert view["href"] == "/flywheel/" and view["url_route"] and view["destination"] == "nav"


def test_a_regression_stored_on_the_evaluation_is_flagged_without_a_summary():
    """aggregate_results writes regressions on the evaluation too (``extra.regressions``): a run whose
    summary is missing (report or summary step failed) still shows the flag."""
    flagged = {"key": PRIMARY, "previous_run": "manual__a", "previous": 0.75, "current": 0.4, "delta": -0.35,
               "regression": True, "reason": "fell"}
    run = {
        "summary": {},
        "evaluations": [
            {"model_name": SMALL, "eval_type": "customized-eval", "status": "completed", "scores": {PRIMARY: 0.4},
             "ci": {}, "extra": {"regressions": [flagged], "compared_with": ["manual__a"]}},
            {"model_name": SMALL, "eval_type": "base-eval", "status": "completed", "scores": {PRIMARY: 0.15},
             "ci": {}, "extra": {"regressions": [], "compared_with": ["manual__a"]}},
        ],
    }
    [candidate] = flywheel_ui.candidate_views(run)
    by_type = {e["eval_type"]: e for e in candidate["evaluations"]}
    assert by_type["customized-eval"]["regressions"] == [flagged]
    assert by_type["base-eval"]["regressions"] == []
    html = flywheel_ui._render_candidate(candidate, [PRIMARY], PRIMARY, [], "x/manual__b")
    assert "regression: customized-eval" in html
    assert "Regression</b> in customized-eval" in html and "vs run manual__a" in html
