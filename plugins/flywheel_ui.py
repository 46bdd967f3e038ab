"""Flywheel results inside the Airflow UI: a results page and the JSON API behind it.

An Airflow 3 plugin. Its FastAPI app is mounted by the api-server at ``/flywheel``:

- ``GET /flywheel/``: the results page (server-rendered HTML, inline SVG charts, no script):
  workloads -> runs -> candidates with scores, 95% intervals, latency and tokens, verdicts, a
  chart of each score across runs, and the divergent cases for spot-checks. Query parameters
  ``workload``, ``run`` (a ``flywheel_run_id``) and ``history`` (runs shown, default 20).
- ``GET /flywheel/api/workloads``: the workloads (configured or with recorded runs).
- ``GET /flywheel/api/workloads/{workload_id}/runs``: a workload's runs, newest first, with
  each run's scores and intervals per candidate and eval type (``limit``, ``status``).
- ``GET /flywheel/api/runs/{flywheel_run_id}``: one run with its candidates (NIM, customization,
  evaluations with scores, intervals, latency, tokens, divergent cases, verdicts) and its judge.

An ``external_views`` entry puts the page in Airflow's navigation (Browse -> Flywheel results),
where the Airflow UI shows it in a frame and keeps the frame's address in its own URL.

**Access.** The api-server serves plugin apps without Airflow's authentication, so this app
checks it itself, with Airflow's own code: a request must carry a valid Airflow JWT, either the
``Authorization: Bearer`` token of the REST API or the ``_token`` cookie the Airflow UI sets at
login (an expired, revoked or forged token is refused), and the configured auth manager must let
the user read the DAG runs of the workload's DAG (``is_authorized_dag(GET, RUN)``); workloads
the user may not read are left out. The page redirects to Airflow's login when there is no
valid token; the API answers 401/403.

**Data.** Settings are loaded at request time (``$FLYWHEEL_CONFIG`` or the bundled file), never
at import, and the page reads the ``results`` section of the global defaults (a workload that
overrides ``results`` with another store is not shown). Nothing here writes.
"""

from __future__ import annotations

import html
import json
import logging
import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import Depends, FastAPI, HTTPException, Query, Request, status
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from airflow.plugins_manager import AirflowPlugin

log = logging.getLogger(__name__)

URL_PREFIX = "/flywheel"
NAV_ROUTE = "flywheel-results"
DEFAULT_HISTORY = 20
MAX_HISTORY = 200
EVAL_TYPES = ("base-eval", "icl-eval", "customized-eval")
EVAL_LABELS = {"base-eval": "base", "icl-eval": "ICL", "customized-eval": "customized"}
EVAL_COLORS = {"base-eval": "#7c8594", "icl-eval": "#2f6fde", "customized-eval": "#0f9d6b"}
SCORE_LABELS = {
    "similarity": "similarity (1-10)",
    "function_name": "function name",
    "function_name_and_args_accuracy": "function name + args",
    "tool_calling_correctness": "tool-call correctness",
}
# The page runs no script; styles are inline; content (prompts, outputs) is untrusted text.
CONTENT_SECURITY_POLICY = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'self'"

StoreOpener = Callable[[], Any]


# -- settings and store -----------------------------------------------------------------------------


class FlywheelUnavailable(RuntimeError):
    """The settings or the results store cannot be read; the message says what to fix."""


def open_configured_store() -> Any:
    """The results store named by the global ``results`` settings (read now, not at import)."""
    from include.flywheel.config import ConfigError, load_config
    from include.flywheel.results import open_result_store

    try:
        return open_result_store(load_config().defaults.results)
    except ConfigError as exc:
        raise FlywheelUnavailable(f"the flywheel settings cannot be loaded: {exc}") from exc


def configured_workloads() -> dict[str, dict[str, Any]]:
    """``{workload_id: {"dag_id", "client_id"}}`` from the settings file (empty when it cannot be read)."""
    from include.flywheel.config import ConfigError, load_config

    try:
        config = load_config()
    except ConfigError as exc:
        log.warning("Flywheel settings cannot be loaded; showing recorded workloads only: %s", exc)
        return {}
    return {w.workload_id: {"dag_id": w.dag_id, "client_id": w.client_id} for w in config.workloads}


# -- access -----------------------------------------------------------------------------------------


async def airflow_user(request: Request) -> Any:
    """The Airflow user of this request, exactly as Airflow's REST API resolves it.

    Uses ``airflow.api_fastapi.core_api.security.get_user``: a bearer token wins, else the user
    that Airflow's JWT refresh middleware resolved from the ``_token`` cookie, else that cookie.

    Raises:
        HTTPException: 401 without a token or with an expired one, 403 with an invalid one.
    """
    from airflow.api_fastapi.core_api.security import bearer_scheme, get_user

    credentials = await bearer_scheme(request)
    return await get_user(request, None, credentials)


async def _user_or_none(request: Request) -> Any | None:
    """The Airflow user, or ``None`` when the request carries no valid token (the page then asks to log in)."""
    try:
        return await airflow_user(request)
    except HTTPException as exc:
        if exc.status_code in (status.HTTP_401_UNAUTHORIZED, status.HTTP_403_FORBIDDEN):
            return None
        raise


