"""Commands that read what is archived: captures, dump, verify, extract, export, fsck,
migrate and serve (the browse UI)."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import click
from rich.table import Table

from ..config import load_config
from ..errors import ArchiverError, StorageError, os_reason
from ..index import Index, row_to_public
from .common import open_index, out_console, progress_bar, selection_options, setup_logging, warc_files


@click.command()
@click.option("--config", "-c", "config", required=True, type=click.Path(dir_okay=False))
@click.option("--format", "fmt", type=click.Choice(["jsonl", "table"]), default="table", show_default=True)
@click.option("--outlet", default=None, help="only captures of this outlet")
@click.option("--kind", default=None, help="article, feed, sitemap, page, search, robots, redirect")
@click.option("--state", default=None, help="archived, off_topic, failed, robots, blocked")
def captures(config: str, fmt: str, outlet: str | None, kind: str | None, state: str | None) -> int:
    """List captures from the provenance index."""
    cfg = load_config(config)
    index = open_index(cfg)
    with index:
        rows = index.captures(outlet=outlet, kind=kind, state=state)
        if fmt == "jsonl":
            for row in rows:
                sys.stdout.write(json.dumps(row_to_public(row), ensure_ascii=False, sort_keys=False) + "\n")
            return 0
        t = Table()
        for c in ("id", "outlet", "kind", "state", "status", "fetched_at", "topics", "url"):
            t.add_column(c, overflow="fold")
        for row in rows:
            t.add_row(str(row.id), row.outlet, row.kind, row.state, str(row.status or ""), row.fetched_at[:19],
                      ",".join(row.topics), row.final_url or row.url)
        out_console().print(t)
    return 0


@click.command("dump")
@click.option("--config", "-c", "config", required=True, type=click.Path(dir_okay=False))
@click.option("--out", required=True, type=click.Path(file_okay=False), help="folder for the text files and manifest")
@selection_options
@click.option("--url", "urls", multiple=True, help="only this URL (repeatable)")
@click.option("--kind", type=click.Choice(["page", "article"]), default="page", show_default=True)
@click.option("--latest", is_flag=True, help="only the newest capture of each URL")
@click.option("--workers", type=click.IntRange(0, 256), default=None,
              help="processes deriving texts [default: extract.workers of the config, else one per core]")
def dump_cmd(config: str, out: str, topics: tuple[str, ...], outlets: tuple[str, ...], since: str | None,
             until: str | None, urls: tuple[str, ...], kind: str, latest: bool, workers: int | None) -> int:
    """Write one text file per capture, re-derived from the WARCs, and DIR/manifest.json."""
    from ..dump import Selection, dump, select

    cfg = load_config(config)
    index = open_index(cfg)
    sel = Selection(topics, outlets, since, until, urls, kind, latest)
    with index:
        total = len(select(index, sel))
        bar = progress_bar(total, "dumping")
        with bar:
            manifest = dump(warc_files(cfg, index), index, Path(out), sel, lambda n: bar.advance(bar.task_ids[0], n),
                            workers if workers is not None else cfg.config.extract.workers)
    click.echo(f"wrote {len(manifest['files'])} {kind} text files and manifest.json to {out}")
    return 0


@click.command("verify")
@click.argument("dump_dir", type=click.Path(file_okay=False))
@click.option("--config", "-c", "config", default=None, type=click.Path(dir_okay=False),
              help="find the WARCs under this config's storage root")
@click.option("--warcs", "warcs", multiple=True, type=click.Path(), help="a folder holding the WARCs (repeatable)")
@click.option("--workers", type=click.IntRange(0, 256), default=None,
              help="processes re-deriving texts [default: one per core]")
def verify_cmd(dump_dir: str, config: str | None, warcs: tuple[str, ...], workers: int | None) -> int:
    """Re-derive every file of DUMP_DIR/manifest.json from its WARC and compare; exit 0 only if all match."""
    from ..dump import verify

    roots = [Path(w) for w in warcs]
    index = None
    if config:
        cfg = load_config(config)
        roots.append(cfg.storage_root)
        try:  # the index says where shipped files are; a dump of a copied archive needs none
            index = Index.open(cfg.storage_root, readonly=True, url=cfg.config.index.url)
        except ArchiverError:
            index = None
    if not roots:
        click.echo("archiver: give --config or --warcs to say where the WARCs are", err=True)
        return 2
    try:
        verdicts = verify(Path(dump_dir), roots, workers=workers,
                          warcs=warc_files(cfg, index) if index is not None else None)
    finally:
        if index is not None:
            index.close()
    for v in verdicts:
        click.echo(f"{v.status:<14} {v.file}{'  (' + v.detail + ')' if v.detail and v.status != 'ok' else ''}")
    bad = [v for v in verdicts if v.status != "ok"]
    counts = {s: sum(1 for v in verdicts if v.status == s)
              for s in ("ok", "DIFFERS", "MISSING", "WARC NOT FOUND", "REFUSED")}
    click.echo(", ".join(f"{n} {s}" for s, n in counts.items()) + f" of {len(verdicts)} files")
    return 1 if bad else 0


@click.command("extract")
@click.option("--kind", type=click.Choice(["article", "page"]), default="article", show_default=True)
@click.option("--out", required=True, type=click.Path(file_okay=False))
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False, exists=True))
def extract_cmd(kind: str, out: str, files: tuple[str, ...]) -> int:
    """Run the extractor (article) or page renderer on local HTML files (plain or .html.gz)."""
    from ..dump import file_to_text, stem

    dest = Path(out)
    dest.mkdir(parents=True, exist_ok=True)
    failed = 0
    for name in files:
        path = Path(name)
        try:
            text = file_to_text(path, kind)
        except (OSError, EOFError, ValueError) as e:
            click.echo(f"{path}: {e}", err=True)
            failed += 1
            continue
        (dest / f"{stem(path)}.txt").write_text(text, encoding="utf-8")
    click.echo(f"wrote {len(files) - failed} {kind} texts to {dest}" + (f"; {failed} failed" if failed else ""))
    return 1 if failed else 0


@click.group("export")
def export_group() -> None:
    """Export for standard web-archive tools (WACZ for ReplayWeb.page, CDXJ for pywb)."""


@export_group.command("wacz")
@click.option("--config", "-c", "config", required=True, type=click.Path(dir_okay=False))
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="the .wacz file to write")
@selection_options
@click.option("--with-discovery", is_flag=True,
              help="also the feeds, sitemaps and listing pages the articles were found through "
                   "(they name other articles too)")
def export_wacz_cmd(config: str, out: str, topics: tuple[str, ...], outlets: tuple[str, ...],
                    since: str | None, until: str | None, with_discovery: bool) -> int:
    """Write a WACZ of exactly the selected articles: their WARC records with their requisites'
    (copied byte for byte into new WARC files), a CDXJ index, pages with text."""
    from ..dump import Selection
    from ..export import export_wacz

    cfg = load_config(config)
    index = open_index(cfg)
    with index:
        counts = export_wacz(cfg.storage_root, warc_files(cfg, index), index, Path(out),
                             Selection(topics, outlets, since, until, kind="article"), with_discovery=with_discovery)
    click.echo(f"wrote {out}: {counts['pages']} pages ({counts['captures']} captures with their requisites), "
               f"{counts['records']} WARC records in {counts['warcs']} files, {counts['cdxj_lines']} index lines")
    return 0


@export_group.command("cdxj")
@click.option("--config", "-c", "config", required=True, type=click.Path(dir_okay=False))
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="the .cdxj file to write")
def export_cdxj_cmd(config: str, out: str) -> int:
    """Write a sorted CDXJ index of every closed WARC, for pywb."""
    from ..export import export_cdxj

    cfg = load_config(config)
    index = open_index(cfg)
    try:
        with index:
            n = export_cdxj(warc_files(cfg, index), Path(out))
    except OSError as e:
        raise StorageError(f"{e.filename or out}: {os_reason(e)}") from e
    click.echo(f"wrote {n} index lines to {out}")
    return 0


@click.command("fsck")
@click.option("--config", "-c", "config", required=True, type=click.Path(dir_okay=False))
@click.option("--repair", is_flag=True, help="fix what is found (drop, index again, repair .open files)")
def fsck_cmd(config: str, repair: bool) -> int:
    """Check the index and the WARC files against each other; exit 0 when they agree."""
    from ..fsck import fsck

    cfg = load_config(config)
    with Index.open(cfg.storage_root, readonly=not repair, url=cfg.config.index.url) as index:
        report = fsck(cfg.storage_root, index, repair, warc_files(cfg, index))
    for name in report.open_files:
        click.echo(f"OPEN FILE          {name} (not closed: --repair cuts it after its last whole record and closes it)")
    for row in report.rows_in_open_files:
        click.echo(f"IN OPEN FILE       row {row.id} {row.url} -> {row.warc_file}@{row.warc_offset} "
                   "(the record is whole; --repair closes the file)")
    for row in report.rows_without_record:
        click.echo(f"ROW WITHOUT RECORD row {row.id} {row.url} -> {row.warc_file}@{row.warc_offset}")
    for rec in report.records_without_row:
        click.echo(f"RECORD WITHOUT ROW {rec.warc_file}@{rec.offset} {rec.rtype} {rec.uri}")
    for line in report.repaired:
        click.echo(f"repaired: {line}")
    inside = f" ({len(report.rows_in_open_files)} rows point into them)" if report.rows_in_open_files else ""
    click.echo(f"{report.rows_checked} rows and {report.records_checked} response/revisit records checked: "
               f"{len(report.open_files)} open files{inside}, {len(report.rows_without_record)} rows without record, "
               f"{len(report.records_without_row)} records without row")
    return 0 if report.clean or repair else 1


@click.command("migrate")
@click.option("--config", "-c", "config", required=True, type=click.Path(dir_okay=False))
def migrate_cmd(config: str) -> int:
    """Bring the index's schema up to this version (any writer does it too; this says what it did)."""
    from ..index import current_revision, display_url, index_url
    from ..schema import HEAD

    cfg = load_config(config)
    where = display_url(index_url(cfg.storage_root, cfg.config.index.url))
    try:
        with Index.open(cfg.storage_root, readonly=True, url=cfg.config.index.url) as index:
            before = current_revision(index)
    except ArchiverError:
        before = None  # nothing there yet: the open below creates it
    with Index.open(cfg.storage_root, url=cfg.config.index.url) as index:
        after = current_revision(index)
    if before == after:
        click.echo(f"index {where}: schema {after}, up to date")
    else:
        click.echo(f"index {where}: schema {before or '(none)'} -> {after} (newest: {HEAD})")
    return 0


