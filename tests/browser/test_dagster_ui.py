"""The Dagster UI, in a real browser: the asset graph, the checks and the automation are shown."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

from lake_schema import load_catalog

catalog = load_catalog()
WEBSERVER = [
    sys.executable,
    "-m",
    "dagster_webserver",
    "-m",
    "pipelines.definitions",
    "-h",
    "127.0.0.1",
]
ASSETS = [
    "identity_events",
    *(c.table_name for c in [*catalog.identities(), *catalog.extensions()]),
]


@pytest.fixture(scope="module")
def dagster_url(launch: Any, demo_home: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The webserver alone (no daemon: nothing here runs) with the project's definitions."""
    return launch(
        lambda port: [*WEBSERVER, "-p", str(port)],
        {
            "HUBSPOKE_HOME": str(demo_home),
            "DAGSTER_HOME": str(tmp_path_factory.mktemp("dagster_home")),
        },
        "/server_info",
    )


def page_text(browser: webdriver.Chrome) -> str:
    return browser.find_element(By.TAG_NAME, "body").text


def wait_for_texts(browser: webdriver.Chrome, texts: list[str], timeout: float = 20) -> None:
    """Wait until every text is on the page; the failure names the ones that never came."""
    try:
        WebDriverWait(browser, timeout).until(lambda b: all(t in page_text(b) for t in texts))
    except Exception:
        shown = page_text(browser)
        raise AssertionError(f"not shown: {[t for t in texts if t not in shown]}") from None


def dismiss_newsletter(browser: webdriver.Chrome) -> None:
    """The first visit opens a 'Join the Dagster community' dialog over the page."""
    for button in browser.find_elements(By.XPATH, "//button[normalize-space()='Skip']"):
        browser.execute_script("arguments[0].click()", button)


def test_asset_graph_shows_identity_and_domain_assets(
    browser: webdriver.Chrome, dagster_url: str, screenshot: Callable[[str], Path]
) -> None:
    browser.get(f"{dagster_url}/asset-groups")
    wait_for_texts(browser, ["Global asset lineage", "hub", "sales", "support", "billing"])
    dismiss_newsletter(browser)
    # Groups start collapsed: Alt+E on the graph expands them all; then zoom out to see them.
    body = browser.find_element(By.TAG_NAME, "body")
    ActionChains(browser).move_to_element_with_offset(body, 0, 350).click().perform()
    ActionChains(browser).key_down(Keys.ALT).send_keys("e").key_up(Keys.ALT).perform()
    wait_for_texts(browser, ["customer_billing_domain", "Asset checks"])
    time.sleep(1)  # the graph animates into its new layout
    for _ in range(3):  # the zoom-out control, bottom right of the graph
        ActionChains(browser).move_to_element_with_offset(body, 773, 281).click().perform()
    # The graph renders only the nodes in view: the catalog below lists every asset.
    time.sleep(1)
    screenshot("dagster-asset-graph")
    browser.get(f"{dagster_url}/assets")
    wait_for_texts(browser, ASSETS)
    screenshot("dagster-asset-catalog")


def test_each_domain_asset_shows_its_checks(
    browser: webdriver.Chrome, dagster_url: str, screenshot: Callable[[str], Path]
) -> None:
    for contract in catalog.extensions():
        browser.get(f"{dagster_url}/assets/{contract.table_name}?view=checks")
        wait_for_texts(browser, [contract.table_name, "reconciles_with_spoke"])
    dismiss_newsletter(browser)
    screenshot("dagster-asset-checks")
    browser.get(f"{dagster_url}/assets/customer_identity?view=checks")
    wait_for_texts(browser, ["customer_identity", "spokes_converged"])


def test_automation_shows_the_schedule_and_the_sensor(
    browser: webdriver.Chrome, dagster_url: str, screenshot: Callable[[str], Path]
) -> None:
    browser.get(f"{dagster_url}/automation")
    wait_for_texts(browser, ["customer_sales_domain_nightly", "identity_events_sensor"])
    dismiss_newsletter(browser)
    screenshot("dagster-automation")
    browser.get(f"{dagster_url}/jobs")
    wait_for_texts(
        browser, ["erasure_job", "sync_customer_sales_domain_job", "identity_ingestion_job"]
    )