def can_read_dag_runs(user: Any, dag_id: str) -> bool:
    """Whether the auth manager lets ``user`` read the runs of DAG ``dag_id``."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity, DagDetails
    from airflow.configuration import conf

    team_name = None
    if conf.getboolean("core", "multi_team", fallback=False):
        from airflow.models.dag import DagModel

        team_name = DagModel.get_team_name(dag_id)
    return get_auth_manager().is_authorized_dag(
        method="GET", access_entity=DagAccessEntity.RUN, details=DagDetails(id=dag_id, team_name=team_name), user=user
    )


class Reader:
    """Reads for one request: the store, filtered to the DAGs the user may read."""

    def __init__(self, store: Any, user: Any) -> None:
        self.store = store
        self.user = user
        self._allowed: dict[str, bool] = {}
        self._workloads: list[dict[str, Any]] | None = None

    def allowed(self, dag_id: str | None) -> bool:
        if not dag_id:
            return False
        if dag_id not in self._allowed:
            self._allowed[dag_id] = can_read_dag_runs(self.user, dag_id)
        return self._allowed[dag_id]

    def _all_workloads(self) -> list[dict[str, Any]]:
        """Workloads with recorded runs plus configured ones without runs yet, sorted by id (unfiltered)."""
        if self._workloads is None:
            recorded = {summary["workload_id"]: dict(summary) for summary in self.store.list_workloads()}
            configured = configured_workloads()
            merged = []
            for workload_id in sorted(set(recorded) | set(configured)):
                summary = recorded.get(workload_id) or {
                    "workload_id": workload_id,
                    "client_id": configured[workload_id]["client_id"],
                    "dag_id": configured[workload_id]["dag_id"],
                    "runs": 0,
                    "statuses": {},
                    "last_run_id": None,
                    "last_status": None,
                    "last_started_at": None,
                }
                summary["configured"] = workload_id in configured
                merged.append(summary)
            self._workloads = merged
        return self._workloads

    def workloads(self) -> list[dict[str, Any]]:
        """The workloads whose DAG runs the user may read (see :meth:`_all_workloads`)."""
        return [summary for summary in self._all_workloads() if self.allowed(summary.get("dag_id"))]

    def workload(self, workload_id: str) -> dict[str, Any]:
        """One workload's summary.

        Raises:
            HTTPException: 404 when it is neither configured nor recorded, 403 when the user may
                not read its DAG's runs.
        """
        for summary in self._all_workloads():
            if summary["workload_id"] == workload_id:
                if not self.allowed(summary.get("dag_id")):
                    raise HTTPException(
                        status.HTTP_403_FORBIDDEN,
                        f"You may not read the runs of DAG {summary.get('dag_id')!r} (workload {workload_id!r}).",
                    )
                return summary
        raise HTTPException(
            status.HTTP_404_NOT_FOUND,
            f"Workload {workload_id!r} is neither configured nor recorded in the results store; "
            "GET /flywheel/api/workloads lists the known ones.",
        )

    def runs(self, workload_id: str, *, limit: int, statuses: list[str] | None = None) -> list[dict[str, Any]]:
        self.workload(workload_id)
        try:
            return self.store.list_runs(workload_id, status=statuses, limit=limit, with_children=True)
        except ValueError as exc:  # InvalidDocumentError: an unknown status
            raise HTTPException(status.HTTP_400_BAD_REQUEST, str(exc)) from None

    def run(self, flywheel_run_id: str) -> dict[str, Any]:
        from include.flywheel.results import InvalidDocumentError, split_flywheel_run_id

        try:
            dag_id, _ = split_flywheel_run_id(flywheel_run_id)
        except InvalidDocumentError as exc:
            raise HTTPException(status.HTTP_400_BAD_REQUEST, str(exc)) from None
        if not self.allowed(dag_id):
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"You may not read the runs of DAG {dag_id!r}.")
        run = self.store.get_run(flywheel_run_id)
        if run is None:
            raise HTTPException(
                status.HTTP_404_NOT_FOUND,
                f"Flywheel run {flywheel_run_id!r} is not in the results store; "
                "GET /flywheel/api/workloads/{workload_id}/runs lists a workload's runs.",
            )
        return run


# -- views of the stored documents ------------------------------------------------------------------


def _leaderboard(run: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    summary = run.get("summary") or {}
    entries = summary.get("leaderboard") or []
    return {entry["model"]: entry for entry in entries if isinstance(entry, Mapping) and "model" in entry}


def candidate_views(run: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One entry per candidate model: its NIM, customization and evaluations with their verdicts.

    Evaluations are ordered base -> icl -> customized; each carries ``verdict`` and
    ``regressions`` from the run's ``summary`` (what aggregate_results concluded; regressions
    also from the evaluation's ``extra.regressions``), or ``None`` and ``[]`` where neither has one.
    """
    leaderboard = _leaderboard(run)
    nims = {doc["model_name"]: doc for doc in run.get("nims") or []}
    customizations = {doc["model_name"]: doc for doc in run.get("customizations") or []}
    evaluations: dict[str, list[dict[str, Any]]] = {}
    for doc in run.get("evaluations") or []:
        evaluations.setdefault(doc["model_name"], []).append(doc)
    models = sorted(set(nims) | set(customizations) | set(evaluations) | set(leaderboard))
    views = []
    for model in models:
        entry = leaderboard.get(model, {})
        verdicts = entry.get("verdicts") or {}
        regressions = entry.get("regressions") or {}
        ordered = sorted(
            evaluations.get(model, []),
            key=lambda doc: EVAL_TYPES.index(doc["eval_type"]) if doc["eval_type"] in EVAL_TYPES else len(EVAL_TYPES),
        )
        views.append(
            {
                "model_name": model,
                "status": (nims.get(model) or {}).get("status") or entry.get("status"),
                "failed_steps": list(entry.get("failed_steps") or []),
                "nim": nims.get(model),
                "customization": customizations.get(model),
                "evaluations": [
                    {
                        **doc,
                        "verdict": verdicts.get(doc["eval_type"]),
                        # The run summary's, else the evaluation's own record (aggregate writes both).
                        "regressions": list(
                            regressions.get(doc["eval_type"]) or (doc.get("extra") or {}).get("regressions") or []
                        ),
                    }
                    for doc in ordered
                ],
            }
        )
    return views


def run_scores(run: Mapping[str, Any]) -> dict[str, dict[str, dict[str, dict[str, Any]]]]:
    """``{model: {eval_type: {score: {"mean", "low", "high", "n"}}}}`` of a run (intervals where known)."""
    scores: dict[str, dict[str, dict[str, dict[str, Any]]]] = {}
    for doc in run.get("evaluations") or []:
        intervals = doc.get("ci") or {}
        values = {}
        for key, value in (doc.get("scores") or {}).items():
            interval = intervals.get(key) or {}
            values[key] = {
                "mean": interval.get("mean", value),
                "low": interval.get("low"),
                "high": interval.get("high"),
                "n": interval.get("n"),
            }
        if values:
            scores.setdefault(doc["model_name"], {})[doc["eval_type"]] = values
    return scores


