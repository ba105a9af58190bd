"""Article extraction quality on a labelled set of pages, per rule.

    python bench/extract_quality.py [--data DIR] [--ablate] [--halves]

DIR holds `<id>.html.gz` (or `.html`) pages and `ground-truth.json` (default: the
scrapinghub-derived set in ../shared/bench/extraction/dev); pages are scored with that set's
`score.py` (token precision/recall/F1 per page, means over pages) on exactly what
`archiver extract --kind article` writes (title line, blank line, body).

--ablate runs the set once more with each rule of archiver/article.py's RULES switched off
and prints the table: a rule earns its place when F1 drops without it.
--halves splits the pages by URL host into two halves (a stable hash of the host), so a rule
developed on one half can be confirmed on the other; the table then has a column for each.
Also printed: pages whose body came from the second extractor, and CPU ms per page of the
extraction alone (the whole command adds reading, gunzip and writing: time that with
/usr/bin/time against a one-file run).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import importlib.util
import json
import logging
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from archiver import article  # noqa: E402
from archiver.extract import extract, page_markup  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "bench" / "extraction" / "dev"


def load_scorer(path: Path):
    spec = importlib.util.spec_from_file_location("extraction_score", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_pages(data: Path) -> tuple[dict, list[tuple[str, str, str]]]:
    truth = json.loads((data / "ground-truth.json").read_text("utf-8"))
    pages = []
    for pid in sorted(truth):
        gz, plain = data / f"{pid}.html.gz", data / f"{pid}.html"
        raw = gzip.decompress(gz.read_bytes()) if gz.exists() else plain.read_bytes()
        pages.append((pid, truth[pid].get("url") or "", page_markup(raw, None)))
    return truth, pages


def half(url: str) -> str:
    host = (urlsplit(url).hostname or "").removeprefix("www.")
    return "A" if hashlib.sha256(host.encode()).digest()[0] % 2 == 0 else "B"


class _Doubts(logging.Handler):
    """Counts the pages on which extract.py asked for a second opinion (its debug line)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += record.getMessage().startswith("doubtful choice")


def run(pages, off: frozenset[str]) -> tuple[dict[str, str], dict[str, str], float, int]:
    article.switches.active = frozenset(article.RULES) - off
    doubts = _Doubts()
    logger = logging.getLogger("archiver.extract")
    logger.addHandler(doubts)
    logger.setLevel(logging.DEBUG)
    texts, extractors = {}, {}
    cpu = time.process_time()
    for pid, _, markup in pages:
        ex = extract(markup, page=False)
        texts[pid], extractors[pid] = ex.article_text, ex.extractor
    cpu = time.process_time() - cpu
    logger.removeHandler(doubts)
    article.switches.active = frozenset(article.RULES)
    return texts, extractors, 1000 * cpu / max(1, len(pages)), doubts.count


def scores(scorer, truth, texts, ids) -> tuple[float, float, float, int]:
    rows = []
    for pid in ids:
        tp, fp, fn = scorer.page_counts(truth[pid].get("articleBody") or "", texts[pid], 1, True)
        rows.append((tp, fp, fn) + scorer.prf(tp, fp, fn))
    res = scorer.summarise(rows, "tokens")
    empty = sum(1 for pid in ids if not texts[pid].strip())
    return res["f1"], res["precision"], res["recall"], empty


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--scorer", type=Path, help="score.py to use (default: DATA/../score.py)")
    ap.add_argument("--ablate", action="store_true")
    ap.add_argument("--halves", action="store_true")
    args = ap.parse_args()
    scorer = load_scorer(args.scorer or args.data.parent / "score.py")
    truth, pages = load_pages(args.data)
    groups = {"all": [pid for pid, _, _ in pages]}
    if args.halves:
        for name in ("A", "B"):
            groups[name] = [pid for pid, url, _ in pages if half(url) == name]

    base, extractors, cpu, asked = run(pages, frozenset())
    print(f"{len(pages)} pages; extraction {cpu:.1f} CPU ms/page; second opinion asked on {asked} pages, "
          f"its body taken on "
          f"{sum(1 for e in extractors.values() if e != 'readability-lxml')} pages: "
          + ", ".join(pid[:8] for pid, e in extractors.items() if e != "readability-lxml"))
    header = "| rule off | " + " | ".join(f"F1 {g} (n={len(ids)})" for g, ids in groups.items()) + " | P | R | empty |"
    print(header)
    print("|" + "---|" * (header.count("|") - 1))

    def row(label: str, texts: dict[str, str]) -> None:
        cells = []
        for g, ids in groups.items():
            f1, p, r, empty = scores(scorer, truth, texts, ids)
            ref = scores(scorer, truth, base, ids)[0]
            cells.append(f"{f1:.4f}" + ("" if texts is base else f" ({f1 - ref:+.4f})"))
            if g == "all":
                tail = f"{p:.4f} | {r:.4f} | {empty}"
        print(f"| {label} | " + " | ".join(cells) + f" | {tail} |")

    row("(none: all rules on)", base)
    if args.ablate:
        for rule in article.RULES:
            texts, _, _, _ = run(pages, frozenset({rule}))
            row(rule, texts)
        texts, _, _, _ = run(pages, frozenset(article.RULES))
        row("all new rules", texts)


if __name__ == "__main__":
    main()
