"""Exports for standard web-archive tools: a CDXJ index (pywb) and WACZ (ReplayWeb.page).

A WACZ holds exactly the selected captures: their WARC records, each copied byte for byte
from the file it was written to (repack.py), in new WARC files of the export's own; the
requisites replay shows beside each page (and those fetched for it); and, when asked, the
feeds, sitemaps and listing pages the pages were found through. Nothing else of the files
they came from goes in: an export about one topic says nothing about the others.
`pages/pages.jsonl` lists the selected captures, with title and extracted text for the
viewer's full-text search; the CDXJ index is made from the new files.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
import zipfile
from collections import deque
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from cdxj_indexer.main import CDXJIndexer

from . import __version__
from .decode import decode_text
from .dump import Selection, derive, select
from .errors import ArchiverError, ExportError
from .extract import MAX_PAGE_BYTES
from .index import CaptureRow, Index
from .repack import Repack
from .requisites import from_css, from_html
from .stores import local_copy
from .warc import read_payload
from .warcfiles import WarcFiles

WACZ_VERSION = "1.1.1"
MADE_FOR_PAGES = ("requisite", "dom", "screenshot")  # rows a page's capture made beside it
WARCINFO_FORMAT = {"format": "WARC File Format 1.1",
                   "conformsTo": "https://iipc.github.io/warc-specifications/specifications/warc-format/warc-1.1/"}


def _cdxj_of(path: Path, name: str) -> list[str]:
    """CDXJ lines of one WARC, by cdxj-indexer (the indexer pywb and py-wacz use)."""
    buf = io.StringIO()
    with open(path, "rb") as f:
        CDXJIndexer(buf, [f], filename=name).process_all()
    return [line for line in buf.getvalue().splitlines() if line.strip()]


def export_cdxj(warcs: WarcFiles, out: Path) -> int:
    """A sorted CDXJ index of every closed WARC file (local or shipped; a file still being
    written is left for the next export)."""
    lines: list[str] = []
    for name, loc in warcs.all_closed():
        with local_copy(loc, warcs.settings, scratch=out.parent) as path:
            lines += _cdxj_of(path, name)
    lines.sort()
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    tmp.replace(out)
    return len(lines)


def _ts(iso: str) -> str:
    return iso if iso.endswith("Z") else iso + "Z"


def selection_title(sel: Selection, captures: int) -> str:
    """What the selection is, in words: "archiver: topic X, outlet Y, 2026-11-01 to 2026-12-01, 3 captures"."""
    parts = []
    for word, values in (("topic", sel.topics), ("outlet", sel.outlets)):
        if values:
            parts.append(f"{word}{'s' if len(values) > 1 else ''} {', '.join(values)}")
    if sel.since and sel.until:
        parts.append(f"{sel.since} to {sel.until}")
    elif sel.since or sel.until:
        parts.append(f"since {sel.since}" if sel.since else f"until {sel.until}")
    if sel.urls:
        parts.append(f"{len(sel.urls)} URL{'s' if len(sel.urls) > 1 else ''}")
    if not parts:
        parts.append("every archived article")
    return f"archiver: {', '.join(parts)}, {captures} capture{'s' if captures != 1 else ''}"


def export_wacz(storage_root: Path, warcs: WarcFiles, index: Index, out: Path, sel: Selection, progress: Any = None,
                with_discovery: bool = False) -> dict[str, Any]:
    """Write a WACZ of exactly the selected article captures (and their requisites; with
    `with_discovery`, the documents they were found through); returns counts. WARC files kept
    elsewhere (a scaled setup's store) are fetched one at a time next to `out`."""
    rows = select(index, sel)
    if not rows:
        raise ExportError("nothing to export: no archived article matches the selection")
    return _write_wacz(storage_root, warcs, index, out, rows, selection_title(sel, len(rows)), sel.as_dict(),
                       progress, with_discovery)


def export_capture_wacz(storage_root: Path, warcs: WarcFiles, index: Index, capture_id: int, out: Path,
                        with_discovery: bool = False) -> dict[str, Any]:
    """Write a WACZ of exactly one capture (any kind with a record in a WARC: an article, a
    feed, a requisite), with what it needs to replay; returns counts as export_wacz does."""
    row = index.get(capture_id)
    if row is None:
        raise ExportError(f"no capture {capture_id} in the index {index.path}")
    if not (row.warc_file and row.warc_offset is not None and row.warc_record_id):
        raise ExportError(f"capture {capture_id} ({row.url}, {row.state}) left no record in a WARC to export")
    title = f"archiver: {row.title or row.final_url or row.url}, captured {row.fetched_at}"
    return _write_wacz(storage_root, warcs, index, out, [row], title, {"capture_id": capture_id}, None,
                       with_discovery)


def captures_for(index: Index, warcs: WarcFiles, pages: list[CaptureRow], with_discovery: bool) -> list[CaptureRow]:
    """The captures an export of `pages` holds: the pages; what their capture made beside
    them (requisites fetched for them, rendered DOM, screenshot); the requisites replay shows
    with them; with `with_discovery`, the documents they were found through; and the
    original of every revisit among those (replay serves a revisit's payload from it)."""
    todo = deque(pages)
    todo += index.made_for([p.warc_record_id for p in pages if p.warc_record_id], MADE_FOR_PAGES)
    todo += requisite_captures(index, warcs, pages)
    if with_discovery:
        for via in sorted({p.discovered_via_record_id for p in pages if p.discovered_via_record_id}):
            doc = index.by_record_id(via)
            # an article found through another article is that article's, not a discovery document
            if doc is not None and doc.kind != "article" and doc.warc_file:
                todo.append(doc)
    chosen: list[CaptureRow] = []
    seen: set[str] = set()
    while todo:
        r = todo.popleft()
        if not r.warc_record_id or r.warc_record_id in seen:
            continue
        seen.add(r.warc_record_id)
        chosen.append(r)
        if r.revisit_of and r.revisit_of not in seen:
            original = index.by_record_id(r.revisit_of)
            if original is not None and original.warc_file:
                todo.append(original)
    return chosen


def _write_wacz(storage_root: Path, warcs: WarcFiles, index: Index, out: Path, pages: list[CaptureRow], title: str,
                selection: dict[str, Any], progress: Any, with_discovery: bool) -> dict[str, Any]:
    out.parent.mkdir(parents=True, exist_ok=True)
    captures = captures_for(index, warcs, pages, with_discovery)
    page_list = [{"format": "json-pages-1.0", "id": "pages", "title": title, "hasText": True}]
    for r in pages:
        page_list.append({"id": hashlib.sha256((r.warc_record_id or "").encode()).hexdigest()[:32],
                          "url": r.final_url or r.url, "ts": _ts(r.fetched_at), "title": r.title or "",
                          "text": _article_text(storage_root, warcs, r)})
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    needed = "requisites, rendered DOMs and screenshots, originals of revisits" + (
        ", discovery documents" if with_discovery else "")
    description = (f"{len(pages)} selected capture{'s' if len(pages) != 1 else ''} with the "
                   f"{len(captures) - len(pages)} more they need ({needed}): their WARC records copied byte for "
                   f"byte from the archive's files, nothing else of those files. Exported by archiver {__version__} "
                   f"at {now}.")
    resources: list[dict[str, Any]] = []
    lines: list[str] = []
    tmp = out.with_name(out.name + ".tmp")
    try:
        with tempfile.TemporaryDirectory(prefix=".export-", dir=out.parent) as scratch:
            repack = Repack(warcs, Path(scratch))
            for r in captures:
                repack.add(r)
                if progress:
                    progress(1)
            folder = Path(scratch) / "archive"
            folder.mkdir()
            fields = {"software": f"archiver {__version__}", **WARCINFO_FORMAT, "description": title,
                      "selection": json.dumps(selection, sort_keys=True, ensure_ascii=False), "exported": now}
            files = repack.write(folder, "export-", fields)
            with zipfile.ZipFile(tmp, "w", allowZip64=True) as z:
                for path in files:
                    arc = f"archive/{path.name}"
                    # WARC members are gzip already; stored, so replay tools can seek into them
                    z.write(path, arc, compress_type=zipfile.ZIP_STORED)
                    resources.append(_file_resource(arc, path, path.name))
                    lines += _cdxj_of(path, path.name)
                cdxj = "".join(line + "\n" for line in sorted(lines)).encode("utf-8")
                z.writestr("indexes/index.cdxj", cdxj, compress_type=zipfile.ZIP_DEFLATED)
                resources.append(_resource("indexes/index.cdxj", cdxj))
                pj = "".join(json.dumps(p, ensure_ascii=False, sort_keys=True) + "\n" for p in page_list)
                z.writestr("pages/pages.jsonl", pj.encode("utf-8"), compress_type=zipfile.ZIP_DEFLATED)
                resources.append(_resource("pages/pages.jsonl", pj.encode("utf-8")))
                package = {
                    "profile": "data-package", "wacz_version": WACZ_VERSION, "created": now, "modified": now,
                    "title": title, "description": description, "software": f"archiver {__version__}",
                    "mainPageURL": page_list[1]["url"], "mainPageDate": page_list[1]["ts"],
                    "selection": selection, "resources": resources,
                }
                pkg = json.dumps(package, indent=2, sort_keys=True, ensure_ascii=False).encode("utf-8")
                z.writestr("datapackage.json", pkg, compress_type=zipfile.ZIP_DEFLATED)
                digest = {"path": "datapackage.json", "hash": "sha256:" + hashlib.sha256(pkg).hexdigest()}
                z.writestr("datapackage-digest.json", json.dumps(digest, indent=2).encode("utf-8"),
                           compress_type=zipfile.ZIP_DEFLATED)
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return {"pages": len(pages), "captures": len(captures), "records": repack.copied, "warcs": len(files),
            "cdxj_lines": cdxj.count(b"\n")}


def requisite_captures(index: Index, warcs: WarcFiles, rows: list[CaptureRow]) -> list[CaptureRow]:
    """The requisites the pages need to render, as replay shows them: for each page, the
    capture nearest in time to the page of every URL its HTML names, and of what its
    stylesheets name."""
    found: dict[int, CaptureRow] = {}
    for r in rows:
        if not (r.warc_file and r.warc_offset is not None and r.final_url):
            continue
        try:
            with warcs.open_record(r.warc_file, r.warc_offset, r.warc_length) as f:
                _, body = read_payload(f, MAX_PAGE_BYTES)
        except (ArchiverError, OSError, ValueError, StopIteration):
            continue
        todo = from_html(decode_text(body, r.content_type).text, r.final_url)
        seen = {q.url for q in todo}
        while todo:
            req = todo.pop()
            near = index.nearest_requisite(req.url, r.fetched_at)
            if near is None or not near.warc_file or near.id is None:
                continue
            found[near.id] = near
            if req.kind == "stylesheet" and near.warc_offset is not None:
                try:
                    with warcs.open_record(near.warc_file, near.warc_offset, near.warc_length) as f:
                        _, css = read_payload(f, MAX_PAGE_BYTES)
                except (ArchiverError, OSError, ValueError, StopIteration):
                    continue
                more = [q for q in from_css(decode_text(css, near.content_type).text, req.url) if q.url not in seen]
                seen.update(q.url for q in more)
                todo.extend(more)
    return [found[i] for i in sorted(found)]


def _article_text(storage_root: Path, warcs: WarcFiles, r: CaptureRow) -> str:
    """The crawl-time text file, or (a scaled setup keeps those in its workers' spools) the
    text derived again from the WARC record."""
    if r.text_path:
        try:
            return (storage_root / r.text_path).read_text(encoding="utf-8")
        except OSError:
            pass
    if r.kind == "article" and r.warc_file and r.warc_offset is not None:
        try:
            return derive(warcs.location(r.warc_file), r.warc_offset, r.warc_length, "article", warcs.settings)
        except (ArchiverError, OSError, ValueError, StopIteration):
            return ""
    return ""


def _file_resource(arc: str, path: Path, name: str) -> dict[str, Any]:
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
            size += len(chunk)
    return {"name": name, "path": arc, "hash": "sha256:" + h.hexdigest(), "bytes": size}


def _resource(path: str, data: bytes) -> dict[str, Any]:
    return {"name": Path(path).name, "path": path, "hash": "sha256:" + hashlib.sha256(data).hexdigest(),
            "bytes": len(data)}