def _run_head(run: Mapping[str, Any]) -> dict[str, Any]:
    """A run document without its children (they are shown per candidate)."""
    return {key: value for key, value in run.items() if key not in ("nims", "evaluations", "customizations", "llm_judge")}


def _score_keys(runs: Iterable[Mapping[str, Any]]) -> list[str]:
    from include.flywheel.scoring import SCORE_RANGES

    found = {key for run in runs for doc in run.get("evaluations") or [] for key in (doc.get("scores") or {})}
    known = [key for key in SCORE_RANGES if key in found]
    return known + sorted(found - set(known))


# -- the app ----------------------------------------------------------------------------------------


def create_app(open_store: StoreOpener | None = None) -> FastAPI:
    """Build the plugin's FastAPI app.

    Args:
        open_store: Returns the results store to read, called once per request. Default: the
            store the flywheel settings name (:func:`open_configured_store`).
    """
    opener = open_store or open_configured_store
    app = FastAPI(
        title="Flywheel results",
        description="Results of flywheel runs: workloads, runs, candidates, scores with 95% intervals.",
        # The schema only; no docs page (it would load its scripts from a CDN).
        docs_url=None,
        redoc_url=None,
        openapi_url="/api/openapi.json",
    )

    @contextmanager
    def reading(user: Any) -> Iterator[Reader]:
        try:
            store = opener()
        except FlywheelUnavailable as exc:
            log.warning("Flywheel results unavailable: %s", exc)
            raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(exc)) from None
        from include.flywheel.results import ResultStoreError

        try:
            with store:
                yield Reader(store, user)
        except ResultStoreError as exc:
            if isinstance(exc, ValueError | LookupError):
                raise
            log.warning("Flywheel results store %r cannot be read: %s", store, exc)
            raise HTTPException(
                status.HTTP_503_SERVICE_UNAVAILABLE, f"the results store cannot be read: {exc}"
            ) from None

    # Endpoints are plain functions: FastAPI runs them in its thread pool, so store reads and
    # permission checks (which may query a database) never block the api-server's event loop.
    @app.get("/api/workloads", summary="Workloads with their run counts and latest run")
    def api_workloads(user: Any = Depends(airflow_user)) -> JSONResponse:
        with reading(user) as reader:
            workloads = reader.workloads()
        return JSONResponse({"workloads": workloads, "total": len(workloads)})

    @app.get("/api/workloads/{workload_id}/runs", summary="A workload's runs, newest first, with their scores")
    def api_runs(
        workload_id: str,
        limit: int = Query(DEFAULT_HISTORY, ge=1, le=MAX_HISTORY, description="At most this many runs."),
        run_status: list[str] | None = Query(None, alias="status", description="Only runs in these statuses."),
        user: Any = Depends(airflow_user),
    ) -> JSONResponse:
        with reading(user) as reader:
            summary = reader.workload(workload_id)
            runs = reader.runs(workload_id, limit=limit, statuses=run_status)
        body = [{**_run_head(run), "scores": run_scores(run)} for run in runs]
        return JSONResponse({"workload": summary, "runs": body, "total": len(body)})

    @app.get("/api/runs/{flywheel_run_id:path}", summary="One run with its candidates, scores and verdicts")
    def api_run(flywheel_run_id: str, user: Any = Depends(airflow_user)) -> JSONResponse:
        with reading(user) as reader:
            run = reader.run(flywheel_run_id)
        return JSONResponse(
            {"run": _run_head(run), "candidates": candidate_views(run), "llm_judge": run.get("llm_judge")}
        )

    @app.get("/", response_class=HTMLResponse, summary="The results page")
    def page(
        request: Request,
        workload: str | None = None,
        run: str | None = None,
        history: int = Query(DEFAULT_HISTORY, ge=1, le=MAX_HISTORY),
        user: Any = Depends(_user_or_none),
    ) -> Response:
        if user is None:
            return RedirectResponse(_login_url(request), status_code=status.HTTP_303_SEE_OTHER)
        try:
            with reading(user) as reader:
                body = render_page(reader, request, workload=workload, run_id=run, history=history)
            code = status.HTTP_200_OK
        except HTTPException as exc:
            body = render_error(exc.status_code, str(exc.detail))
            code = exc.status_code
        return HTMLResponse(body, status_code=code, headers={"Content-Security-Policy": CONTENT_SECURITY_POLICY})

    return app


def _login_url(request: Request) -> str:
    from airflow.api_fastapi.app import get_auth_manager

    return get_auth_manager().get_url_login(next_url=str(request.url))


# -- HTML -------------------------------------------------------------------------------------------


def h(value: Any) -> str:
    """Escape any value for HTML text or a quoted attribute."""
    return html.escape("" if value is None else str(value), quote=True)


def _airflow_root(request: Request) -> str:
    """The Airflow UI's base path (this app is mounted under it at URL_PREFIX)."""
    root = request.scope.get("root_path", "")
    return root[: -len(URL_PREFIX)] if root.endswith(URL_PREFIX) else ""


def _airflow_link(request: Request, path: str, label: str) -> str:
    """A link to a page of Airflow's UI, opened in the whole window.

    Inside Airflow's own plugin frame there is none: that frame is sandboxed without
    ``allow-top-navigation``, so the browser would block the click (Airflow's navigation is
    right there instead). Browsers say which it is in ``Sec-Fetch-Dest``.
    """
    if request.headers.get("sec-fetch-dest") == "iframe":
        return ""
    return f' <a class="ext" target="_top" href="{h(_airflow_root(request) + path)}">{h(label)} &#x2197;</a>'


