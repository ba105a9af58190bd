"""Refetching kept articles: an identical payload becomes a revisit record, not a second copy."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

from warcio.archiveiterator import ArchiveIterator

from archiver.config import load_config
from archiver.crawl import run_pass
from archiver.demo.site import ON_TOPIC, SampleSite
from archiver.index import Index


def test_identical_refetch_is_a_revisit_linked_to_the_first_capture(tmp_path: Path):
    with SampleSite(crawl_delay=0.05, etags=False) as site:  # no validators: the server answers 200 again
        cfg_path = tmp_path / "c.yaml"
        cfg_path.write_text(site.config_yaml(str(tmp_path)).replace("discover:\n", "refetch:\n  after: [0s]\ndiscover:\n"))
        cfg = load_config(cfg_path)
        first = asyncio.run(run_pass(cfg)).outlets[0]
        second = asyncio.run(run_pass(cfg)).outlets[0]
        third = asyncio.run(run_pass(cfg)).outlets[0]
    assert first.archived == len(ON_TOPIC)
    assert (second.refetched, second.unchanged, second.updated, second.archived) == (len(ON_TOPIC),) * 2 + (0, 0)
    assert third.refetched == 0  # one refetch per configured delay
    with Index.open(tmp_path, readonly=True) as idx:
        rows = list(idx.captures(kind="article"))
    originals = {r.final_url: r for r in rows if r.state == "archived"}
    revisits = [r for r in rows if r.state == "unchanged"]
    assert len(revisits) == len(ON_TOPIC)
    for r in revisits:
        orig = originals[r.final_url]
        assert r.previous_capture_id == orig.id and r.revisit_of == orig.warc_record_id
        member = (tmp_path / r.warc_file).read_bytes()[r.warc_offset: r.warc_offset + r.warc_length]
        rec = next(iter(ArchiveIterator(io.BytesIO(member))))
        h = rec.rec_headers
        assert rec.rec_type == "revisit"
        assert h.get_header("WARC-Profile") == "http://netpreserve.org/warc/1.1/revisit/identical-payload-digest"
        assert h.get_header("WARC-Refers-To") == orig.warc_record_id
        assert h.get_header("WARC-Refers-To-Target-URI") == orig.final_url
        assert h.get_header("WARC-Refers-To-Date") == orig.fetched_at
        assert h.get_header("WARC-Payload-Digest") == orig.payload_digest
        assert rec.http_headers.get_statuscode() == "200"
