"""Text dumps re-derived from the WARCs, with a manifest, and their verification.

A dump file is never copied from the text files written at crawl time: it is rendered again
from the response record the manifest names, so `verify` can repeat exactly what `dump` did
and compare. Output depends only on the WARC bytes and the software version: files are
written in a fixed order with fixed names, JSON with sorted keys, no clock, locale or
environment involved.

A page rendered in the browser (capture modes browser and auto) has its texts extracted from
its rendered DOM, the `urn:dom:` resource record linked to its response: dump derives from
that record, the manifest names it (`dom`), and verify checks that it is the DOM of that
response before deriving again.

File names are `NNN_<16 hex>.txt`: NNN is the position in the order (capture time, then
record id; at least three digits), the hex the first 16 digits of the SHA-256 of the
response record's WARC-Record-ID (the same key as the crawl-time text files).
"""

from __future__ import annotations

import glob
import gzip
import hashlib
import json
import stat
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any, Iterable, Iterator

from warcio.archiveiterator import ArchiveIterator

from . import SOFTWARE, __version__, stores
from .capture import DOM_URN, text_key
from .errors import DumpError, StorageError
from .extract import EXTRACTOR_NAME, EXTRACTOR_VERSION, extract, page_markup
from .index import ARCHIVED, CaptureRow, Index
from .pagetext import RENDERER_NAME, RENDERER_VERSION, render_html
from .stores import StoreSettings, local_path
from .warc import existing
from .warcfiles import WarcFiles
from .procpool import ExtractorPool

MANIFEST = "manifest.json"
MAX_BODY = 50_000_000
KINDS = ("page", "article")


def producer(kind: str) -> dict[str, Any]:
    """What turns a response into text for `kind`, recorded in the manifest and checked by verify."""
    if kind == "page":
        return {"name": RENDERER_NAME, "version": RENDERER_VERSION, "options": {}}
    return {"name": EXTRACTOR_NAME, "version": EXTRACTOR_VERSION,
            "options": {"renderer": f"{RENDERER_NAME}/{RENDERER_VERSION}", "layout": "title, blank line, body"}}


def html_to_text(markup: str, kind: str) -> str:
    if kind == "page":
        return render_html(markup)
    return extract(markup, page=False).article_text


def derive(location: str, offset: int, length: int | None, kind: str, settings: StoreSettings,
           dom_of: str | None = None) -> str:
    """Re-derive the text of the response record at `offset` of the WARC at `location`; with
    `dom_of` (a response record id), of the rendered DOM of that response there."""
    with stores.open_record(location, offset, length, settings) as f:
        rec = next(iter(ArchiveIterator(f)))
        if dom_of is None:
            if rec.rec_type != "response":
                raise DumpError(f"{location}@{offset} is a {rec.rec_type} record, not a response")
            content_type = rec.http_headers.get_header("Content-Type") if rec.http_headers else None
        else:
            uri = rec.rec_headers.get_header("WARC-Target-URI") or ""
            linked = rec.rec_headers.get_header("WARC-Concurrent-To")
            if rec.rec_type != "resource" or not uri.startswith(DOM_URN) or linked != dom_of:
                raise DumpError(f"{location}@{offset} is not the {DOM_URN} record of {dom_of} (a {rec.rec_type} "
                                f"record of {uri or 'no URI'}, linked to {linked or 'nothing'})")
            content_type = rec.rec_headers.get_header("Content-Type")
        body = rec.content_stream().read(MAX_BODY)
    return html_to_text(page_markup(body, content_type), kind)


def file_to_text(path: Path, kind: str) -> str:
    """Text of a local HTML file (plain or .gz), as `archiver extract` writes it."""
    data = path.read_bytes()
    if path.name.endswith(".gz"):
        data = gzip.decompress(data)
    return html_to_text(page_markup(data, None), kind)