def _page_link(**params: Any) -> str:
    return "?" + urlencode({key: value for key, value in params.items() if value not in (None, "")})


def _short_time(stamp: str | None) -> str:
    """``2026-11-18T02:00:00.000Z`` -> ``2026-11-18 02:00``."""
    return stamp[:16].replace("T", " ") if isinstance(stamp, str) and len(stamp) >= 16 else (stamp or "-")


def _score_range(key: str) -> tuple[float, float]:
    from include.flywheel.scoring import SCORE_RANGES

    return SCORE_RANGES.get(key, (0.0, 1.0))


def _fmt_score(key: str, value: Any) -> str:
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        return "-"
    return f"{value:.2f}" if _score_range(key)[1] > 1 else f"{value:.3f}"


def _fmt_number(value: Any, unit: str = "") -> str:
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        return "-"
    text = f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"
    return text + unit


def _badge(value: str | None, *, kind: str | None = None) -> str:
    if not value:
        return ""
    css = kind or {
        "completed": "ok",
        "surface": "ok",
        "ready": "ok",
        "completed_with_errors": "warn",
        "insufficient_data": "warn",
        "hold": "muted",
        "failed": "bad",
        "cancelled": "muted",
        "running": "info",
        "running-evals": "info",
        "deploying-nim": "info",
        "pending": "muted",
    }.get(value, "muted")
    return f'<span class="badge {css}">{h(value.replace("_", " "))}</span>'


def render_error(code: int, message: str) -> str:
    return _document(
        f'<main class="main"><div class="notice bad"><strong>{code}</strong> {h(message)}</div>'
        f'<p><a href="{h(_page_link())}">Back to the results</a></p></main>'
    )


def render_page(reader: Reader, request: Request, *, workload: str | None, run_id: str | None, history: int) -> str:
    """The whole results page for the selected workload and run."""
    workloads = reader.workloads()
    selected = None
    if run_id and not workload:
        workload = reader.run(run_id)["workload_id"]
    if workload:
        selected = reader.workload(workload)
    elif workloads:
        selected = next((w for w in workloads if w["runs"]), workloads[0])
    sidebar = _render_sidebar(workloads, selected["workload_id"] if selected else None)
    if selected is None:
        main = (
            '<div class="empty"><h2>No workloads yet</h2><p>Configure workloads in '
            "<code>include/config/flywheel.yaml</code> and run a flywheel DAG; its results appear here.</p></div>"
        )
        return _document(_layout(sidebar, main))
    runs = reader.runs(selected["workload_id"], limit=history) if selected["runs"] else []
    current = None
    if run_id:
        current = next((r for r in runs if r["flywheel_run_id"] == run_id), None) or reader.run(run_id)
        if current["workload_id"] != selected["workload_id"]:
            raise HTTPException(
                status.HTTP_404_NOT_FOUND,
                f"Run {run_id!r} belongs to workload {current['workload_id']!r}, not {selected['workload_id']!r}.",
            )
    elif runs:
        current = runs[0]
    parts = [_render_workload_head(selected, request)]
    if not runs:
        parts.append('<div class="empty"><p>No runs recorded for this workload yet.</p></div>')
    else:
        parts.append(_render_runs_table(selected["workload_id"], runs, current, history))
    if current is not None:
        parts.append(_render_run(current, runs, request))
    return _document(_layout(sidebar, "".join(parts)))


def _layout(sidebar: str, main: str) -> str:
    return (
        '<header class="top"><span class="logo">&#x27f3;</span> Flywheel results'
        '<span class="sub">scores with 95% intervals &middot; nothing is promoted automatically</span></header>'
        f'<div class="layout"><nav class="side">{sidebar}</nav><main class="main">{main}</main></div>'
    )


def _render_sidebar(workloads: Sequence[Mapping[str, Any]], selected: str | None) -> str:
    items = []
    for workload in workloads:
        active = " active" if workload["workload_id"] == selected else ""
        runs = workload.get("runs") or 0
        items.append(
            f'<a class="wl{active}" href="{h(_page_link(workload=workload["workload_id"]))}">'
            f'<span class="wl-name">{h(workload["workload_id"])}</span>'
            f'<span class="wl-meta">{runs} run{"s" if runs != 1 else ""} {_badge(workload.get("last_status"))}</span></a>'
        )
    return '<div class="side-title">Workloads</div>' + ("".join(items) or '<p class="muted">none</p>')


def _render_workload_head(workload: Mapping[str, Any], request: Request) -> str:
    dag_id = workload.get("dag_id")
    link = _airflow_link(request, f"/dags/{quote(dag_id, safe='')}", "open DAG in Airflow") if dag_id else ""
    return (
        f'<section class="head"><h1>{h(workload["workload_id"])}</h1>'
        f'<div class="facts"><span>client <b>{h(workload.get("client_id") or "-")}</b></span>'
        f'<span>DAG <code>{h(dag_id or "-")}</code>{link}</span></div></section>'
    )


def _render_runs_table(workload_id: str, runs: Sequence[Mapping[str, Any]], current: Mapping[str, Any] | None,
                       history: int) -> str:
    rows = []
    for run in runs:
        active = current is not None and run["flywheel_run_id"] == current["flywheel_run_id"]
        summary = run.get("summary") or {}
        surfaced = summary.get("surfaced") or []
        counts = (run.get("record_counts") or {}).get("preparation") or {}
        window = run.get("log_window") or {}
        rows.append(
            f'<tr class="{"active" if active else ""}">'
            f'<td><a href="{h(_page_link(workload=workload_id, run=run["flywheel_run_id"], history=_history(history)))}">'
            f'{h(run["run_id"])}</a></td>'
            f"<td>{h(_short_time(run.get('started_at')))}</td>"
            f'<td class="wrap">{h(_short_time(window.get("start")))} &rarr; {h(_short_time(window.get("end")))}</td>'
            f"<td>{_badge(run.get('status'))}</td>"
            f"<td>{h(run.get('stage') or '-')}</td>"
            f'<td class="num">{h(counts.get("read", run.get("num_records", "-")))}</td>'
            f'<td class="wrap">{h(", ".join(surfaced)) if surfaced else "<span class=muted>none</span>"}</td></tr>'
        )
    return (
        f'<section class="card"><h2>Runs <span class="muted">(latest {len(runs)})</span></h2>'
        '<div class="scroll"><table class="runs"><thead><tr><th>run</th><th>started (UTC)</th><th>log window</th><th>status</th>'
        '<th>stage</th><th class="num">records</th><th>surfaced for review</th></tr></thead>'
        f'<tbody>{"".join(rows)}</tbody></table></div></section>'
    )


