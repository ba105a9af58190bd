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
from .dump import Selection, select
from .errors import ArchiverError
from .index import Index
from .warc import existing

WACZ_VERSION = "1.1.1"


class ExportError(ArchiverError):
    pass


def _warc_paths(storage_root: Path, names: Iterable[str]) -> list[Path]:
    out = []
    for name in sorted(set(names)):
        path = existing(storage_root / "warc" / Path(name).name)
        if not path.exists():
            raise ExportError(f"WARC {name} named by the index is not in {storage_root / 'warc'}")
        out.append(path)
    return out


def all_warcs(storage_root: Path) -> list[Path]:
    """Closed WARC files (a file still being written is left for the next export)."""
    return sorted((storage_root / "warc").glob("*.warc.gz"))


def cdxj_lines(warcs: list[Path]) -> list[str]:
    """Sorted CDXJ lines for the WARCs, by cdxj-indexer (the indexer pywb and py-wacz use)."""
    lines: list[str] = []
    for path in warcs:
        buf = io.StringIO()
        with open(path, "rb") as f:
            CDXJIndexer(buf, [f], filename=path.name).process_all()
        lines += [line for line in buf.getvalue().splitlines() if line.strip()]
    return sorted(lines)


def export_cdxj(storage_root: Path, out: Path) -> int:
    lines = cdxj_lines(all_warcs(storage_root))
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    tmp.replace(out)
    return len(lines)


def _ts(iso: str) -> str:
    return iso if iso.endswith("Z") else iso + "Z"


def export_wacz(storage_root: Path, index: Index, out: Path, sel: Selection, progress: Any = None) -> dict[str, Any]:
    """Write a WACZ of the selected article captures; returns counts."""
    rows = select(index, sel)
    if not rows:
        raise ExportError("nothing to export: no archived article matches the selection")
    warcs = _warc_paths(storage_root, (r.warc_file for r in rows if r.warc_file))
    for p in warcs:
        if p.name.endswith(".open"):
            raise ExportError(f"{p} is still being written; stop the daemon or wait for it to close the file")
    pages = [{"format": "json-pages-1.0", "id": "pages", "title": "archiver export", "hasText": True}]
    for r in rows:
        text = ""
        if r.text_path:
            try:
                text = (storage_root / r.text_path).read_text(encoding="utf-8")
            except OSError:
                text = ""
        pages.append({"id": hashlib.sha256((r.warc_record_id or "").encode()).hexdigest()[:32],
                      "url": r.final_url or r.url, "ts": _ts(r.fetched_at), "title": r.title or "",
                      "text": text})
    resources: list[dict[str, Any]] = []
    tmp = out.with_name(out.name + ".tmp")
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        with zipfile.ZipFile(tmp, "w", allowZip64=True) as z:
            for path in warcs:
                arc = f"archive/{path.name}"
                # WARC members are gzip already; stored, so replay tools can seek into them
                z.write(path, arc, compress_type=zipfile.ZIP_STORED)
                resources.append(_file_resource(arc, path))
                if progress:
                    progress(1)
            cdxj = "".join(line + "\n" for line in cdxj_lines(warcs)).encode("utf-8")
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
    return {"pages": len(pages) - 1, "warcs": len(warcs), "cdxj_lines": cdxj.count(b"\n")}


def _file_resource(arc: str, path: Path) -> dict[str, Any]:
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
            size += len(chunk)
    return {"name": path.name, "path": arc, "hash": "sha256:" + h.hexdigest(), "bytes": size}


def _resource(path: str, data: bytes) -> dict[str, Any]:
    return {"name": Path(path).name, "path": path, "hash": "sha256:" + hashlib.sha256(data).hexdigest(),
            "bytes": len(data)}