@click.command("serve")
@click.option("--config", "-c", "config", required=True, type=click.Path(dir_okay=False))
@click.option("--host", default="127.0.0.1", show_default=True,
              help="address to listen on (the UI has no login: keep it on loopback unless a proxy guards it)")
@click.option("--port", default=8770, show_default=True, type=int)
@click.option("--replay-port", type=int, default=None,
              help="port of the replay origin, where archived pages are served  [default: --port + 2, beside the daemon's 8771]")
@click.option("--allowed-host", "allowed_hosts", multiple=True, metavar="NAME",
              help="another name the UI may be reached by (repeatable); loopback names and --host are always allowed")
@click.option("-v", "--verbose", count=True)
def serve_cmd(config: str, host: str, port: int, replay_port: int | None, allowed_hosts: tuple[str, ...],
              verbose: int) -> int:
    """Browse the archive offline: search, captures, diffs and replay, read-only."""
    from ..web.app import serve
    from ..warcfiles import store_settings

    cfg = load_config(config)
    setup_logging(verbose, base=logging.WARNING)
    serve(cfg.storage_root, host, port, index_url=cfg.config.index.url, log_level="info" if verbose else "warning",
          store=store_settings(cfg.config.storage), replay_port=replay_port, allowed_hosts=allowed_hosts,
          topics=tuple(t.name for t in cfg.config.topics))
    return 0
