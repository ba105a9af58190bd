"""`archiver demo`: a whole pass over the bundled sample outlet, with no internet needed."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import click

from ..config import load_config
from .site import SampleSite


def run_demo(storage: Path | None, serve_seconds: float = 0) -> int:
    from ..commands.passes import crawl_and_report

    root = (storage or Path(tempfile.mkdtemp(prefix="archiver-demo-"))).resolve()
    root.mkdir(parents=True, exist_ok=True)
    with SampleSite() as site:
        config_path = root / "demo-config.yaml"
        config_path.write_text(site.config_yaml(str(root)), encoding="utf-8")
        click.echo(f"sample outlet 'harbor-times' serving on {site.base_url}")
        click.echo(f"config: {config_path}")
        code = crawl_and_report(load_config(config_path))
        click.echo("")
        click.echo("where everything is:")
        click.echo(f"  WARC files      {root / 'warc'}")
        click.echo(f"  extracted text  {root / 'text'}")
        click.echo(f"  provenance      {root / 'index.sqlite3'}")
        click.echo(f"  list captures   archiver captures --config {config_path} --format table")
        if serve_seconds > 0:
            click.echo(f"sample outlet stays up for {serve_seconds:g}s at {site.base_url}")
            time.sleep(serve_seconds)
    return code