def stem(path: Path) -> str:
    name = path.name
    for suffix in (".gz", ".html", ".htm"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    return name


@dataclass(frozen=True)
class Selection:
    topics: tuple[str, ...] = ()
    outlets: tuple[str, ...] = ()
    since: str | None = None
    until: str | None = None
    urls: tuple[str, ...] = ()
    kind: str = "page"
    latest: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {"topics": list(self.topics), "outlets": list(self.outlets), "since": self.since,
                "until": self.until, "urls": list(self.urls), "kind": self.kind, "latest": self.latest}


def select(index: Index, sel: Selection) -> list[CaptureRow]:
    rows = [r for r in index.captures(kind="article", state=ARCHIVED) if r.warc_file and r.warc_record_id]
    if sel.topics:
        rows = [r for r in rows if set(r.topics) & set(sel.topics)]
    if sel.outlets:
        rows = [r for r in rows if r.outlet in sel.outlets]
    if sel.since:
        rows = [r for r in rows if r.fetched_at >= sel.since]
    if sel.until:
        # a bare date means the whole day
        until = sel.until + "T23:59:59.999999Z" if len(sel.until) == 10 else sel.until
        rows = [r for r in rows if r.fetched_at <= until]
    if sel.urls:
        rows = [r for r in rows if r.url in sel.urls or r.final_url in sel.urls]
    rows.sort(key=lambda r: (r.fetched_at, r.warc_record_id or ""))
    if sel.latest:
        newest: dict[str, CaptureRow] = {}
        for r in rows:
            newest[r.final_url or r.url] = r
        keep = {id(r) for r in newest.values()}
        rows = [r for r in rows if id(r) in keep]
    return rows


def _write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def dump(warcs: WarcFiles, index: Index, out: Path, sel: Selection,
         progress: Any = None, workers: int | None = None) -> dict[str, Any]:
    """Write the selected captures' texts and manifest.json into `out`; returns the manifest.
    Texts are derived in `workers` processes (default one per core), written here in order."""
    if sel.kind not in KINDS:
        raise DumpError(f"unknown dump kind {sel.kind!r} (page or article)")
    rows = select(index, sel)
    doms = rendered_doms(index)
    out.mkdir(parents=True, exist_ok=True)
    width = max(3, len(str(max(0, len(rows) - 1))))
    files = []

    def job(row: CaptureRow) -> tuple[str, int, int | None, str, StoreSettings, str | None]:
        dom = doms.get(row.warc_record_id or "")
        if dom is not None:
            return (warcs.location(dom.warc_file or ""), dom.warc_offset or 0, dom.warc_length, sel.kind,
                    warcs.settings, row.warc_record_id)
        return (warcs.location(row.warc_file or ""), row.warc_offset or 0, row.warc_length, sel.kind,
                warcs.settings, None)

    with ExtractorPool(workers) as pool:
        for n, (row, text) in enumerate(zip(rows, pool.map(derive, (job(r) for r in rows)))):
            files.append(_write_one(out, n, width, row, text, sel.kind, doms.get(row.warc_record_id or "")))
            if progress is not None:
                progress(1)
    manifest = {"format": "archiver-dump/1", "software": SOFTWARE, "version": __version__,
                "selection": sel.as_dict(),
                "order": "capture time (fetched_at, UTC), then WARC-Record-ID",
                "files": files}
    _write_bytes(out / MANIFEST, (json.dumps(manifest, indent=1, sort_keys=True, ensure_ascii=False) + "\n")
                 .encode("utf-8"))
    return manifest


def rendered_doms(index: Index) -> dict[str, CaptureRow]:
    """Response record id -> the row of the DOM the browser rendered from it."""
    return {r.discovered_via_record_id: r for r in index.captures(kind="dom", state=ARCHIVED)
            if r.discovered_via_record_id and r.warc_file and r.warc_offset is not None}


def _write_one(out: Path, n: int, width: int, row: CaptureRow, text: str, kind: str,
               dom: CaptureRow | None) -> dict[str, Any]:
    assert row.warc_file and row.warc_record_id and row.warc_offset is not None
    data = text.encode("utf-8")
    name = f"{n:0{width}d}_{text_key(row.warc_record_id)}.txt"
    _write_bytes(out / name, data)
    entry = _entry(row, name, data, kind)
    if dom is not None:
        entry["dom"] = {"uri": dom.final_url, "warc_file": dom.warc_file, "warc_offset": dom.warc_offset,
                        "warc_length": dom.warc_length, "warc_record_id": dom.warc_record_id}
    return entry


def _entry(row: CaptureRow, name: str, data: bytes, kind: str) -> dict[str, Any]:
    return {
        "file": name, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data),
        "url": row.url, "final_url": row.final_url, "fetched_at": row.fetched_at, "outlet": row.outlet,
        "title": row.title, "topics": row.topics, "matched": row.matched,
        "warc_file": row.warc_file, "warc_offset": row.warc_offset, "warc_length": row.warc_length,
        "warc_record_id": row.warc_record_id, "payload_digest": row.payload_digest, "kind": kind, "producer": producer(kind)}


