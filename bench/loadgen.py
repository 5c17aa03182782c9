"""A small HTTP/1.1 keep-alive load generator (asyncio streams), run as its own process.

Closed loop (`max_rate`): C connections send requests back to back for a fixed list; reports
throughput and errors. Open loop (`paced`): requests start at a fixed rate regardless of replies,
so latency includes queueing (no coordinated omission); reports p50/p99.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

Request = tuple[str, str, dict[str, Any]]  # method, path, JSON body


@dataclass
class LoadResult:
    sent: int = 0
    ok: int = 0
    errors: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    latencies_ms: list[float] = field(default_factory=list)
    seconds: float = 0.0

    def record(self, status: int, latency_ms: float) -> None:
        self.latencies_ms.append(latency_ms)
        self.sent += 1
        self.statuses[status] = self.statuses.get(status, 0) + 1
        if 200 <= status < 300:
            self.ok += 1
        else:
            self.errors += 1


class _Conn:
    def __init__(self, host: str, port: int, headers: dict[str, str]) -> None:
        self.host, self.port, self.headers = host, port, headers
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def send(self, method: str, path: str, body: dict[str, Any]) -> int:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        payload = json.dumps(body).encode()
        head = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}",
                "Content-Type: application/json", f"Content-Length: {len(payload)}"]
        head += [f"{k}: {v}" for k, v in self.headers.items()]
        self.writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + payload)
        assert self.reader is not None
        status_line = await self.reader.readline()
        status = int(status_line.split()[1])
        length = 0
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.decode().partition(":")
            if name.lower() == "content-length":
                length = int(value.strip())
        await self.reader.readexactly(length)
        return status


async def _attempt(conn: _Conn, method: str, path: str, body: dict[str, Any]) -> tuple[int, _Conn]:
    """One request; a broken connection counts as status 0 and is replaced."""
    try:
        return await conn.send(method, path, body), conn
    except (OSError, ValueError, asyncio.IncompleteReadError):
        return 0, _Conn(conn.host, conn.port, conn.headers)


async def _closed(host: str, port: int, headers: dict[str, str], lanes: list[list[Request]]) -> LoadResult:
    result = LoadResult()

    async def lane(requests: list[Request]) -> None:
        conn = _Conn(host, port, headers)
        for method, path, body in requests:
            t0 = time.perf_counter()
            status, conn = await _attempt(conn, method, path, body)
            result.record(status, (time.perf_counter() - t0) * 1000)

    start = time.perf_counter()
    await asyncio.gather(*(lane(r) for r in lanes))
    result.seconds = time.perf_counter() - start
    return result


async def _paced(host: str, port: int, headers: dict[str, str], lanes: list[list[Request]],
                 rate: float) -> LoadResult:
    """Open loop: request k of the merged schedule starts at k / rate, on its lane's connection."""
    result = LoadResult()
    per_lane = rate / max(1, len(lanes))

    async def lane(requests: list[Request], offset: float, start: float) -> None:
        conn = _Conn(host, port, headers)
        for k, (method, path, body) in enumerate(requests):
            due = start + offset + k / per_lane
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            status, conn = await _attempt(conn, method, path, body)
            result.record(status, (time.perf_counter() - due) * 1000)  # from the scheduled start

    start = time.perf_counter() + 0.05
    await asyncio.gather(*(lane(r, i / rate, start) for i, r in enumerate(lanes)))
    result.seconds = time.perf_counter() - start
    return result


def run_closed(host: str, port: int, headers: dict[str, str], lanes: list[list[Request]]) -> LoadResult:
    return asyncio.run(_closed(host, port, headers, lanes))


def run_paced(host: str, port: int, headers: dict[str, str], lanes: list[list[Request]],
              rate: float) -> LoadResult:
    return asyncio.run(_paced(host, port, headers, lanes, rate))
