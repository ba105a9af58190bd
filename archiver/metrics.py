"""Counters the daemon exposes on GET /metrics, in the Prometheus text format."""

from __future__ import annotations

import math
import threading
from collections import defaultdict

Number = int | float


def format_value(value: Number) -> str:
    """A sample value as the text exposition format spells it, exactly: integers in full (a
    timestamp or a byte counter cut to six digits is minutes or megabytes off), other floats
    by repr (the shortest text that reads back as the same float), and +Inf, -Inf, NaN."""
    if isinstance(value, int):  # bool included: True is 1
        return str(int(value))
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value.is_integer() and abs(value) < 2**63:
        return str(int(value))
    return repr(value)


def _labels(labels: dict[str, str]) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(labels.items()))
    return "{" + inner + "}"


def _escape(v: str) -> str:
    return str(v).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class Metrics:
    """Thread-safe counters and gauges; `render()` gives the exposition text."""

    HELP = {
        "archiver_passes_total": ("counter", "Outlet passes finished, by outlet and result."),
        "archiver_fetches_total": ("counter", "HTTP exchanges, by status class (2xx..5xx) or 'error' (no answer)."),
        "archiver_bytes_archived_total": ("counter", "Compressed bytes appended to WARC files."),
        "archiver_captures_kept_total": ("counter", "Article captures kept (new and updated), by outlet."),
        "archiver_errors_total": (
            "counter", "Failed fetches, by reason: http_4xx or http_5xx for an error status (robots.txt and "
                       "sitemap probes included), else why no answer came (connect, timeout, protocol...)."),
        "archiver_queue_depth": ("gauge", "Candidate articles waiting to be fetched."),
        "archiver_last_success_timestamp_seconds": ("gauge", "End of the last successful pass, by outlet."),
        "archiver_up": ("gauge", "1 while the scheduler runs."),
        "archiver_healthy": ("gauge", "1 while /healthz answers 200, 0 while it answers 503."),
        "archiver_last_pass_start_timestamp_seconds": (
            "gauge", "When the scheduler last started a pass (or found the outlet's previous one still running)."),
        "archiver_storage_free_bytes": ("gauge", "Free bytes on the storage root's filesystem."),
        "archiver_storage_min_free_bytes": ("gauge", "daemon.min_free_bytes: below it no pass starts."),
        "archiver_job_store_errors_total": ("counter", "Failed calls to the scheduler's job store."),
        "archiver_http_connections_refused_total": (
            "counter", "Connections to /healthz and /metrics closed at once because the most were open."),
        "archiver_http_accept_errors_total": (
            "counter", "Failed accepts on the /healthz and /metrics listener (each followed by a back-off)."),
    }

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # ints stay ints: a float holds integers exactly only up to 2**53
        self._values: dict[str, dict[tuple[tuple[str, str], ...], Number]] = defaultdict(dict)

    def inc(self, name: str, amount: Number = 1, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        with self._lock:
            series = self._values[name]
            series[key] = series.get(key, 0) + amount

    def set(self, name: str, value: Number, **labels: str) -> None:
        with self._lock:
            self._values[name][tuple(sorted(labels.items()))] = value

    def get(self, name: str, **labels: str) -> Number:
        with self._lock:
            return self._values.get(name, {}).get(tuple(sorted(labels.items())), 0)

    def render(self) -> str:
        lines: list[str] = []
        with self._lock:
            for name, (kind, text) in self.HELP.items():
                lines.append(f"# HELP {name} {text}")
                lines.append(f"# TYPE {name} {kind}")
                # a series with labels appears once it has a value; an unlabelled one always does
                series = self._values.get(name) or {(): 0}
                for key, value in sorted(series.items()):
                    lines.append(f"{name}{_labels(dict(key))} {format_value(value)}")
        return "\n".join(lines) + "\n"