def _history(history: int) -> int | None:
    return None if history == DEFAULT_HISTORY else history


def _render_run(run: Mapping[str, Any], runs: Sequence[Mapping[str, Any]], request: Request) -> str:
    """The selected run: its facts, then one card per candidate (``runs`` feed the charts)."""
    summary = run.get("summary") or {}
    counts = (run.get("record_counts") or {}).get("preparation") or {}
    window = run.get("log_window") or {}
    judge = run.get("llm_judge") or {}
    airflow_run = _airflow_link(
        request, f"/dags/{quote(run['dag_id'], safe='')}/runs/{quote(run['run_id'], safe='')}", "open in Airflow"
    )
    facts = [
        f"<span>status {_badge(run.get('status'))}</span>",
        f"<span>stage <b>{h(run.get('stage') or '-')}</b></span>",
        f"<span>workload type <b>{h(run.get('workload_type') or '-')}</b></span>",
        f"<span>log window <b>{h(_short_time(window.get('start')))} &rarr; {h(_short_time(window.get('end')))}</b></span>",
        f"<span>records <b>{h(counts.get('read', '-'))}</b> read &middot; eval <b>{h(counts.get('eval_size', '-'))}</b>"
        f" &middot; train <b>{h(counts.get('train_size', '-'))}</b> &middot; val <b>{h(counts.get('val_size', '-'))}</b></span>",
        f"<span>judge <b>{h(judge.get('model_name') or '-')}</b></span>",
        f"<span>runtime <b>{_fmt_duration(run.get('runtime_seconds'))}</b></span>",
    ]
    notices = []
    if run.get("error"):
        notices.append(f'<div class="notice bad">{h(run["error"])}</div>')
    surfaced = summary.get("surfaced") or []
    notices.append(
        '<div class="notice ok"><b>Surfaced for human review:</b> '
        + (h(", ".join(surfaced)) if surfaced else "none")
        + ' <span class="muted">(a candidate whose interval overlaps the base model\'s is not called better)</span></div>'
    )
    candidates = candidate_views(run)
    regressed = [
        f'{c["model_name"]} {e["eval_type"]}' for c in candidates for e in c["evaluations"] if e.get("regressions")
    ]
    if regressed:
        notices.append(
            '<div class="notice bad regression"><b>Regression against earlier runs:</b> '
            + h(", ".join(regressed))
            + ' <span class="muted">(a score dropped beyond its interval; see the candidate below)</span></div>'
        )
    score_keys = _score_keys([run])
    primary = summary.get("primary_score")
    chronological = [r for r in reversed(runs) if r.get("evaluations")]
    cards = [_render_candidate(c, score_keys, primary, chronological, run["flywheel_run_id"]) for c in candidates]
    legend = "".join(
        f'<span class="key"><i style="background:{EVAL_COLORS[t]}"></i>{EVAL_LABELS[t]}</span>' for t in EVAL_TYPES
    )
    return (
        f'<section class="card run"><h2>Run <code>{h(run["run_id"])}</code> '
        f"{airflow_run}</h2>"
        f'<div class="facts">{"".join(facts)}</div>{"".join(notices)}</section>'
        f'<div class="legend">Eval types: {legend}<span class="muted">bars and whiskers: 95% bootstrap interval'
        " of the mean; charts: the same score across this workload's runs (ringed: this run)</span></div>"
        + ("".join(cards) or '<div class="empty"><p>No candidate results recorded for this run.</p></div>')
    )


