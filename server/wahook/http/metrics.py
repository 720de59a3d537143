"""The sidecar's Prometheus metrics: a few counters and one latency histogram, text format 0.0.4.

Hand-rolled rather than prometheus_client: four series do not earn a dependency, and
a plain object passed into the handlers keeps tests free of a process-wide registry.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Awaitable, Callable

# Seconds. The webhook answer is a durable append, normally around a millisecond;
# the upper buckets show trouble well before Meta's ~5 s timeout.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Metrics:
    """Counters and a histogram, rendered by ``render()``; not thread-safe (one loop)."""

    def __init__(self) -> None:
        self.requests: defaultdict[tuple[str, str, int], int] = defaultdict(int)
        self.events_appended = 0
        self.events_duplicate = 0
        self.signature_failures = 0
        self.http_timeouts = 0
        self.misrouted_events = 0
        self._bucket_counts = [0] * (len(LATENCY_BUCKETS) + 1)
        self._latency_sum = 0.0
        self._latency_count = 0
        # Optional gauges/counters read at scrape time (e.g. the store's commit count).
        self.collectors: dict[str, tuple[str, str, Callable[[], float]]] = {}
        # Run before each render, e.g. a --workers front reading the parent's collectors.
        self.refresh: Callable[[], Awaitable[None]] | None = None

    def observe_request(self, handler: str, method: str, status: int, seconds: float) -> None:
        self.requests[(handler, method, status)] += 1
        if handler == "webhook" and method == "POST":
            self._bucket_counts[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
            self._latency_sum += seconds
            self._latency_count += 1

    def add_collector(
        self, name: str, kind: str, help_text: str, read: Callable[[], float]
    ) -> None:
        """Expose ``read()`` as metric ``name`` of ``kind`` ("counter" or "gauge")."""
        self.collectors[name] = (kind, help_text, read)

    def render(self) -> str:
        out: list[str] = []

        def header(name: str, kind: str, help_text: str) -> None:
            out.append(f"# HELP {name} {help_text}")
            out.append(f"# TYPE {name} {kind}")

        header("wahook_http_requests_total", "counter", "HTTP requests by handler, method, status.")
        for (handler, method, status), n in sorted(self.requests.items()):
            out.append(
                f'wahook_http_requests_total{{handler="{handler}",method="{method}",'
                f'code="{status}"}} {n}'
            )
        header("wahook_events_appended_total", "counter", "New events stored from webhooks.")
        out.append(f"wahook_events_appended_total {self.events_appended}")
        header("wahook_events_duplicate_total", "counter", "Events received again (Meta retries).")
        out.append(f"wahook_events_duplicate_total {self.events_duplicate}")
        header("wahook_signature_failures_total", "counter", "POSTs refused for their signature.")
        out.append(f"wahook_signature_failures_total {self.signature_failures}")
        header(
            "wahook_http_timeouts_total",
            "counter",
            "Connections closed for the idle, header or body timeout.",
        )
        out.append(f"wahook_http_timeouts_total {self.http_timeouts}")
        header(
            "wahook_misrouted_events_total",
            "counter",
            "Events stored for a phone number or WABA not on the allow-list.",
        )
        out.append(f"wahook_misrouted_events_total {self.misrouted_events}")
        name = "wahook_webhook_request_duration_seconds"
        header(name, "histogram", "POST /webhook latency, received to answered.")
        cumulative = 0
        for bound, count in zip(LATENCY_BUCKETS, self._bucket_counts, strict=False):
            cumulative += count
            out.append(f'{name}_bucket{{le="{bound}"}} {cumulative}')
        out.append(f'{name}_bucket{{le="+Inf"}} {self._latency_count}')
        out.append(f"{name}_sum {self._latency_sum:.6f}")
        out.append(f"{name}_count {self._latency_count}")
        for cname, (kind, help_text, read) in sorted(self.collectors.items()):
            header(cname, kind, help_text)
            out.append(f"{cname} {read():g}")
        return "\n".join(out) + "\n"
