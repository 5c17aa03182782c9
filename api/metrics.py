"""Prometheus metrics: request counts and latency (a tiny middleware) plus gauges read from the engine.

The text exposition format is written by hand: a few counters and one histogram do not need a library.
Requests are labelled by route template (`/api/instances/{instance_id}`), never by raw path, so the
number of series stays bounded whatever clients send.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable
from threading import Lock

from starlette.types import ASGIApp, Message, Receive, Scope, Send

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
Labels = tuple[tuple[str, str], ...]


class Registry:
    """Request counters and the latency histogram, shared by the middleware and the /metrics route."""

    def __init__(self) -> None:
        self._lock = Lock()
        self._requests: dict[Labels, int] = defaultdict(int)
        self._buckets: dict[Labels, list[int]] = {}
        self._sums: dict[Labels, float] = defaultdict(float)

    def observe(self, *, method: str, route: str, status: int, seconds: float) -> None:
        key = (("method", method), ("route", route))
        with self._lock:
            self._requests[(*key, ("status", str(status)))] += 1
            counts = self._buckets.setdefault(key, [0] * (len(BUCKETS) + 1))
            for i, bound in enumerate(BUCKETS):
                if seconds <= bound:
                    counts[i] += 1
            counts[-1] += 1
            self._sums[key] += seconds

    def render(self) -> list[str]:
        """The request metrics in the text exposition format."""
        with self._lock:
            lines = ["# HELP funnel_http_requests_total HTTP requests answered, by route template and status.",
                     "# TYPE funnel_http_requests_total counter"]
            lines += [f"funnel_http_requests_total{fmt(k)} {v}" for k, v in sorted(self._requests.items())]
            lines += ["# HELP funnel_http_request_duration_seconds Time to answer an HTTP request.",
                      "# TYPE funnel_http_request_duration_seconds histogram"]
            for key, counts in sorted(self._buckets.items()):
                for bound, count in zip((*map(str, BUCKETS), "+Inf"), counts, strict=True):
                    lines.append(f"funnel_http_request_duration_seconds_bucket{fmt((*key, ('le', bound)))} {count}")
                lines.append(f"funnel_http_request_duration_seconds_sum{fmt(key)} {self._sums[key]:.6f}")
                lines.append(f"funnel_http_request_duration_seconds_count{fmt(key)} {counts[-1]}")
        return lines


class RequestMetrics:
    """Pure ASGI middleware that times every HTTP request into a Registry."""

    def __init__(self, app: ASGIApp, *, registry: Registry) -> None:
        self.app = app
        self.registry = registry

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            self.registry.observe(method=scope.get("method", "GET"), route=route, status=status,
                                  seconds=time.perf_counter() - started)


def gauge(name: str, help_text: str, samples: Iterable[tuple[Labels, float]]) -> list[str]:
    """One gauge family in the text exposition format."""
    lines = [f"# HELP {name} {help_text}", f"# TYPE {name} gauge"]
    lines += [f"{name}{fmt(labels)} {_number(value)}" for labels, value in samples]
    return lines


def fmt(labels: Labels) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in labels) + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))