def _render_candidate(candidate: Mapping[str, Any], score_keys: Sequence[str], primary: str | None,
                      chronological: Sequence[Mapping[str, Any]], current_run: str) -> str:
    model = candidate["model_name"]
    head = [f"<h3>{h(model)}</h3>", _badge(candidate.get("status"))]
    for evaluation in candidate["evaluations"]:
        verdict = evaluation.get("verdict")
        if verdict:
            head.append(
                f'<span class="verdict">{EVAL_LABELS.get(evaluation["eval_type"], h(evaluation["eval_type"]))}: '
                f'{_badge(verdict.get("decision"))}</span>'
            )
    if candidate.get("failed_steps"):
        head.append(f'<span class="badge bad">failed: {h(", ".join(candidate["failed_steps"]))}</span>')
    regressed = [e["eval_type"] for e in candidate["evaluations"] if e.get("regressions")]
    if regressed:
        head.append(f'<span class="badge bad regression">regression: {h(", ".join(regressed))}</span>')
    customization = candidate.get("customization") or {}
    if customization.get("customized_model"):
        head.append(f'<span class="muted small">customized model <code>{h(customization["customized_model"])}</code></span>')

    header_cells = "".join(
        f'<th class="{"primary" if key == primary else ""}">{h(SCORE_LABELS.get(key, key))}</th>' for key in score_keys
    )
    rows = []
    for evaluation in candidate["evaluations"]:
        cells = []
        for key in score_keys:
            cells.append(f"<td>{_score_cell(key, evaluation)}</td>")
        latency = evaluation.get("latency") or {}
        tokens = evaluation.get("tokens") or {}
        latency_text = _fmt_number(latency.get("mean_ms"), " ms")
        if latency.get("p95_ms") is not None:
            latency_text += f'<div class="muted small">p95 {_fmt_number(latency.get("p95_ms"), " ms")}</div>'
        token_text = (
            f'{_fmt_number(tokens.get("mean_total"))}<div class="muted small">{_fmt_number(tokens.get("mean_prompt"))} in'
            f' / {_fmt_number(tokens.get("mean_completion"))} out</div>'
            if tokens
            else "-"
        )
        error = f'<div class="err small">{h(evaluation["error"])}</div>' if evaluation.get("error") else ""
        rows.append(
            f'<tr><td><span class="dot" style="background:{EVAL_COLORS.get(evaluation["eval_type"], "#999")}"></span>'
            f'{h(evaluation["eval_type"])}{error}</td><td>{_badge(evaluation.get("status"))}</td>{"".join(cells)}'
            f'<td class="num">{latency_text}</td><td class="num">{token_text}</td></tr>'
        )
    table = (
        '<div class="scroll"><table class="scores"><thead><tr><th>evaluation</th><th>status</th>'
        f'{header_cells}<th class="num">latency / request</th><th class="num">tokens / request</th></tr></thead>'
        f'<tbody>{"".join(rows)}</tbody></table></div>'
        if rows
        else '<p class="muted">No evaluation recorded.</p>'
    )
    charts = "".join(
        _trend_chart(key, model, chronological, current_run, primary=key == primary) for key in score_keys
    )
    reasons = []
    for evaluation in candidate["evaluations"]:
        verdict = evaluation.get("verdict")
        if verdict and verdict.get("reasons"):
            items = "".join(f"<li>{h(reason)}</li>" for reason in verdict["reasons"])
            reasons.append(
                f'<div class="reasons"><b>{h(evaluation["eval_type"])}</b> {_badge(verdict.get("decision"))}<ul>{items}</ul></div>'
            )
        regressions = evaluation.get("regressions") or []
        if regressions:
            # One line per score; the full reasons are in the verdict above and in the API.
            items = "".join(
                f'<li title="{h(r.get("reason"))}">{h(SCORE_LABELS.get(r.get("key"), r.get("key")))}: '
                f'{_fmt_score(r.get("key"), r.get("previous"))} &rarr; <b>{_fmt_score(r.get("key"), r.get("current"))}</b>'
                f' <span class="muted">vs run {h(r.get("previous_run"))}</span></li>'
                for r in regressions
            )
            reasons.append(
                f'<div class="notice bad small"><b>Regression</b> in {h(evaluation["eval_type"])} '
                f"(dropped beyond its interval):<ul>{items}</ul></div>"
            )
    divergent = "".join(_divergent_block(evaluation) for evaluation in candidate["evaluations"])
    return (
        f'<section class="card cand"><div class="cand-head">{"".join(head)}</div>{table}'
        f'<div class="charts">{charts}</div>{"".join(reasons)}{divergent}</section>'
    )


def _score_cell(key: str, evaluation: Mapping[str, Any]) -> str:
    value = (evaluation.get("scores") or {}).get(key)
    if value is None:
        return '<span class="muted">-</span>'
    interval = (evaluation.get("ci") or {}).get(key)
    if not interval:
        return f'<span class="score">{_fmt_score(key, value)}</span>'
    low, high, mean = interval.get("low"), interval.get("high"), interval.get("mean", value)
    return (
        f'<span class="score">{_fmt_score(key, mean)}</span>'
        f'<span class="ci">[{_fmt_score(key, low)}, {_fmt_score(key, high)}]</span>'
        f'{_interval_bar(key, mean, low, high, interval.get("n"))}'
    )


def _interval_bar(key: str, mean: float, low: float, high: float, n: Any) -> str:
    lo_range, hi_range = _score_range(key)
    width, height = 90.0, 10.0

    def x(value: float) -> float:
        span = hi_range - lo_range or 1.0
        return round(max(0.0, min(1.0, (value - lo_range) / span)) * width, 2)

    return (
        f'<svg class="bar" width="{width:.0f}" height="{height:.0f}" viewBox="0 0 {width:.0f} {height:.0f}" role="img">'
        f"<title>{h(key)}: {_fmt_score(key, mean)} [{_fmt_score(key, low)}, {_fmt_score(key, high)}], n={h(n)}</title>"
        f'<rect x="0" y="4" width="{width:.0f}" height="2" rx="1" fill="var(--track)"/>'
        f'<rect x="{x(low)}" y="2" width="{max(x(high) - x(low), 1.5)}" height="6" rx="2" fill="var(--accent)" opacity="0.45"/>'
        f'<rect x="{x(mean) - 1}" y="0" width="2" height="10" fill="var(--accent)"/></svg>'
    )