@dataclass
class Verdict:
    file: str
    status: str  # ok | DIFFERS | MISSING | WARC NOT FOUND | REFUSED
    detail: str = ""


@dataclass(frozen=True)
class Located:
    """Where the WARC a manifest entry names was found (None: nowhere), or why it is not read."""

    location: str | None
    refused: str = ""


def _find_warc(name: str, roots: Iterable[Path]) -> Path | None:
    base = Path(name).name
    for root in roots:
        for candidate in (root / name, root / base, root / "warc" / base):
            if existing(candidate).exists():
                return candidate
        if root.is_dir():
            for hit in sorted(root.rglob(glob.escape(base))):
                return hit
    return None


def _refusal(path: Path, folders: list[Path]) -> str:
    """Why the file at `path` is not read ("" when it may be): it must be a regular file, and
    it and whatever its symlinks lead to must lie in one of `folders` (resolved)."""
    real = path.resolve()
    if not any(real.is_relative_to(f) for f in folders):
        return f"{path} leads to {real}, outside {', '.join(str(f) for f in folders)}"
    try:
        mode = real.stat().st_mode
    except OSError as e:
        return f"{path}: {e.strerror or e}"
    if not stat.S_ISREG(mode):
        return f"{path} is not a regular file"
    return ""


def _locate(name: str, roots: list[Path], warcs: WarcFiles | None) -> Located:
    """The WARC a manifest names, looked for in the given folders (`roots` and their warc/),
    then where the index says it is. A manifest is only a file someone handed over: nothing it
    names outside those places is opened, not even to read its first line."""
    folders = [r.resolve() for r in roots] + [(r / "warc").resolve() for r in roots]
    if warcs is not None:
        folders += [f.resolve() for f in warcs.folders]
    folders = list(dict.fromkeys(folders))
    pure = PurePath(name)
    if pure.is_absolute() or ".." in pure.parts:
        kind = "an absolute path" if pure.is_absolute() else "a path with '..'"
        return Located(None, f"warc_file {name!r} is {kind}; WARCs are read only from "
                             f"{', '.join(str(f) for f in folders)}")
    found = _find_warc(name, roots)
    if found is not None:
        path = existing(found)
        why = _refusal(path, folders)
        return Located(None, why) if why else Located(path.resolve().as_uri())
    if warcs is None:
        return Located(None)
    try:
        loc = warcs.location(name)
    except StorageError:
        return Located(None)
    path = local_path(loc)
    if path is None:
        return Located(loc)  # a shared store the index records
    path = existing(path)
    if not any(path.absolute().is_relative_to(f.absolute()) for f in warcs.folders):
        folders.append(path.parent.resolve())  # where the index says this file is
    why = _refusal(path, folders)
    return Located(None, why) if why else Located(loc)


# where warcio's messages quote the line they could not parse: for a file that is not a WARC
# (or a record that is not HTTP) that line is the file's content
_QUOTES = (", first line:", " - Found:")


def _reason(e: Exception) -> str:
    """An error reading a WARC, without the bytes read."""
    text = str(e) or type(e).__name__
    for quote in _QUOTES:
        text = text.split(quote)[0]
    return text


