"""GET /metrics tells the truth: its numbers are exact (a timestamp or a byte counter is not cut
to six digits) and read back with Prometheus' own parser they equal what the index holds; an
outlet that answers 404 and 500 shows as errors by reason, beside the network failures."""

from __future__ import annotations

import json
import math
import os
import sqlite3
import urllib.request
from collections import Counter
from datetime import datetime
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from archiver.demo.site import SampleSite
from archiver.metrics import Metrics

from .rawserver import RawServer, raw
from .test_daemon import config_text, free_port, wait_for
from .test_daemon_health import Run
from .test_item_failures import _feed, _ok

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def sample(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def test_values_are_written_exactly_as_the_exposition_format_spells_them():
    m = Metrics()
    m.set("archiver_last_success_timestamp_seconds", 1796156520, outlet="a")
    m.set("archiver_last_success_timestamp_seconds", 1796156520.25, outlet="b")
    m.set("archiver_last_pass_start_timestamp_seconds", 1796156519.0)  # time.time() on a whole second
    m.inc("archiver_bytes_archived_total", 12_345_678_901)
    m.inc("archiver_fetches_total", status_class="2xx")
    m.inc("archiver_fetches_total", 1_234_566, status_class="2xx")
    m.set("archiver_queue_depth", math.nan)
    m.set("archiver_storage_free_bytes", math.inf)
    m.set("archiver_storage_min_free_bytes", -math.inf)
    text = m.render()
    lines = text.splitlines()
    assert 'archiver_last_success_timestamp_seconds{outlet="a"} 1796156520' in lines
    assert 'archiver_last_success_timestamp_seconds{outlet="b"} 1796156520.25' in lines
    assert "archiver_last_pass_start_timestamp_seconds 1796156519" in lines
    assert "archiver_bytes_archived_total 12345678901" in lines
    assert 'archiver_fetches_total{status_class="2xx"} 1234567' in lines
    assert "archiver_queue_depth NaN" in lines
    assert "archiver_storage_free_bytes +Inf" in lines
    assert "archiver_storage_min_free_bytes -Inf" in lines
    got = parse(text)
    assert sample(got, "archiver_last_success_timestamp_seconds", outlet="a") == 1796156520
    assert sample(got, "archiver_last_success_timestamp_seconds", outlet="b") == 1796156520.25
    assert sample(got, "archiver_bytes_archived_total") == 12_345_678_901
    assert sample(got, "archiver_fetches_total", status_class="2xx") == 1_234_567
    assert math.isnan(sample(got, "archiver_queue_depth") or 0.0)
    assert sample(got, "archiver_storage_free_bytes") == math.inf
    assert sample(got, "archiver_storage_min_free_bytes") == -math.inf
    # a float that is no integer reads back as the very same float
    for value in (0.1, 1 / 3, 1796156520.123456, 2.5e-7, 6.02e23):
        m.set("archiver_healthy", value)
        assert sample(parse(m.render()), "archiver_healthy") == value


def _epoch(warc_date: str) -> float:
    return datetime.fromisoformat(warc_date.replace("Z", "+00:00")).timestamp()


def test_metrics_of_a_running_daemon_equal_what_the_index_holds(tmp_path: Path):
    """One pass over the sample outlet plus a second host whose articles answer 404 and 500,
    one that hangs up without answering, and a 404 sitemap of over a megabyte."""
    missing = [f"/missing-{i}" for i in range(3)]
    broken = [f"/broken-{i}" for i in range(2)]
    big = os.urandom(1_300_000)  # incompressible: the WARCs pass a million bytes
    routes = {"/robots.txt": raw(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"),
              "/hangup": raw(b""),  # closes the connection without a word
              "/sitemap.xml": raw(b"HTTP/1.1 404 Not Found\r\nContent-Type: application/octet-stream\r\n"
                                  + f"Content-Length: {len(big)}\r\n\r\n".encode() + big)}
    for p in missing:
        routes[p] = raw(b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\nnot found")
    for p in broken:
        routes[p] = raw(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 5\r\n\r\noops!")
    port = free_port()
    root = tmp_path / "arch"
    with SampleSite(crawl_delay=0.02) as site, RawServer(routes) as other:
        routes["/feed.xml"] = raw(_ok(_feed([other.url(p) for p in (*missing, *broken, "/hangup")]),
                                      "application/rss+xml"))
        text = config_text(site, root, port, every="30s")  # one pass while the test looks
        text = text.replace('feeds: ["', f'feeds: ["{other.url("/feed.xml")}", "', 1)
        root.mkdir()
        cfg = root / "config.yaml"
        cfg.write_text(text)
        run = Run(cfg)
        try:
            wait_for("a pass done", lambda: run.count("pass of harbor-times done"), timeout=60)
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                exposition = r.read().decode()
            assert run.stop() == 0
        finally:
            run.kill()

    got = parse(exposition)
    conn = sqlite3.connect(root / "index.sqlite3")
    passes = conn.execute("SELECT ended_at FROM passes WHERE outlet = 'harbor-times'").fetchall()
    rows = conn.execute("SELECT kind, state, status, redirect_record_ids, error FROM captures").fetchall()
    conn.close()

    assert len(passes) == 1 and passes[0][0] is not None
    assert sample(got, "archiver_passes_total", outlet="harbor-times", result="ok") == 1
    # the last success is the pass's end as the index has it, to the second (1.79616e+09 was up to 83 min off)
    last = sample(got, "archiver_last_success_timestamp_seconds", outlet="harbor-times")
    assert last is not None and abs(last - _epoch(passes[0][0])) < 1.0, (last, passes[0][0])

    # every exchange is counted by its status class: captures by their status, redirect hops as 3xx
    by_class: Counter[str] = Counter()
    for _kind, _state, status, hops, _error in rows:
        if status is not None:
            by_class[f"{status // 100}xx"] += 1
        by_class["3xx"] += len(json.loads(hops))
    for status_class in ("2xx", "3xx", "4xx", "5xx"):
        assert sample(got, "archiver_fetches_total", status_class=status_class) == by_class[status_class], \
            (status_class, by_class, exposition)
    assert by_class["4xx"] >= len(missing) + 2 and by_class["5xx"] == len(broken)  # + robots.txt, sitemap.xml

    # error statuses are errors, by class; a failure with no answer keeps its own reason
    assert sample(got, "archiver_errors_total", reason="http_4xx") == by_class["4xx"]
    assert sample(got, "archiver_errors_total", reason="http_5xx") == by_class["5xx"] == 2
    no_answer = [error for _k, state, status, _h, error in rows if state == "failed" and status is None]
    assert len(no_answer) == 1 and "protocol" in no_answer[0], no_answer
    assert sample(got, "archiver_errors_total", reason="protocol") == 1
    assert sample(got, "archiver_fetches_total", status_class="error") == 1

    kept = sum(1 for kind, state, *_ in rows if kind == "article" and state == "archived")
    assert kept > 0 and sample(got, "archiver_captures_kept_total", outlet="harbor-times") == kept
    # bytes in full: every byte of every WARC file, past a million
    on_disk = sum(f.stat().st_size for f in (root / "warc").iterdir())
    assert on_disk > 1_000_000 and sample(got, "archiver_bytes_archived_total") == on_disk
