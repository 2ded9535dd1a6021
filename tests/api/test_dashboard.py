"""The dashboard in a real browser: Debian's headless chromium, driven by Selenium through
Debian's chromedriver, opens the page the API serves and the chart must show the figures
stored in the warehouse, hour by hour, with the live hour, the totals and the stock."""

from __future__ import annotations

import shutil
from datetime import timedelta

import pytest

from api import auth
from connectors import redis_store
from pizzastream.config import REPO_ROOT
from tests.api_support import metric_row, past_day, publish, token

pytestmark = pytest.mark.integration

STORE = 120
CHROMEDRIVER = "/usr/bin/chromedriver"


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    assert shutil.which("chromium") and shutil.which(CHROMEDRIVER), (
        "chromium and chromium-driver are installed by scripts/setup.sh"
    )
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1100,1100",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def test_the_chart_shows_the_stored_hourly_figures(api_server, props, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    day = past_day(2)
    stored = {
        day + timedelta(hours=h): (orders, revenue)
        for h, orders, revenue in ((11, 4, "48.00"), (12, 9, "117.50"), (18, 6, "66.60"))
    }
    publish(
        props,
        [day + timedelta(hours=h) for h in range(24)],
        [metric_row(STORE, hour, orders, revenue) for hour, (orders, revenue) in stored.items()],
    )
    redis = redis_store.client(props)
    redis.hset(redis_store.inventory_key(STORE), mapping={"1": "0", "2": "999999"})
    header = token(props, auth.MERCHANT, [STORE])["Authorization"].removeprefix("Bearer ")

    def bars():
        browser.get("about:blank")
        browser.get(
            f"{api_server}/dashboard#token={header}&store={STORE}&day={day.date().isoformat()}"
        )
        WebDriverWait(browser, 20).until(
            lambda b: (
                b.find_element(By.TAG_NAME, "body").get_attribute("data-loaded")
                or b.find_element(By.ID, "error").text
            )
        )
        assert browser.find_element(By.ID, "error").text == ""
        return {
            rect.get_attribute("data-hour"): (
                int(rect.get_attribute("data-orders")),
                rect.get_attribute("data-revenue"),
            )
            for rect in browser.find_elements(By.CSS_SELECTOR, "#hourly-chart rect.bar")
        }

    # The server sees the new hours on its next metrics_publication poll.
    shown = bars()
    for _ in range(20):
        if shown.get(f"{day.replace(hour=12).isoformat()}Z") == (9, "117.50"):
            break
        shown = bars()
    assert len(shown) == 24
    assert {hour: figures for hour, figures in shown.items() if figures[0]} == {
        f"{hour.isoformat()}Z": figures for hour, figures in stored.items()
    }
    heights = {
        rect.get_attribute("data-hour"): float(rect.get_attribute("height"))
        for rect in browser.find_elements(By.CSS_SELECTOR, "#hourly-chart rect.bar")
    }
    assert (
        heights[f"{day.replace(hour=12).isoformat()}Z"]
        > heights[f"{day.replace(hour=18).isoformat()}Z"]
        > heights[f"{day.replace(hour=11).isoformat()}Z"]
        > 0
    )
    assert "$232.10" in browser.find_element(By.ID, "totals").text
    stock_rows = browser.find_elements(By.CSS_SELECTOR, "#stock tbody tr")
    assert [row.get_attribute("class") for row in stock_rows] == ["low", ""]
    (REPO_ROOT / ".stack" / "logs").mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(REPO_ROOT / ".stack" / "logs" / "dashboard.png"))