def verify(out: Path, warc_roots: list[Path], progress: Any = None, workers: int | None = None,
           warcs: WarcFiles | None = None) -> list[Verdict]:
    """Re-derive every file of out/manifest.json and compare, in `workers` processes. WARCs
    are looked for in `warc_roots`, then where the index of `warcs` says they are."""
    try:
        if not stat.S_ISREG((out / MANIFEST).stat().st_mode):
            raise DumpError(f"{out / MANIFEST} is not a regular file")
        manifest = json.loads((out / MANIFEST).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DumpError(f"no {MANIFEST} in {out}: not a dump folder") from None
    except ValueError as e:
        raise DumpError(f"{out / MANIFEST} is not valid JSON: {e}") from None
    settings = warcs.settings if warcs is not None else StoreSettings()
    found: dict[str, Located] = {}

    def located(name: str) -> Located:
        if name not in found:
            found[name] = _locate(name, warc_roots, warcs)
        return found[name]

    def jobs() -> Iterator[tuple[Path, dict[str, Any], Located, StoreSettings, Located | None]]:
        for entry in manifest.get("files", []):
            dom = entry.get("dom")
            dom_at = located(str(dom.get("warc_file", ""))) if isinstance(dom, dict) else None
            yield out, entry, located(str(entry.get("warc_file", ""))), settings, dom_at

    verdicts = []
    with ExtractorPool(workers) as pool:
        for v in pool.map(_verify_one, jobs()):
            verdicts.append(v)
            if progress is not None:
                progress(1)
    return verdicts


def _verify_one(out: Path, entry: dict[str, Any], located: Located, settings: StoreSettings,
                dom_at: Located | None = None) -> Verdict:
    name = entry["file"]
    if Path(name).name != name or name in ("", ".", ".."):
        return Verdict(name, "DIFFERS", "file name in the manifest is not a plain name")
    path = out / name
    if not path.exists():
        return Verdict(name, "MISSING", "file not in the dump folder")
    why = _refusal(path, [out.resolve()])
    if why:
        return Verdict(name, "REFUSED", why)
    if located.refused:
        return Verdict(name, "REFUSED", located.refused)
    location = located.location
    if location is None:
        return Verdict(name, "WARC NOT FOUND", entry["warc_file"])
    kind = entry.get("kind", "page")
    now = producer(kind)
    then = entry.get("producer", {})
    # a rendered page's text comes from its DOM record, which must belong to its response
    offset, length, dom_of = int(entry["warc_offset"]), entry.get("warc_length"), None
    if dom_at is not None:
        if dom_at.refused:
            return Verdict(name, "REFUSED", dom_at.refused)
        if dom_at.location is None:
            return Verdict(name, "WARC NOT FOUND", str(entry["dom"].get("warc_file")))
        location, dom_of = dom_at.location, str(entry["warc_record_id"])
        offset, length = int(entry["dom"]["warc_offset"]), entry["dom"].get("warc_length")
    try:
        text = derive(location, offset, length, kind, settings, dom_of)
    except Exception as e:  # a damaged WARC is a finding, not a crash
        return Verdict(name, "DIFFERS", f"cannot re-derive from {location}: {_reason(e)}")
    derived = hashlib.sha256(text.encode("utf-8")).hexdigest()
    actual = hashlib.sha256(path.read_bytes()).hexdigest()
    if derived == entry["sha256"] == actual:
        return Verdict(name, "ok")
    reasons = []
    if actual != entry["sha256"]:
        reasons.append("the file was changed since it was dumped")
    if derived != entry["sha256"]:
        if (then.get("name"), then.get("version")) != (now["name"], now["version"]):
            reasons.append(f"made by {then.get('name')} {then.get('version')}, re-derived with "
                           f"{now['name']} {now['version']}")
        else:
            reasons.append("re-derived text differs from the manifest")
    return Verdict(name, "DIFFERS", "; ".join(reasons))
