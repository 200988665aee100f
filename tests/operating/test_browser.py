"""The pages in a real browser: headless Chromium (the system's ``chromium`` and ``chromium-driver``,
driven by Selenium; nothing is downloaded at test time) against a mock server that streams.

Skipped where Chromium is not installed, with the reason; ``MASSIVE_RT_REQUIRE_BROWSER=1`` (set by
``.ci/run``) turns the skip into a failure.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import massive_rt as mrt
from massive_rt.testing import MockMassiveServer
from massive_rt.web import serve_status
from tests.support import KEY
from tests.test_cli import ROOT

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium (dev extra) is not installed")
from selenium.webdriver.support.wait import WebDriverWait  # noqa: E402

BROWSER = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
DRIVER = shutil.which("chromedriver")
WAIT = 10.0  # seconds a page gets to show what the test waits for


def trade(sym: str, q: int, price: float | None = None) -> dict[str, object]:
    return {"ev": "T", "sym": sym, "p": 100.0 + q if price is None else price, "s": 100, "t": 1, "q": q}


@pytest.fixture
def browser() -> Iterator[Any]:
    """A headless Chromium, quit after the test."""
    if os.environ.get("MASSIVE_RT_BROWSER_TESTS_LATER") == "1":  # even if found: it may be half installed
        pytest.skip(".ci/run installs Chromium meanwhile and runs these after the suite (make test-browser)")
    if BROWSER is None or DRIVER is None:
        reason = "Chromium and chromedriver are not installed (Debian: apt-get install chromium chromium-driver)"
        if os.environ.get("MASSIVE_RT_REQUIRE_BROWSER") == "1":
            pytest.fail(f"MASSIVE_RT_REQUIRE_BROWSER=1 but {reason}")
        pytest.skip(reason)
    options = webdriver.ChromeOptions()
    options.binary_location = BROWSER
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1280,800", "--no-proxy-server"):  # fmt: skip
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=DRIVER))
    driver.set_page_load_timeout(WAIT)
    try:
        yield driver
    finally:
        driver.quit()


def screenshot(driver: Any, path: Path) -> None:
    assert driver.save_screenshot(str(path))
    assert path.stat().st_size > 10_000  # a rendered page, not an empty canvas


def text_of(driver: Any, selector: str) -> str | None:
    """The text of the element ``selector`` now (the pages re-render: no element handle is kept)."""
    return driver.execute_script("const e = document.querySelector(arguments[0]); return e ? e.textContent : null",
                                 selector)  # fmt: skip


def row_state(driver: Any, name: str) -> str | None:
    return text_of(driver, f'#connections tr[data-connection="{name}"] td.state')


def events_shown(driver: Any) -> int:
    return int(text_of(driver, "#connections td.events") or -1)


@pytest.mark.timeout(60)
def test_the_status_page_shows_rows_moving_counters_and_a_drop_going_to_backoff_and_back(
    server: MockMassiveServer,
    make_client: Callable[..., mrt.MassiveWebSocketClient],
    make_adapter: Callable[..., mrt.RealTimeDataAdapter],
    browser: Any,
    tmp_path: Path,
) -> None:
    # A backoff of 3 s, so that the page (sampled every 0.1 s, polled by the driver every 0.05 s) shows
    # it even on a loaded machine, where one driver round trip took over 0.5 s (a 0.5 s backoff flaked).
    client = make_client(subscriptions=["T.AAPL"], reconnect=mrt.ReconnectPolicy(initial_delay=3.0, jitter="none"))
    adapter = make_adapter(client).start()
    adapter.wait_ready(5)
    with serve_status(adapter, interval=0.1) as page:
        browser.get(page.url)
        wait = WebDriverWait(browser, WAIT, poll_frequency=0.05)
        wait.until(lambda d: row_state(d, client.name) == "streaming")
        server.publish([trade("AAPL", q) for q in range(10)])
        wait.until(lambda d: events_shown(d) == 10)
        server.publish([trade("AAPL", q) for q in range(10, 25)])
        wait.until(lambda d: events_shown(d) == 25)  # the counter moves
        screenshot(browser, tmp_path / "status-page.png")

        server.drop_all()
        wait.until(lambda d: row_state(d, client.name) == "backoff")
        wait.until(lambda d: row_state(d, client.name) == "streaming")
        statuses = text_of(browser, "#happenings") or ""
        assert "state → backoff" in statuses
        assert KEY not in browser.page_source


def _load_example() -> Any:
    spec = importlib.util.spec_from_file_location("live_prices_page", ROOT / "examples" / "live_prices_page" / "app.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.timeout(60)
def test_the_example_price_page_shows_a_published_trade_price(
    server: MockMassiveServer,
    make_client: Callable[..., mrt.MassiveWebSocketClient],
    make_adapter: Callable[..., mrt.RealTimeDataAdapter],
    browser: Any,
    tmp_path: Path,
) -> None:
    from werkzeug.serving import make_server

    example = _load_example()
    adapter = make_adapter(make_client(subscriptions=["T.*"]))
    cache = mrt.LastValueCache(adapter)
    adapter.start().wait_ready(5)
    stop = threading.Event()
    http = make_server("127.0.0.1", 0, example.create_app(cache, stop, period=0.05), threaded=True)
    serving = threading.Thread(target=http.serve_forever, kwargs={"poll_interval": 0.05}, name="test-example-http",
                               daemon=True)  # fmt: skip
    serving.start()
    try:
        browser.get(f"http://127.0.0.1:{http.server_port}/")
        server.publish([trade("NVDA", 1, price=987.65)])
        wait = WebDriverWait(browser, WAIT, poll_frequency=0.05)
        wait.until(lambda d: text_of(d, "#price-NVDA td.price") == "987.65")
        server.publish([trade("NVDA", 2, price=990.5)])
        wait.until(lambda d: text_of(d, "#price-NVDA td.price") == "990.5")
        screenshot(browser, tmp_path / "live-prices.png")
    finally:
        stop.set()
        browser.get("about:blank")  # closes the page's event stream
        http.shutdown()
        serving.join(5)
