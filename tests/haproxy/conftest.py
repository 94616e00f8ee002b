"""Fixtures for the HAProxy pair tests. Everything a fixture starts is stopped by its
finalizer, also when the test fails."""
from __future__ import annotations

import shutil
import subprocess
import tempfile
import urllib.request
from pathlib import Path

import pytest

from renderers.haproxy.layout import HaproxyLayout
from tests.haproxy.helpers import MOTO_SERVER, AppServer, HaproxyProcess, free_port, need, wait_until


@pytest.fixture
def short_dir():
    """A private temp dir with a short path (UNIX socket paths are limited to 107 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="hx"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def app_servers():
    """Factory: app_servers("app-1", "app-2") -> [AppServer, ...]; all closed afterwards."""
    started: list[AppServer] = []

    def make(*names: str) -> list[AppServer]:
        servers = [AppServer(name) for name in names]
        started.extend(servers)
        return servers

    yield make
    for server in started:
        server.close()


@pytest.fixture
def haproxy_factory(short_dir):
    """Factory: start haproxy on the config already at layout.config_path; stopped afterwards."""
    need("haproxy")
    started: list[HaproxyProcess] = []

    def start(layout: HaproxyLayout) -> HaproxyProcess:
        process = HaproxyProcess(layout, short_dir / f"haproxy-{len(started)}.log")
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()


@pytest.fixture
def moto_server(short_dir):
    """A moto server on a free loopback port; yields its URL."""
    need(str(MOTO_SERVER))
    port = free_port()
    log = open(short_dir / "moto.log", "wb")
    proc = subprocess.Popen([str(MOTO_SERVER), "-H", "127.0.0.1", "-p", str(port)],
                            stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"

    def answers():
        if proc.poll() is not None:
            raise AssertionError(f"moto_server exited {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/moto-api/", timeout=1):
                return True
        except OSError:
            return False

    try:
        wait_until(answers, 30, "moto_server", interval=0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        log.close()
