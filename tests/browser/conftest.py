"""Headless Debian Chromium driven by Selenium, and servers on free loopback ports."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

from hubspoke.config import Settings
from hubspoke.simulate import Simulator
from hubspoke.stack import Stack

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "docs" / "img"
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_http(url: str, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    """Block until `url` answers; fail with the server's exit code if it died first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode} before {url} answered")
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except urllib.error.HTTPError:
            return  # an answer, if a refusal (the API wants a key): the server is up
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(f"{url} did not answer within {timeout:g}s")


def start_server(args: list[str], env: dict[str, str], probe: str) -> subprocess.Popen[bytes]:
    """A server in a process group of its own (so stopping it stops its children too)."""
    process = subprocess.Popen(
        args,
        cwd=ROOT,
        env=os.environ | env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_http(probe, process)
    except BaseException:
        stop_server(process)
        raise
    return process


def stop_server(process: subprocess.Popen[bytes]) -> None:
    """Stop the server's process group, hard if it does not go within 10 s."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    except ProcessLookupError:
        pass


Launch = Callable[[Callable[[int], list[str]], dict[str, str], str], str]


@pytest.fixture(scope="module")
def launch() -> Iterator[Launch]:
    """Start a server on a free loopback port: `launch(args_for_port, env, probe_path)` -> its URL.

    Every server started is stopped when the test module ends.
    """
    started: list[subprocess.Popen[bytes]] = []

    def go(args_for_port: Callable[[int], list[str]], env: dict[str, str], probe: str) -> str:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        started.append(start_server(args_for_port(port), env, url + probe))
        return url

    try:
        yield go
    finally:
        for process in started:
            stop_server(process)


@pytest.fixture(scope="session")
def demo_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small demo stack: customers in every spoke, identity events ingested, domains synced."""
    home = tmp_path_factory.mktemp("browser") / "home"
    with Stack.create(Settings(home=home)) as stack:
        Simulator(stack).seed(30)
        stack.sync()
    return home


@pytest.fixture(scope="session")
def browser() -> Iterator[webdriver.Chrome]:
    """Headless Chromium at a fixed window size (screenshots stay comparable)."""
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.fail("browser tests need Debian's chromium and chromium-driver (see .ci/run)")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1600,1000",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    driver.implicitly_wait(0)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def screenshot(browser: webdriver.Chrome) -> Callable[[str], Path]:
    """Save the page as docs/img/NAME.png (the README shows these)."""

    def save(name: str) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        browser.save_screenshot(str(path))
        return path

    return save


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Everything in this folder is a browser test."""
    for item in items:
        if Path(str(item.fspath)).parent == Path(__file__).parent:
            item.add_marker(pytest.mark.browser)