def _trend_chart(key: str, model: str, runs: Sequence[Mapping[str, Any]], current_run: str, *, primary: bool) -> str:
    """A small inline SVG: ``key`` of ``model`` across runs, one series per eval type, with intervals."""
    lo_range, hi_range = _score_range(key)
    width, height, left, right, top, bottom = 300.0, 132.0, 34.0, 10.0, 10.0, 22.0
    plot_w, plot_h = width - left - right, height - top - bottom
    points: dict[str, list[tuple[float, dict[str, Any], Mapping[str, Any]]]] = {}
    for index, run in enumerate(runs):
        for evaluation in run.get("evaluations") or []:
            if evaluation.get("model_name") != model or key not in (evaluation.get("scores") or {}):
                continue
            interval = (evaluation.get("ci") or {}).get(key) or {}
            values = {
                "mean": interval.get("mean", evaluation["scores"][key]),
                "low": interval.get("low"),
                "high": interval.get("high"),
                "n": interval.get("n"),
            }
            points.setdefault(evaluation["eval_type"], []).append((index, values, run))
    count = max(len(runs), 1)

    inset = 12.0  # keeps the first and last runs clear of the axis labels and the frame

    def x(index: int) -> float:
        inner = plot_w - 2 * inset
        return round(left + inset + (inner / 2 if count == 1 else index * inner / (count - 1)), 2)

    def y(value: float) -> float:
        span = hi_range - lo_range or 1.0
        return round(top + plot_h - max(0.0, min(1.0, (value - lo_range) / span)) * plot_h, 2)

    parts = [
        f'<svg class="trend" viewBox="0 0 {width:.0f} {height:.0f}" role="img">',
        f"<title>{h(key)} of {h(model)} across {len(runs)} run(s)</title>",
    ]
    for fraction in (0.0, 0.5, 1.0):
        value = lo_range + fraction * (hi_range - lo_range)
        parts.append(
            f'<line x1="{left}" x2="{width - right}" y1="{y(value)}" y2="{y(value)}" stroke="var(--grid)" stroke-width="1"/>'
            f'<text x="{left - 4}" y="{y(value) + 3}" text-anchor="end" class="axis">{_fmt_axis(value)}</text>'
        )
    for index, run in enumerate(runs):
        if run["flywheel_run_id"] == current_run:
            parts.append(
                f'<rect x="{x(index) - 6}" y="{top}" width="12" height="{plot_h}" fill="var(--accent)" opacity="0.08"/>'
            )
    if runs:
        parts.append(
            f'<text x="{x(0)}" y="{height - 5}" text-anchor="{"middle" if len(runs) == 1 else "start"}" class="axis">'
            f'{h(_short_time(runs[0].get("started_at"))[5:])}</text>'
        )
        if len(runs) > 1:
            parts.append(
                f'<text x="{width - right}" y="{height - 5}" text-anchor="end" class="axis">'
                f'{h(_short_time(runs[-1].get("started_at"))[5:])}</text>'
            )
    for eval_type in EVAL_TYPES + tuple(sorted(set(points) - set(EVAL_TYPES))):
        series = points.get(eval_type)
        if not series:
            continue
        color = EVAL_COLORS.get(eval_type, "#999")
        if len(series) > 1:
            path = " ".join(f"{x(i)},{y(v['mean'])}" for i, v, _ in series)
            # The base model is the yardstick: dashed, so it stays apart from an ICL line on top of it.
            dash = ' stroke-dasharray="4 3"' if eval_type == "base-eval" else ""
            parts.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="1.6"{dash}/>')
        for index, values, run in series:
            cx = x(index) + {"base-eval": -3, "icl-eval": 0, "customized-eval": 3}.get(eval_type, 0)
            if values["low"] is not None and values["high"] is not None:
                parts.append(
                    f'<line x1="{cx}" x2="{cx}" y1="{y(values["low"])}" y2="{y(values["high"])}" '
                    f'stroke="{color}" stroke-width="1.2" opacity="0.7"/>'
                )
            ring = ' stroke="var(--fg)" stroke-width="1.2"' if run["flywheel_run_id"] == current_run else ""
            label = (
                f"{run['run_id']} · {eval_type}: {_fmt_score(key, values['mean'])}"
                + (f" [{_fmt_score(key, values['low'])}, {_fmt_score(key, values['high'])}]" if values["low"] is not None else "")
            )
            parts.append(
                f'<circle cx="{cx}" cy="{y(values["mean"])}" r="3" fill="{color}"{ring}><title>{h(label)}</title></circle>'
            )
    if not points:
        parts.append(f'<text x="{left + plot_w / 2}" y="{top + plot_h / 2}" text-anchor="middle" class="axis">no data</text>')
    parts.append("</svg>")
    # The star marks the score verdicts are decided on.
    title = h(SCORE_LABELS.get(key, key)) + (' <span title="primary score">&#9733;</span>' if primary else "")
    return f'<figure class="chart"><figcaption>{title}</figcaption>{"".join(parts)}</figure>'


def _fmt_duration(seconds: Any) -> str:
    if not isinstance(seconds, int | float) or isinstance(seconds, bool) or not math.isfinite(seconds):
        return "-"
    minutes, rest = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    return f"{minutes} min {rest:02d} s" if minutes else f"{rest} s"


def _fmt_axis(value: float) -> str:
    return f"{value:g}" if value == int(value) else f"{value:.1f}"


def _as_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, indent=1, ensure_ascii=False, sort_keys=True)


def _divergent_block(evaluation: Mapping[str, Any]) -> str:
    cases = evaluation.get("divergent_cases") or []
    if not cases:
        return ""
    rows = []
    for case in cases:
        scores = case.get("scores") or {}
        score_text = ", ".join(f"{h(k)} {_fmt_score(k, v)}" for k, v in scores.items()) if isinstance(scores, Mapping) else ""
        rows.append(
            f'<tr><td class="num">{h(case.get("index", ""))}</td><td><pre>{h(_as_text(case.get("prompt")))}</pre></td>'
            f'<td><pre>{h(_as_text(case.get("reference")))}</pre></td><td><pre>{h(_as_text(case.get("output")))}</pre></td>'
            f'<td class="small">{score_text}</td></tr>'
        )
    return (
        f'<details class="divergent"><summary>{len(cases)} divergent case{"s" if len(cases) != 1 else ""} in '
        f'{h(evaluation["eval_type"])} <span class="muted">(candidate differs from the reference; for spot-checks)</span>'
        '</summary><div class="scroll"><table class="cases"><thead><tr><th class="num">#</th><th>prompt (last user turn)</th>'
        f'<th>reference</th><th>candidate output</th><th>row scores</th></tr></thead><tbody>{"".join(rows)}</tbody></table></div></details>'
    )


