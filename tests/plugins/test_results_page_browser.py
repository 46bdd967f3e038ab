"""The results page in a real browser: Debian's headless Chromium against ``airflow standalone``.

``airflow standalone`` runs in a private AIRFLOW_HOME on a free loopback port, with the project
on PYTHONPATH, this project's plugins folder, and a results store filled like a demo run that the
flywheel settings (``$FLYWHEEL_CONFIG``) point at. Chromium (driven by selenium through Debian's
``chromium-driver``) logs in through Airflow's own login page, lands on the results page, then
opens it from Airflow's navigation, where the UI shows it in a frame. Screenshots are saved in
``$FLYWHEEL_SCREENSHOT_DIR`` (default: the test's temporary directory) and their paths printed.

Needs ``apt-get install -y chromium chromium-driver`` and the ``selenium`` package; skipped with
the reason when either is missing. Marked ``browser`` and ``standalone`` (``pytest -m browser``
runs only these).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from .conftest import FAQ, MEDIUM, PROJECT_ROOT, SMALL, TOOLS, make_demo_results

pytestmark = [pytest.mark.browser, pytest.mark.standalone, pytest.mark.timeout(420)]

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1440,1800",
)
USERNAME = PASSWORD = "admin"
STARTUP_TIMEOUT = 240.0
PAGE_TIMEOUT = 60.0


def _require_browser() -> None:
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not (os.access(path, os.X_OK) or shutil.which(path))]
    if missing:
        pytest.skip(f"{' and '.join(missing)} not installed (apt-get install -y chromium chromium-driver)")
    pytest.importorskip("selenium", reason="the selenium package is not installed (pip install selenium)")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _stop(process: subprocess.Popen) -> None:
    """Stop standalone and everything it started (its own process group)."""
    if process.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _wait_until_served(base_url: str, process: subprocess.Popen, log_path: Path) -> None:
    """Until the api-server answers and has mounted the plugin (an unauthenticated API call: 401)."""
    deadline = time.monotonic() + STARTUP_TIMEOUT
    last = "no answer"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"airflow standalone exited with {process.returncode}; log:\n{log_path.read_text()[-4000:]}")
        try:
            health = requests.get(f"{base_url}/api/v2/monitor/health", timeout=5)
            plugin = requests.get(f"{base_url}/flywheel/api/workloads", timeout=5)
            last = f"health {health.status_code}, plugin {plugin.status_code}"
            if health.status_code == 200 and plugin.status_code == 401:
                return
        except requests.RequestException as exc:
            last = type(exc).__name__
        time.sleep(1.0)
    raise AssertionError(f"the api-server did not serve the plugin within {STARTUP_TIMEOUT:.0f} s ({last}); "
                         f"log:\n{log_path.read_text()[-4000:]}")


@pytest.fixture(scope="module")
def airflow_standalone(tmp_path_factory) -> Iterator[dict]:
    """``airflow standalone`` with the demo results, on a free loopback port; stopped afterwards."""
    _require_browser()
    root = tmp_path_factory.mktemp("standalone")
    home, dags = root / "airflow-home", root / "dags"
    home.mkdir()
    dags.mkdir()  # no DAGs to parse: the page reads the results store, not the DAGs
    demo = make_demo_results(root)
    passwords = home / "passwords.json"
    passwords.write_text(json.dumps({USERNAME: PASSWORD}))
    port = _free_port()
    base_url = f"http://127.0.0.1:{port}"
    env = {
        key: value for key, value in os.environ.items() if not key.startswith(("AIRFLOW", "FLYWHEEL_"))
    }
    env.update(
        AIRFLOW_HOME=str(home),
        PYTHONPATH=str(PROJECT_ROOT),
        FLYWHEEL_CONFIG=str(demo.config_path),
        AIRFLOW__CORE__DAGS_FOLDER=str(dags),
        AIRFLOW__CORE__PLUGINS_FOLDER=str(PROJECT_ROOT / "plugins"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__PARALLELISM="4",
        AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS=f"{USERNAME}:admin",
        AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE=str(passwords),
        AIRFLOW__API__HOST="127.0.0.1",
        AIRFLOW__API__PORT=str(port),
        AIRFLOW__API__BASE_URL=base_url,
        AIRFLOW__API__WORKERS="1",
        AIRFLOW__CORE__EXECUTION_API_SERVER_URL=f"{base_url}/execution/",
    )
    # standalone starts its components as `airflow ...` from PATH: this venv's.
    bin_dir = Path(sys.executable).parent
    env["PATH"] = os.pathsep.join([str(bin_dir), env.get("PATH", "")])
    log_path = root / "standalone.log"
    airflow = bin_dir / "airflow"
    with log_path.open("wb") as log:
        # Its own session (process group): standalone ignores SIGINT and starts several children.
        process = subprocess.Popen([str(airflow), "standalone"], env=env, stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        _wait_until_served(base_url, process, log_path)
        yield {"base_url": base_url, "demo": demo, "log": log_path}
    finally:
        _stop(process)


@pytest.fixture
def browser(tmp_path) -> Iterator:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(PAGE_TIMEOUT)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def screenshot_dir(tmp_path) -> Path:
    directory = Path(os.environ.get("FLYWHEEL_SCREENSHOT_DIR") or tmp_path / "screenshots")
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def _wait_for(driver, condition, what: str, timeout: float = PAGE_TIMEOUT):
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, timeout).until(condition)
    except TimeoutException:
        raise AssertionError(f"timed out waiting for {what}; at {driver.current_url}:\n"
                             f"{driver.find_element('tag name', 'body').text[:2000]}") from None


def _save(driver, directory: Path, name: str, capsys) -> Path:
    path = directory / name
    assert driver.save_screenshot(str(path)), f"could not save {path}"
    with capsys.disabled():
        print(f"\n[results page screenshot] {path}")
    return path


def _login(driver, base_url: str) -> None:
    """Open the results page, follow the redirect to Airflow's login form and sign in."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec

    driver.get(f"{base_url}/flywheel/")
    user_field = _wait_for(driver, ec.visibility_of_element_located((By.NAME, "username")), "Airflow's login form")
    assert "/auth/login" in driver.current_url
    user_field.send_keys(USERNAME)
    driver.find_element(By.NAME, "password").send_keys(PASSWORD)
    driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()


