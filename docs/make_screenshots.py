#!/usr/bin/env python3
"""Regenerate the browse UI screenshots in docs/ from a sample archive, offline.

    .venv/bin/python docs/make_screenshots.py [--chromium /usr/bin/chromium]

Archives the bundled sample outlet (127.0.0.1) twice with a correction in between, starts
`archiver serve` on it (UI and replay origin on two free loopback ports) and photographs
home, search results, a capture page with its diff, and the replay view (the UI's frame page
with the archived page from the replay origin inside it) with Debian's chromium driven by
playwright. A last one, replay-styled.png, shows an article as capture mode `requisites`
(the default) archived it: with the outlet's stylesheet, its masthead image and the photo,
all replayed from the archive; the script fails rather than photograph it unstyled.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from playwright.sync_api import sync_playwright

from archiver.demo.site import ARTICLES, SampleSite, archive_with_revision
from archiver.index import Index

HERE = Path(__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def styled_replay(page, base: str, storage: Path, replay_port: int) -> None:
    """The Hanoi article in the replay frame, looking as it did on the outlet."""
    with Index.open(storage, readonly=True) as idx:
        cid = next(r.id for r in idx.captures(kind="article", state="archived")
                   if (r.final_url or "").endswith(ARTICLES[0].path))
    page.goto(f"{base}/replay/{cid}")
    frame = page.wait_for_selector("iframe.replay").content_frame()
    frame.wait_for_selector("figure img")
    frame.wait_for_function("() => [...document.images].every(i => i.complete)")
    masthead = frame.eval_on_selector("header", "e => getComputedStyle(e).backgroundColor")
    photo = frame.eval_on_selector("figure img", "e => e.naturalWidth")
    if masthead != "rgb(18, 53, 91)" or not photo:
        raise RuntimeError(f"the replayed article is not styled (masthead {masthead}, photo {photo} px wide): "
                           "were its requisites archived?")
    outside = [f.url for f in page.frames if f != page.main_frame and
               not f.url.startswith(f"http://127.0.0.1:{replay_port}/")]
    if outside:
        raise RuntimeError(f"a frame is not from the replay origin: {outside}")
    page.screenshot(path=str(HERE / "replay-styled.png"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    a = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="archiver-shots-"))
    with SampleSite(crawl_delay=0.05, etags=False) as site:
        config = archive_with_revision(site, root)
    port = free_port()
    replay_port = free_port()
    while replay_port == port:
        replay_port = free_port()
    exe = Path(sys.executable).with_name("archiver")
    # the replay origin gets a free port of its own: --port + 1 may be taken
    proc = subprocess.Popen([str(exe), "serve", "--config", str(config), "--port", str(port),
                             "--replay-port", str(replay_port)])
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(f"{base}/healthz", timeout=2)
                break
            except OSError:
                time.sleep(0.1)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=a.chromium, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1280, "height": 860})
            page.goto(f"{base}/")
            page.screenshot(path=str(HERE / "browse-home.png"), full_page=True)
            page.goto(f"{base}/search?q=Blinken+Vietnam")
            page.screenshot(path=str(HERE / "browse-search.png"))
            page.goto(f"{base}/search?q=Manila")
            page.click("li.hit a.title >> nth=0")
            page.click("#versions button >> nth=0")
            page.wait_for_selector("#diff")
            page.screenshot(path=str(HERE / "browse-capture.png"), full_page=True)
            page.click("#view-archived")
            page.wait_for_selector("iframe.replay")
            page.frame_locator("iframe.replay").locator("h1").wait_for()
            framed = [f.url for f in page.frames if f != page.main_frame]
            if not framed or not framed[0].startswith(f"http://127.0.0.1:{replay_port}/"):
                raise RuntimeError(f"the replay frame is not from the replay origin: {framed}")
            page.screenshot(path=str(HERE / "browse-replay.png"))
            styled_replay(page, base, root / "storage", replay_port)
            browser.close()
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(root, ignore_errors=True)
    print(f"screenshots written to {HERE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
