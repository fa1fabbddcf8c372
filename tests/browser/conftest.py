"""Browser fixtures: headless Debian Chromium driving the real embedded portal.

One portal (`python -m portal.serve`: gunicorn, a Celery worker with beat, SQLite and the
filesystem broker) is started per session; every test gets a fresh browser context
signed in as alice with HTTP Basic auth.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
for _path in (str(HERE.parents[1]), str(HERE.parent / "integration"), str(HERE)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

from br_stack import start_portal  # noqa: E402
from it_images import small_photo  # noqa: E402
from it_stack import PASSWORDS, Stack  # noqa: E402

USER = "alice"
CHROMIUM = "/usr/bin/chromium"  # Debian's; Playwright cannot download its own browser here


@pytest.fixture(scope="session")
def portal(tmp_path_factory) -> Stack:
    stack = start_portal(tmp_path_factory.mktemp("browser_stack"))
    try:
        yield stack
    finally:
        stack.close()


@pytest.fixture(scope="session")
def base_url(portal: Stack) -> str:
    return portal.base_url


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict) -> dict:
    if not Path(CHROMIUM).is_file():
        problem = f"{CHROMIUM} is missing (apt-get install chromium)"
        if os.environ.get("PORTAL_REQUIRE_SERVICES") == "1":
            pytest.fail(problem)
        pytest.skip(f"{problem} (set PORTAL_REQUIRE_SERVICES=1 to make this a failure)")
    return {**browser_type_launch_args, "executable_path": CHROMIUM,
            "args": ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                     "--disable-dev-shm-usage"]}


@pytest.fixture(scope="session")
def browser_context_args(browser_context_args: dict, base_url: str) -> dict:
    return {**browser_context_args, "base_url": base_url, "accept_downloads": True,
            "http_credentials": {"username": USER, "password": PASSWORDS[USER]},
            "viewport": {"width": 1280, "height": 900}}


@pytest.fixture(scope="session")
def api(portal: Stack):
    """alice's JSON API client: the same user as the browser."""
    return portal.api(USER)


@pytest.fixture(scope="session")
def completed_campaign(portal: Stack, api) -> dict:
    """One finished campaign of alice's, for the pages that show results."""
    polled = api.submit_and_wait(small_photo(21), name="Browser gallery campaign")
    assert polled.body["status"] == "completed", polled.body
    return polled.body


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.failed and isinstance(getattr(item, "funcargs", {}).get("portal"), Stack):
        report.sections.append(("portal logs", item.funcargs["portal"].tails()))
    return report
