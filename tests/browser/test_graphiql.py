"""GraphiQL served by `hubspoke serve`, in a real browser, with no CDN: a typed query returns data."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import polars as pl
import pytest
from hubspoke_graphql import graphiql
from hubspoke_graphql.access import key_of_role
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from hubspoke.config import Settings

QUERY = "{ customers(first: 3) { totalCount edges { node { id name } } } }"


@pytest.fixture(scope="module")
def assets() -> Path:
    """GraphiQL's files, fetched once per machine from the npm registry (`npm pack`)."""
    folder = Settings.from_env().graphiql_assets
    graphiql.fetch(folder)
    return folder


@pytest.fixture(scope="module")
def graphql_url(launch: Any, demo_home: Path, assets: Path) -> str:
    return launch(
        lambda port: (
            [
                sys.executable,
                "-m",
                "hubspoke.cli",
                "serve",
                "--home",
                str(demo_home),
                "--port",
                str(port),
            ]
        ),
        {"HUBSPOKE_GRAPHIQL_ASSETS": str(assets)},
        "/graphql?query=%7B__typename%7D",
    )


def test_page_loads_every_file_from_the_api_itself(assets: Path, tmp_path: Path) -> None:
    page = graphiql.offline_page(assets)
    assert "unpkg.com" not in page
    assert len(graphiql.page_assets()) >= 5 and graphiql.missing(assets) == []
    # Without the files the page still works where the CDN is reachable, and says how to fix it.
    assert "https://unpkg.com/graphiql@" in graphiql.offline_page(tmp_path)


def test_a_query_typed_in_graphiql_returns_data(
    browser: webdriver.Chrome,
    graphql_url: str,
    demo_home: Path,
    screenshot: Callable[[str], Path],
) -> None:
    browser.get(f"{graphql_url}/graphql")
    editor = WebDriverWait(browser, 20).until(
        lambda b: b.find_element(By.CSS_SELECTOR, ".graphiql-query-editor .CodeMirror")
    )
    # CodeMirror closes brackets as they are typed, so the text goes in through its own API.
    browser.execute_script("arguments[0].CodeMirror.setValue(arguments[1])", editor, QUERY)
    # The API wants a key from GraphiQL too: it goes in the headers tab, as a user would put it.
    browser.find_element(By.XPATH, "//button[normalize-space()='Headers']").click()
    headers = WebDriverWait(browser, 10).until(
        lambda b: next(
            (
                e
                for e in b.find_elements(By.CSS_SELECTOR, ".graphiql-editor-tool .CodeMirror")
                if e.is_displayed()
            ),
            None,
        )
    )
    admin = key_of_role(demo_home / "api_keys.json", "admin")
    browser.execute_script(
        "arguments[0].CodeMirror.setValue(arguments[1])",
        headers,
        json.dumps({"Authorization": f"Bearer {admin}"}),
    )
    browser.find_element(By.CSS_SELECTOR, ".graphiql-execute-button").click()
    response = WebDriverWait(browser, 20).until(
        lambda b: (
            (t := b.find_element(By.CSS_SELECTOR, ".graphiql-response").text)
            and "totalCount" in t
            and t
        )
    )
    live = pl.read_delta(str(demo_home / "lake" / "customer_identity")).filter(~pl.col("deleted"))
    assert f'"totalCount": {live.height}' in response
    assert live["name"].sort()[0] is not None and '"name": "' in response
    origins = browser.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)"
    )
    assert {urlparse(u).netloc for u in origins} == {urlparse(graphql_url).netloc}
    screenshot("graphiql")
