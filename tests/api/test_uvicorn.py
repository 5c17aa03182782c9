"""The real service: `funnel users add` prints a token, `funnel serve` runs uvicorn on a free local port (with
its ticker), and HTTP clients talk to it over the network: auth, a write race, limits, health."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.api_factories import OPPORTUNITY
from tests.conftest import REPO

RUN_CLI = "from api.cli import main; main()"


@dataclass(frozen=True)
class Service:
    url: str
    token: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cli_env(db_url: str) -> dict[str, str]:
    return {**os.environ, "FUNNEL_DATABASE_URL": db_url, "PYTHONPATH": str(REPO), "FUNNEL_TICK_SECONDS": "0.5"}


@dataclass(frozen=True)
class Served:
    service: Service
    server: subprocess.Popen[bytes]


@contextmanager
def serving(db_url: str, tmp_path: Path, *options: str) -> Iterator[Served]:
    """`funnel users add` then `funnel serve [options]` in subprocesses; waits for /health; stops the server after."""
    env = cli_env(db_url)
    added = subprocess.run([sys.executable, "-c", RUN_CLI, "users", "add", "root", "--role", "admin"], env=env,
                           cwd=REPO, capture_output=True, text=True, timeout=120)
    assert added.returncode == 0, added.stderr
    token = added.stdout.strip().splitlines()[-1]
    port = free_port()
    log = (tmp_path / "serve.log").open("w")
    server = subprocess.Popen([sys.executable, "-c", RUN_CLI, "serve", "--host", "127.0.0.1", "--port", str(port),
                               *options], env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert server.poll() is None, (tmp_path / "serve.log").read_text()
            assert time.monotonic() < deadline, "the server did not become healthy in time"
            time.sleep(0.2)
        yield Served(Service(url, token), server)
    finally:
        stop(server)
        log.close()


def stop(server: subprocess.Popen[bytes]) -> None:
    if server.poll() is None:
        server.send_signal(signal.SIGINT)
    try:
        server.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait(timeout=10)


@pytest.fixture
def service(db_url: str, tmp_path: Path) -> Iterator[Service]:
    """The service as `funnel serve` runs it by default: one process, its ticker beside the API."""
    with serving(db_url, tmp_path) as served:
        yield served.service


def test_given_a_running_server_then_auth_a_write_race_and_limits_behave_over_the_network(service: Service) -> None:
    with httpx.Client(base_url=service.url, timeout=30) as client:
        # health: the database answers (the ticker reports itself within a few beats)
        health = client.get("/health").json()
        assert (health["database"], health["status"] in ("ok", "degraded")) == ("reachable", True)
        # no token: 401 with a challenge; a real token works
        refused = client.get("/api/instances")
        assert (refused.status_code, refused.headers["www-authenticate"]) == (401, 'Bearer realm="funnel"')
        created = client.post("/api/instances", headers=service.auth,
                              json={"workflow": "sales_funnel", "customer_tier": "B", "data": OPPORTUNITY})
        assert created.status_code == 201, created.text
        # two clients advance the same version at once: one wins, the other is told the current version
        barrier = threading.Barrier(2)
        results: list[httpx.Response] = []

        def go() -> None:
            with httpx.Client(base_url=service.url, timeout=30) as own:
                barrier.wait()
                results.append(own.post(f"/api/instances/{created.json()['id']}/advance", headers=service.auth,
                                        json={"data": {}, "expected_version": 1}))

        threads = [threading.Thread(target=go) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert sorted(r.status_code for r in results) == [200, 409]
        assert next(r for r in results if r.status_code == 409).json()["current_version"] == 2
        # an oversized body is refused before it is read
        big = client.post("/api/instances", headers={**service.auth, "content-type": "application/json"},
                          content=b" " * (2 * 1024 * 1024))
        assert (big.status_code, big.headers["content-type"]) == (413, "application/problem+json")
        # docs and metrics are served
        assert "swagger" in client.get("/docs").text.lower()
        assert 'funnel_http_requests_total{method="POST",route="/api/instances/{instance_id}/advance",status="409"} 1' \
            in client.get("/metrics").text
        deadline = time.monotonic() + 15
        while not client.get("/health").json()["ticker"]["alive"] and time.monotonic() < deadline:
            time.sleep(0.5)
        assert client.get("/health").json()["status"] == "ok"


def _parent_of(pid: int) -> int | None:
    """The parent pid of a live process (Linux /proc), None once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])  # after "(comm)": state, then ppid


def test_given_two_workers_then_both_serve_and_tick_every_advance_lands_once_and_both_stop(
        db_url: str, tmp_path: Path) -> None:
    # given `funnel serve --workers 2`
    with serving(db_url, tmp_path, "--workers", "2") as served:
        service, server = served.service, served.server
        with httpx.Client(base_url=service.url, timeout=30) as client:
            # then two worker processes of this server each run a ticker (their heartbeats name them)
            deadline = time.monotonic() + 30
            while True:
                workers = client.get("/health").json()["ticker"]["workers"]
                pids = {int(w["worker_id"].rsplit(":", 1)[1]) for w in workers if w["alive"]}
                ours = {pid for pid in pids if _parent_of(pid) == server.pid}
                if len(ours) == 2 or time.monotonic() > deadline:
                    break
                time.sleep(0.3)
            assert len(ours) == 2, workers
            ids = [client.post("/api/instances", headers=service.auth, json={
                "workflow": "sales_funnel", "customer_tier": "B", "data": OPPORTUNITY}).json()["id"]
                for _ in range(12)]
        # when eight clients (connections spread over both workers) advance twelve instances at once, each twice:
        # once at its current version, once more at that same (now stale) version
        replies: dict[int, list[int]] = {i: [] for i in ids}

        def advance(mine: list[int]) -> None:
            with httpx.Client(base_url=service.url, timeout=30) as own:
                for i in mine:
                    for _ in range(2):
                        replies[i].append(own.post(f"/api/instances/{i}/advance", headers=service.auth,
                                                   json={"data": {}, "expected_version": 1}).status_code)

        threads = [threading.Thread(target=advance, args=(ids[k::8],)) for k in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        # then each instance moved exactly once: the stale second try is refused whichever worker takes it
        assert all(codes == [200, 409] for codes in replies.values()), replies
        with httpx.Client(base_url=service.url, timeout=30) as client:
            versions = {client.get(f"/api/instances/{i}", headers=service.auth).json()["row_version"] for i in ids}
            history = client.get(f"/api/instances/{ids[0]}/history", headers=service.auth).json()
        assert versions == {2}
        assert [e["kind"] for e in history].count("advanced") == 1
        # when the server is told to stop, then it and both workers are gone
        stop(server)
        assert server.returncode in (0, -signal.SIGINT)
        assert all(_parent_of(pid) is None for pid in ours)
