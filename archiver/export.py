"""Exports for standard web-archive tools: a CDXJ index (pywb) and WACZ (ReplayWeb.page).

A WACZ carries whole WARC files, copied byte for byte: every WARC holding at least one
selected capture goes in, so request, conversion and metadata records travel with their
responses and every digest stays checkable. `pages/pages.jsonl` lists the selected article
captures only, with title and extracted text for the viewer's full-text search.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

from cdxj_indexer.main import CDXJIndexer

from . import __version__
from .decode import decode_text
from .dump import Selection, derive, select
from .errors import ArchiverError, ExportError, StorageError
from .extract import MAX_PAGE_BYTES
from .index import CaptureRow, Index
from .requisites import from_css, from_html
from .stores import local_copy, local_path
from .warc import read_payload
from .warcfiles import WarcFiles

WACZ_VERSION = "1.1.1"


def _locations(warcs: WarcFiles, names: Iterable[str]) -> list[tuple[str, str]]:
    """(name, location) of each named file; a file still being written is refused."""
    out = []
    for name in sorted({Path(n).name for n in names}):
        try:
            loc = warcs.location(name)
        except StorageError as e:
            raise ExportError(f"WARC {name} named by the index cannot be found: {e}") from None
        path = local_path(loc)
        if path is not None and not path.exists():
            raise ExportError(f"{path}.open is still being written; stop the daemon or wait for it to close the file")
        out.append((name, loc))
    return out


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


def export_wacz(storage_root: Path, warcs: WarcFiles, index: Index, out: Path, sel: Selection, progress: Any = None) -> dict[str, Any]:
    """Write a WACZ of the selected article captures; returns counts. WARC files kept
    elsewhere (a scaled setup's store) are fetched one at a time next to `out`."""
    rows = select(index, sel)
    if not rows:
        raise ExportError("nothing to export: no archived article matches the selection")
    names = {r.warc_file for r in rows if r.warc_file} | requisite_files(index, warcs, rows)
    files = _locations(warcs, names)
    pages = [{"format": "json-pages-1.0", "id": "pages", "title": "archiver export", "hasText": True}]
    for r in rows:
        pages.append({"id": hashlib.sha256((r.warc_record_id or "").encode()).hexdigest()[:32],
                      "url": r.final_url or r.url, "ts": _ts(r.fetched_at), "title": r.title or "",
                      "text": _article_text(storage_root, warcs, r)})
    resources: list[dict[str, Any]] = []
    lines: list[str] = []
    tmp = out.with_name(out.name + ".tmp")
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        with zipfile.ZipFile(tmp, "w", allowZip64=True) as z:
            for name, loc in files:
                arc = f"archive/{name}"
                with local_copy(loc, warcs.settings, scratch=out.parent) as path:
                    # WARC members are gzip already; stored, so replay tools can seek into them
                    z.write(path, arc, compress_type=zipfile.ZIP_STORED)
                    resources.append(_file_resource(arc, path, name))
                    lines += _cdxj_of(path, name)
                if progress:
                    progress(1)
            cdxj = "".join(line + "\n" for line in sorted(lines)).encode("utf-8")
            z.writestr("indexes/index.cdxj", cdxj, compress_type=zipfile.ZIP_DEFLATED)
            resources.append(_resource("indexes/index.cdxj", cdxj))
            pj = "".join(json.dumps(p, ensure_ascii=False, sort_keys=True) + "\n" for p in pages).encode("utf-8")
            z.writestr("pages/pages.jsonl", pj, compress_type=zipfile.ZIP_DEFLATED)
            resources.append(_resource("pages/pages.jsonl", pj))
            now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
            package = {
                "profile": "data-package", "wacz_version": WACZ_VERSION, "created": now, "modified": now,
                "title": "archiver export", "software": f"archiver {__version__}",
                "mainPageURL": pages[1]["url"], "mainPageDate": pages[1]["ts"],
                "selection": sel.as_dict(), "resources": resources,
            }
            pkg = json.dumps(package, indent=2, sort_keys=True).encode("utf-8")
            z.writestr("datapackage.json", pkg, compress_type=zipfile.ZIP_DEFLATED)
            digest = {"path": "datapackage.json", "hash": "sha256:" + hashlib.sha256(pkg).hexdigest()}
            z.writestr("datapackage-digest.json", json.dumps(digest, indent=2).encode("utf-8"),
                       compress_type=zipfile.ZIP_DEFLATED)
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return {"pages": len(pages) - 1, "warcs": len(files), "cdxj_lines": cdxj.count(b"\n")}


def requisite_files(index: Index, warcs: WarcFiles, rows: list[CaptureRow]) -> set[str]:
    """WARC files holding the requisites the selected pages need to render: for each page, the
    captures replay would show beside it (the nearest in time to the page of every URL its
    HTML names, and of what its stylesheets name)."""
    names: set[str] = set()
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
            if near is None or not near.warc_file:
                continue
            names.add(near.warc_file)
            if req.kind == "stylesheet" and near.warc_offset is not None:
                try:
                    with warcs.open_record(near.warc_file, near.warc_offset, near.warc_length) as f:
                        _, css = read_payload(f, MAX_PAGE_BYTES)
                except (ArchiverError, OSError, ValueError, StopIteration):
                    continue
                more = [q for q in from_css(decode_text(css, near.content_type).text, req.url) if q.url not in seen]
                seen.update(q.url for q in more)
                todo.extend(more)
    return names


def _article_text(storage_root: Path, warcs: WarcFiles, r: CaptureRow) -> str:
    """The crawl-time text file, or (a scaled setup keeps those in its workers' spools) the
    text derived again from the WARC record."""
    if r.text_path:
        try:
            return (storage_root / r.text_path).read_text(encoding="utf-8")
        except OSError:
            pass
    if r.warc_file and r.warc_offset is not None:
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
