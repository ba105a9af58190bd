"""From a fetched exchange to what the archive keeps: WARC records, text files, index rows.

Order of durability for every capture: WARC records written and flushed, then text files
written, then the index row committed. A crash between steps leaves at worst records
without a row (found again by `fsck`), never a row pointing at nothing.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from . import SOFTWARE, faults
from .archived_requisites import Reused
from .config import LoadedConfig
from .discover import Candidate
from .errors import StorageError, os_reason
from .extract import Extraction
from .fetch import FetchResult, Response
from .index import ARCHIVED, BLOCKED, NOT_MODIFIED, UNCHANGED, CaptureRow, Index, PageText
from .outletrun import OutletRun
from .urls import slug
from .clock import utc_now, warc_date
from .warc import RecordRef, WarcWriter, sha1_b32

WriterFactory = Callable[[LoadedConfig], WarcWriter]


def text_key(record_id: str) -> str:
    """The name a capture's text files (and dump files) get: from its record id, never from
    its URL or title, so nothing the web sends can name a file."""
    return hashlib.sha256(record_id.encode("ascii")).hexdigest()[:16]


def page_text(ex: Extraction) -> PageText:
    """What the index keeps of every article page fetched: what its topics are decided on."""
    return PageText(ex.title, ex.published or None, ex.body_text)


@dataclass(frozen=True)
class TextFiles:
    """Where a kept article's texts go, relative to the storage root, as POSIX paths.

    Strings, not pathlib paths: a Path interns each of its parts, and every article's file
    names are new, so a long crawl kept growing the interpreter's table of interned strings
    (a step of about 1 MB at 10,000 articles)."""

    folder: str
    article: str
    page: str

    @classmethod
    def of(cls, outlet: str, started: datetime, record_id: str) -> "TextFiles":
        day = started.astimezone(timezone.utc).strftime("%Y-%m-%d")
        folder, key = f"text/{slug(outlet)}/{day}", text_key(record_id)
        return cls(folder, f"{folder}/{key}.article.txt", f"{folder}/{key}.page.txt")


@dataclass(frozen=True)
class Decision:
    """What a page was kept as: its topics and where each matched term was seen, or the block
    page it turned out to be."""

    topics: list[str]
    matched: dict[str, list[str]]
    blocked: str | None = None


DOM_URN, SCREENSHOT_URN = "urn:dom:", "urn:screenshot:"
DOM_TYPE = "text/html; charset=utf-8"


@dataclass(frozen=True)
class HowCaptured:
    """Which capture mode kept a page and why; for a page rendered in the browser, its DOM
    (what its texts were extracted from) and screenshot."""

    mode: str  # html | requisites | browser
    reason: str
    dom: bytes | None = None
    screenshot: bytes | None = None
    rendered_at: datetime | None = None


@dataclass(frozen=True)
class Kept:
    row: CaptureRow
    response: RecordRef
    texts: TextFiles


class Recorder:
    """Writes captures: owns the WARC writer (a new config hash starts a new file) and adds
    the index rows that point into it."""

    def __init__(self, cfg: LoadedConfig, index: Index, root: Path, new_writer: WriterFactory):
        self.cfg, self.index, self.root = cfg, index, root
        self._new_writer = new_writer
        self.writer = new_writer(cfg)

    def reconfigure(self, cfg: LoadedConfig) -> None:
        old, self.cfg = self.cfg, cfg
        if cfg.sha256 != old.sha256:
            self.writer.close()
            closed, written = self.writer.closed_files, self.writer.bytes_written
            self.writer = self._new_writer(cfg)
            self.writer.closed_files, self.writer.bytes_written = closed, written

    def close(self) -> None:
        self.writer.close()

    # ------------------------------------------------------------------ rows

    def row(self, resp: Response, run: OutletRun, kind: str, state: str,
            refs: tuple[RecordRef, RecordRef] | None) -> CaptureRow:
        """The row of an exchange as received; `refs` are its request and response records."""
        row = CaptureRow(outlet=run.name, kind=kind, state=state, url=resp.url, final_url=resp.url,
                         status=resp.status, fetched_at=warc_date(resp.started), pass_id=run.pass_id,
                         payload_digest=sha1_b32(resp.payload_sha1), content_type=resp.content_type or None,
                         truncated=resp.truncated, ip_address=resp.ip, etag=resp.headers.get("etag"),
                         last_modified=resp.headers.get("last-modified"))
        if refs is not None:
            req, res = refs
            row.warc_file, row.warc_offset, row.warc_length = res.warc_file, res.offset, res.length
            row.warc_record_id, row.request_record_id = res.record_id, req.record_id
        return row

    def exchange(self, resp: Response) -> tuple[RecordRef, RecordRef]:
        return self.writer.write_exchange(resp.url, resp.started, resp.ip, resp.request_bytes, resp.raw,
                                          resp.raw_length, resp.block_sha1, resp.payload_sha1, resp.truncated)

    def document(self, resp: Response, run: OutletRun, kind: str) -> CaptureRow:
        """Archive a discovery document, redirect hop or robots.txt and index it."""
        refs = self.exchange(resp)
        self.writer.flush()
        row = self.row(resp, run, kind, ARCHIVED, refs)
        self.index.add(row)
        return row

    def robots(self, result: FetchResult, run: OutletRun) -> None:
        for r in result.robots:
            self.document(r, run, "robots")

    def nothing(self, url: str, run: OutletRun, kind: str, state: str, error: str | None,
                via: Candidate | None = None, final: Response | None = None, page: Extraction | None = None) -> None:
        """Index a capture attempt that left nothing in the WARC (failed, off topic, robots, ...);
        `page`, what a page fetched and not kept said, stays in the index (page_texts)."""
        row = CaptureRow(outlet=run.name, kind=kind, state=state, url=url, fetched_at=utc_now(),
                         pass_id=run.pass_id, error=error)
        if final is not None:
            row.final_url, row.status, row.fetched_at = final.url, final.status, warc_date(final.started)
            row.content_type = final.content_type or None
        if via is not None:
            row.discovered_via_url, row.discovered_via_record_id = via.via_url, via.via_record_id
        self.index.add(row, frontier_id=via.frontier_id if via is not None and kind == "article" else None,
                       page=page_text(page) if page is not None else None)

    def not_modified(self, resp: Response, prev: CaptureRow, run: OutletRun, kind: str,
                     url: str | None = None, previous_id: int | None = None) -> CaptureRow:
        """A 304 to a conditional request: a server-not-modified revisit (or nothing), and a row.
        `prev` is the full capture the revisit refers to; `previous_id` the capture it follows."""
        row = dataclasses.replace(self.row(resp, run, kind, NOT_MODIFIED, None),
                                  previous_capture_id=previous_id if previous_id is not None else prev.id,
                                  revisit_of=prev.warc_record_id, payload_digest=prev.payload_digest)
        if url is not None:
            row.url = url
        if self.cfg.config.daemon.not_modified == "revisit":
            assert prev.warc_record_id and prev.payload_digest and prev.final_url
            resp.raw.seek(0)
            req, rev = self.writer.write_revisit(resp.url, resp.started, resp.ip, resp.request_bytes,
                                                 resp.raw.read(resp.raw_length), "server-not-modified",
                                                 prev.warc_record_id, prev.final_url, prev.fetched_at,
                                                 prev.payload_digest)
            self.writer.flush()
            row.warc_file, row.warc_offset, row.warc_length = rev.warc_file, rev.offset, rev.length
            row.warc_record_id, row.request_record_id = rev.record_id, req.record_id
        self.index.add(row)
        return row

    def unchanged(self, final: Response, c: Candidate, run: OutletRun, previous: CaptureRow,
                  full: CaptureRow) -> None:
        """A refetch whose payload is the one `full` holds: an identical-payload-digest revisit."""
        final.raw.seek(0)
        refs = self.writer.write_revisit(
            final.url, final.started, final.ip, final.request_bytes, final.raw.read(final.head_length),
            "identical-payload-digest", full.warc_record_id or "", full.final_url or "", full.fetched_at,
            full.payload_digest or "")
        self.writer.flush()
        self.index.add(dataclasses.replace(
            self.row(final, run, "article", UNCHANGED, refs), url=c.url, previous_capture_id=previous.id,
            revisit_of=full.warc_record_id, topics=full.topics, matched=full.matched, discovered_via_url=c.via_url,
            discovered_via_record_id=c.via_record_id))

    # ------------------------------------------------------------------ requisites

    def requisite(self, resp: Response, run: OutletRun, page_url: str, page_record_id: str,
                  previous: CaptureRow | None) -> CaptureRow:
        """A page requisite as the server sent it (any status: a 404 for an image is what the
        page got too); an identical-payload-digest revisit when `previous`, an earlier
        capture of it, holds the same payload."""
        digest = sha1_b32(resp.payload_sha1)
        if (previous is not None and previous.warc_record_id and previous.payload_digest == digest
                and previous.status == resp.status and not resp.truncated):
            resp.raw.seek(0)
            refs = self.writer.write_revisit(
                resp.url, resp.started, resp.ip, resp.request_bytes, resp.raw.read(resp.head_length),
                "identical-payload-digest", previous.warc_record_id, previous.final_url or resp.url,
                previous.fetched_at, digest)
            row = dataclasses.replace(self.row(resp, run, "requisite", UNCHANGED, refs),
                                      previous_capture_id=previous.id, revisit_of=previous.warc_record_id)
        else:
            refs = self.exchange(resp)
            row = self.row(resp, run, "requisite", ARCHIVED, refs)
        self.writer.flush()
        row.discovered_via_url, row.discovered_via_record_id = page_url, page_record_id
        self.index.add(row)
        return row

    def browser_requisites(self, results: list[FetchResult], refused: list[str], run: OutletRun, page_url: str,
                           page_record_id: str, reused: list[Reused] | None = None) -> int:
        """What the browser fetched for a kept page, each exchange a requisite of it, and the
        list of them (and of what it got from the archive, and of every request refused) in
        its provenance; returns how many it fetched."""
        lines = []
        for result in results:
            final = result.final
            if final is None:
                continue  # refused: the reason is in `refused`
            row = self.requisite(final, run, page_url, page_record_id, self.index.latest(final.url, ("requisite",)))
            lines.append(("requisite", f"{final.url} {row.warc_record_id}"))
        fetched = len(lines)
        lines += [r.line() for r in reused or ()]
        lines += [("requisite-refused", why) for why in refused]
        if lines:
            self.requisites_listed(page_url, page_record_id, [("fetched-by", "browser"), *lines])
        return fetched

    def requisites_listed(self, page_url: str, page_record_id: str, lines: list[tuple[str, str]]) -> RecordRef:
        """The page's requisites in its provenance: a metadata record referring to its response."""
        ref = self.writer.write_metadata(page_url, datetime.now(timezone.utc), page_record_id,
                                         [("requisites-of", page_record_id), *lines])
        self.writer.flush()
        return ref

    # ------------------------------------------------------------------ a kept article

    def keep(self, result: FetchResult, c: Candidate, run: OutletRun, ex: Extraction, decision: Decision,
             previous: CaptureRow | None = None, how: HowCaptured | None = None) -> Kept:
        """The article's redirect hops, response, rendered DOM and screenshot (resource
        records, when `how` has them), conversion (article text) and metadata (provenance)
        records, then its two text files, then its rows."""
        final = result.final
        assert final is not None
        redirect_ids = []
        for hop in result.hops[:-1]:
            faults.check("redirect", hop.url)
            _, hop_ref = self.exchange(hop)
            redirect_ids.append(hop_ref.record_id)
        refs = self.exchange(final)
        faults.check("keep", final.url)
        resp_ref = refs[1]
        now = datetime.now(timezone.utc)
        made = self._rendered(final, resp_ref, how, now, run)
        article_bytes = ex.article_text.encode("utf-8")
        conv = self.writer.write_conversion(final.url, now, resp_ref.record_id, article_bytes)
        meta = [("via", c.via_url), ("via-record-id", c.via_record_id or ""), ("via-kind", c.via_kind),
                ("outlet", run.name), ("topics", ", ".join(decision.topics))]
        meta += [("matched", f"{term} in {', '.join(where)}") for term, where in sorted(decision.matched.items())]
        meta += [("extractor", f"{ex.extractor}/{ex.extractor_version}"), ("renderer", ex.renderer),
                 ("conversion-record-id", conv.record_id), ("software", SOFTWARE),
                 ("config-sha256", self.cfg.sha256)]
        if how is not None:
            meta += [("capture-mode", how.mode), ("capture-reason", how.reason)]
            meta += [(f"{row.kind}-record-id", row.warc_record_id or "") for row in made]
        if decision.blocked:
            meta.append(("blocked", decision.blocked))
        if result.hops[0].url != final.url:
            meta.append(("requested-url", result.hops[0].url))
        if previous is not None:
            meta.append(("previous-capture", previous.warc_record_id or ""))
        if c.found_by:
            meta.append(("found-by", c.found_by))
        meta_ref = self.writer.write_metadata(final.url, now, resp_ref.record_id, meta)
        self.writer.flush()
        texts = TextFiles.of(run.name, final.started, resp_ref.record_id)
        page_bytes = ex.page_text.encode("utf-8")
        root = os.fspath(self.root)
        try:
            os.makedirs(os.path.join(root, texts.folder), exist_ok=True)
            for rel, data in ((texts.article, article_bytes), (texts.page, page_bytes)):
                with open(os.path.join(root, rel), "wb") as f:
                    f.write(data)
        except OSError as e:
            raise StorageError(f"cannot write text file {e.filename or os.path.join(root, texts.folder)}: "
                               f"{os_reason(e)}") from None
        # before the page's row: a page row whose DOM row is missing would be re-derived from
        # its static response by dump and verify
        for made_row in made:
            self.index.add(made_row)
        row = dataclasses.replace(
            self.row(final, run, "article", BLOCKED if decision.blocked else ARCHIVED, refs),
            url=c.url, discovered_via_url=c.via_url, discovered_via_record_id=c.via_record_id,
            topics=decision.topics, matched=decision.matched, conversion_record_id=conv.record_id,
            metadata_record_id=meta_ref.record_id, redirect_record_ids=redirect_ids, title=ex.title,
            byline=ex.byline or None, published=ex.published or None, language=ex.language or None,
            text_path=texts.article, text_sha256=hashlib.sha256(article_bytes).hexdigest(),
            page_text_path=texts.page, page_text_sha256=hashlib.sha256(page_bytes).hexdigest(),
            extractor=ex.extractor, extractor_version=ex.extractor_version, renderer=ex.renderer,
            error=f"blocked: {decision.blocked}" if decision.blocked else None,
            previous_capture_id=previous.id if previous is not None else None)
        row.id = self.index.add(row, frontier_id=c.frontier_id, page=page_text(ex))
        return Kept(row, resp_ref, texts)

    def promote(self, row: CaptureRow, topics: list[str], matched: dict[str, list[str]], found_by: str) -> None:
        """A kept capture found about `topics` besides those it was archived under (a rematch
        of its stored text, `matched` the terms and where): a metadata record about its
        response says so, then its row gets them. Nothing is fetched."""
        assert row.warc_record_id and row.id is not None
        every = [*row.topics, *(t for t in topics if t not in row.topics)]
        meta = [("found-by", found_by), ("outlet", row.outlet), ("topics-added", ", ".join(topics)),
                ("topics", ", ".join(every))]
        meta += [("matched", f"{term} in {', '.join(where)}") for term, where in sorted(matched.items())]
        meta += [("software", SOFTWARE), ("config-sha256", self.cfg.sha256)]
        self.writer.write_metadata(row.final_url or row.url, datetime.now(timezone.utc), row.warc_record_id, meta)
        self.writer.flush()
        self.index.promote(row.id, every, {**row.matched, **matched})

    def _rendered(self, final: Response, resp_ref: RecordRef, how: HowCaptured | None, now: datetime,
                  run: OutletRun) -> list[CaptureRow]:
        """The DOM and screenshot resource records of a rendered page, each linked to its
        response record; their rows, to be added once the page's records are flushed."""
        if how is None or how.dom is None:
            return []
        at = how.rendered_at or now
        made = [("dom", DOM_URN, DOM_TYPE, how.dom)]
        if how.screenshot is not None:
            made.append(("screenshot", SCREENSHOT_URN, "image/png", how.screenshot))
        rows = []
        for kind, urn, ctype, data in made:
            ref = self.writer.write_resource(urn + final.url, at, ctype, data, resp_ref.record_id)
            rows.append(CaptureRow(outlet=run.name, kind=kind, state=ARCHIVED, url=urn + final.url,
                                   final_url=urn + final.url, fetched_at=warc_date(at), pass_id=run.pass_id,
                                   payload_digest=sha1_b32(hashlib.sha1(data).digest()), content_type=ctype,
                                   warc_file=ref.warc_file, warc_offset=ref.offset, warc_length=ref.length,
                                   warc_record_id=ref.record_id, discovered_via_url=final.url,
                                   discovered_via_record_id=resp_ref.record_id))
        return rows


def warcinfo_fields(cfg: LoadedConfig) -> dict[str, str]:
    f = cfg.config.fetch
    return {
        "software": SOFTWARE,
        "operator": cfg.config.storage.warc.operator,
        "http-header-user-agent": f.user_agent,
        "robots": "obey" if f.respect_robots else "ignore",
        "isPartOf": "archiver",
        "description": "news archiving pass",
        "archiver-config-sha256": cfg.sha256,
    }


def local_writer(cfg: LoadedConfig) -> WarcWriter:
    """WARC files under the storage root, as a single-machine pass writes them."""
    w = cfg.config.storage.warc
    return WarcWriter(cfg.storage_root, w.prefix, w.rotate_size, warcinfo_fields(cfg), w.compress_level)