_STYLE = """
:root{--bg:#f6f7f9;--card:#fff;--fg:#1b2330;--muted:#6b7480;--line:#e3e6ea;--grid:#eceef1;--track:#dfe3e8;
--accent:#2f6fde;--ok:#0f9d6b;--okbg:#e5f6ef;--warn:#a86a00;--warnbg:#fff3da;--bad:#c62f3b;--badbg:#fde8ea;
--info:#2f6fde;--infobg:#e7effd;--mutedbg:#eef0f3}
@media (prefers-color-scheme: dark){:root{--bg:#12161c;--card:#1a2029;--fg:#e4e8ee;--muted:#95a0ad;--line:#2a323d;
--grid:#252c36;--track:#333c48;--okbg:#123428;--warnbg:#3a2d12;--badbg:#3d1a1f;--infobg:#172a4a;--mutedbg:#262d37}}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--fg);font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif}
a{color:var(--accent);text-decoration:none}a:hover{text-decoration:underline}
code{font:12px ui-monospace,SFMono-Regular,Menlo,monospace;background:var(--mutedbg);padding:1px 4px;border-radius:4px}
.top{padding:12px 20px;font-weight:600;font-size:16px;border-bottom:1px solid var(--line);background:var(--card)}
.top .logo{color:var(--accent)}.top .sub{font-weight:400;color:var(--muted);font-size:13px;margin-left:12px}
.layout{display:flex;align-items:flex-start;gap:18px;padding:16px 20px}
.side{flex:0 0 210px;position:sticky;top:12px}
.side-title{font-size:12px;text-transform:uppercase;letter-spacing:.05em;color:var(--muted);margin:4px 0 8px}
.wl{display:block;padding:8px 10px;border-radius:8px;color:var(--fg);margin-bottom:4px;border:1px solid transparent}
.wl:hover{background:var(--card);text-decoration:none;border-color:var(--line)}
.wl.active{background:var(--card);border-color:var(--accent)}
.wl-name{display:block;font-weight:600;word-break:break-all}.wl-meta{font-size:12px;color:var(--muted)}
.main{flex:1;min-width:0}
.head h1{margin:0 0 4px;font-size:22px}
.facts{display:flex;flex-wrap:wrap;gap:6px 18px;color:var(--muted);font-size:13px;margin:6px 0}
.facts b{color:var(--fg);font-weight:600}
.card{background:var(--card);border:1px solid var(--line);border-radius:10px;padding:14px 16px;margin:14px 0}
.card h2{margin:0 0 10px;font-size:16px}.card h3{margin:0;font-size:15px}
table{border-collapse:collapse;width:100%}
th,td{padding:6px 8px;border-bottom:1px solid var(--line);text-align:left;vertical-align:top}
th{font-size:12px;color:var(--muted);font-weight:600;white-space:nowrap}
th.primary{color:var(--fg)}
td.num,th.num{text-align:right;white-space:nowrap}
tr.active td{background:var(--infobg)}
.runs td{white-space:nowrap}.runs td.wrap{white-space:normal;min-width:140px}
.badge{display:inline-block;padding:1px 8px;border-radius:999px;font-size:12px;font-weight:600;white-space:nowrap}
.badge.ok{background:var(--okbg);color:var(--ok)}.badge.warn{background:var(--warnbg);color:var(--warn)}
.badge.bad{background:var(--badbg);color:var(--bad)}.badge.info{background:var(--infobg);color:var(--info)}
.badge.muted{background:var(--mutedbg);color:var(--muted)}
.notice{padding:8px 12px;border-radius:8px;margin:8px 0;font-size:13px}
.notice.ok{background:var(--okbg)}.notice.bad{background:var(--badbg)}.notice ul{margin:4px 0 0 18px;padding:0}
.muted{color:var(--muted)}.small{font-size:12px}.err{color:var(--bad)}
.ext{font-size:12px;font-weight:400;margin-left:8px}
.cand-head{display:flex;flex-wrap:wrap;align-items:center;gap:8px;margin-bottom:8px}
.verdict{font-size:12px;color:var(--muted)}
.score{font-weight:600;font-variant-numeric:tabular-nums}
.ci{color:var(--muted);font-size:12px;margin-left:4px;font-variant-numeric:tabular-nums}
svg.bar{display:block;margin-top:3px}
.dot{display:inline-block;width:9px;height:9px;border-radius:50%;margin-right:6px}
.charts{display:flex;flex-wrap:wrap;gap:10px;margin:12px 0 4px}
.chart{margin:0;border:1px solid var(--line);border-radius:8px;padding:6px 8px 2px;flex:1 1 260px;max-width:420px}
svg.trend{display:block;width:100%;height:auto}
.chart figcaption{font-size:12px;color:var(--muted);font-weight:600}
svg text.axis{font-size:9px;fill:var(--muted)}
.legend{display:flex;flex-wrap:wrap;gap:12px;align-items:center;font-size:12px;margin:6px 2px}
.legend .key i{display:inline-block;width:10px;height:10px;border-radius:50%;margin-right:4px;vertical-align:-1px}
.reasons{font-size:13px;margin:8px 0}.reasons ul{margin:4px 0 0 18px;padding:0}
.divergent{margin-top:8px;border-top:1px dashed var(--line);padding-top:6px}
.divergent summary{cursor:pointer;font-size:13px;font-weight:600}
.cases pre{margin:0;white-space:pre-wrap;word-break:break-word;max-height:160px;overflow:auto;
font:12px ui-monospace,SFMono-Regular,Menlo,monospace}
.cases td{width:28%}.cases td.num,.cases td.small{width:auto}
.empty{padding:30px;text-align:center;color:var(--muted)}
.scroll{overflow-x:auto}
.scores td{white-space:nowrap}.scores td .err{white-space:normal}
@media (max-width:900px){.layout{flex-direction:column}.side{position:static;flex:none;width:100%}}
"""


def _document(body: str) -> str:
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1"><title>Flywheel results</title>'
        f"<style>{_STYLE}</style></head><body>{body}</body></html>"
    )


# -- the plugin -------------------------------------------------------------------------------------

app = create_app()


class FlywheelUiPlugin(AirflowPlugin):
    """Flywheel results page and JSON API, linked from Airflow's navigation."""

    name = "flywheel_ui"
    fastapi_apps = [{"app": app, "url_prefix": URL_PREFIX, "name": "Flywheel results"}]
    external_views = [
        {
            "name": "Flywheel results",
            "href": URL_PREFIX + "/",
            "url_route": NAV_ROUTE,
            "destination": "nav",
            "category": "browse",
        }
    ]
