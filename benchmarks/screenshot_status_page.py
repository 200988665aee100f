"""Regenerate docs/img/status-page.png: the status page of a pool streaming a synthetic market.

    .venv/bin/python benchmarks/screenshot_status_page.py [--seconds 20]

Needs the system's Chromium and chromedriver (Debian: chromium, chromium-driver) and selenium.
"""

from __future__ import annotations

import argparse
import shutil
import threading
from pathlib import Path

from selenium import webdriver

import massive_rt as mrt
from massive_rt.testing import MockMassiveServer
from massive_rt.web import serve_status

OUT = Path(__file__).resolve().parent.parent / "docs" / "img" / "status-page.png"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="streaming time before the screenshot")
    args = parser.parse_args()
    with MockMassiveServer(api_keys={"demo"}) as server:
        server.stream(mrt.SyntheticMarket(["AAPL", "MSFT", "NVDA", "TSLA"], rate=20), rate=400)
        pool = mrt.ConnectionPool("demo", max_connections=2, max_subscriptions_per_connection=4, url=server.url)
        adapter = mrt.RealTimeDataAdapter(pool)
        adapter.on("*", lambda event: None)
        with adapter, serve_status(adapter, interval=0.5) as page:
            adapter.subscribe("T.AAPL", "Q.AAPL", "T.MSFT", "Q.MSFT", "T.NVDA", "T.TSLA")
            adapter.wait_ready(10)
            threading.Timer(args.seconds * 0.6, server.drop_all).start()  # one drop, to show on the page
            options = webdriver.ChromeOptions()
            options.binary_location = shutil.which("chromium") or "chromium"
            for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1200,560"):
                options.add_argument(argument)
            service = webdriver.ChromeService(executable_path=shutil.which("chromedriver"))
            driver = webdriver.Chrome(options=options, service=service)
            try:
                driver.get(page.url)
                threading.Event().wait(args.seconds)
                OUT.parent.mkdir(parents=True, exist_ok=True)
                driver.save_screenshot(str(OUT))
            finally:
                driver.quit()
    print(f"wrote {OUT} ({OUT.stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