def test_results_page_shows_the_demo_runs_candidates(airflow_standalone, browser, screenshot_dir, capsys):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec

    base_url, demo = airflow_standalone["base_url"], airflow_standalone["demo"]
    _login(browser, base_url)
    # Back on the results page after login: the latest run of the first workload with runs.
    _wait_for(browser, ec.presence_of_element_located((By.CSS_SELECTOR, "section.cand")), "the candidates")
    assert browser.current_url.startswith(f"{base_url}/flywheel/")
    assert browser.find_element(By.CSS_SELECTOR, "section.head h1").text == TOOLS
    candidates = [element.text for element in browser.find_elements(By.CSS_SELECTOR, "section.cand h3")]
    assert candidates == [SMALL, MEDIUM]
    page = browser.find_element(By.TAG_NAME, "body").text
    assert demo.second_run.split("/", 1)[1] in page
    assert "Surfaced for human review: meta/llama-3.2-1b-instruct (customized-eval)" in page
    assert len(browser.find_elements(By.CSS_SELECTOR, "svg.trend")) == 6
    _save(browser, screenshot_dir, "results-page.png", capsys)

    # Spot-check: a divergent case opens and shows the prompt as text.
    browser.find_element(By.CSS_SELECTOR, "section.cand details.divergent summary").click()
    assert "Where is my order? <script>alert('x')</script>" in browser.find_element(
        By.CSS_SELECTOR, "section.cand details.divergent[open]").text

    # The earlier run, through the runs table.
    browser.find_element(By.LINK_TEXT, demo.first_run.split("/", 1)[1]).click()
    _wait_for(browser, lambda d: "run=" in d.current_url and d.find_elements(By.CSS_SELECTOR, "section.cand"),
              "the earlier run")
    assert demo.first_run.split("/", 1)[1] in browser.find_element(By.CSS_SELECTOR, "tr.active").text


def test_results_page_is_reachable_from_airflows_navigation(airflow_standalone, browser, screenshot_dir, capsys):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec

    base_url = airflow_standalone["base_url"]
    _login(browser, base_url)
    _wait_for(browser, ec.presence_of_element_located((By.CSS_SELECTOR, "section.cand")), "the results page")
    browser.get(f"{base_url}/plugin/flywheel-results")
    frame = _wait_for(browser, ec.presence_of_element_located((By.CSS_SELECTOR, "iframe[title='Flywheel results']")),
                      "the plugin frame in Airflow's UI")
    browser.switch_to.frame(frame)
    _wait_for(browser, ec.presence_of_element_located((By.CSS_SELECTOR, "section.cand")), "candidates in the frame")
    assert [e.text for e in browser.find_elements(By.CSS_SELECTOR, "section.cand h3")] == [SMALL, MEDIUM]
    # The frame may not navigate Airflow's window (sandbox), so it offers no such link.
    assert browser.find_elements(By.CSS_SELECTOR, "a[target=_top]") == []
    browser.switch_to.default_content()
    _save(browser, screenshot_dir, "results-page-in-airflow.png", capsys)

    # Navigating inside the frame is kept in Airflow's address: a deep link to the selection.
    browser.switch_to.frame(frame)
    next(e for e in browser.find_elements(By.CSS_SELECTOR, "a.wl") if FAQ in e.text).click()
    browser.switch_to.default_content()
    _wait_for(browser, lambda d: d.current_url.endswith(f"/plugin/flywheel-results/flywheel/?workload={FAQ}"),
              "Airflow's address to follow the frame")
    browser.switch_to.frame(browser.find_element(By.CSS_SELECTOR, "iframe[title='Flywheel results']"))
    _wait_for(browser, lambda d: d.find_element(By.CSS_SELECTOR, "section.head h1").text == FAQ, "the faq-chat workload")
    assert "only 12 usable records" in browser.find_element(By.TAG_NAME, "body").text
