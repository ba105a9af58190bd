"""Outlets from OPML and CSV files the config names (`outlets_from:`): nested outlines and CSV
rows become outlets a pass archives from, `outlet_defaults` fills in what a file leaves out,
and every problem in a file is FILE:LINE: column (or attribute), exit 2.

Real files in tmp_path, the CLI in this process, and a pass over the sample outlet on 127.0.0.1."""

from __future__ import annotations

import json
from pathlib import Path

from archiver.config import load_config

from .conftest import invoke

CONFIG = Path(__file__).resolve().parent.parent / "config"


def _config(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "archiver.yaml"
    path.write_text(f"""\
storage: {{root: {tmp_path / 'root'}}}
fetch: {{allow_private_networks: true, per_host_delay: 0}}
extract: {{workers: 0}}
discover: {{max_age_days: null}}
topics:
  - {{name: vietnam, any: [Vietnam]}}
  - {{name: South China Sea, any: [South China Sea]}}
{body}""", encoding="utf-8")
    return path


def _crawl(config: Path) -> dict[str, dict]:
    ran = invoke("crawl", "--config", str(config), "--format", "jsonl")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    return {row["outlet"]: row for row in map(json.loads, ran.stdout.splitlines())}


def _archived_by_outlet(config: Path) -> dict[str, set[str]]:
    ran = invoke("captures", "--config", str(config), "--format", "jsonl", "--kind", "article", "--state",
                 "archived")
    assert ran.returncode == 0, ran.stderr
    out: dict[str, set[str]] = {}
    for row in map(json.loads, ran.stdout.splitlines()):
        out.setdefault(row["outlet"], set()).add(row["url"])
    return out


def test_nested_opml_outlines_become_outlets_a_pass_archives_from(site, tmp_path: Path):
    b = site.base_url
    (tmp_path / "subscriptions.opml").write_text(f"""\
<?xml version="1.0" encoding="UTF-8"?>
<opml version="2.0">
  <head><title>exported</title></head>
  <body>
    <outline text="News">
      <outline text="Asia">
        <outline type="rss" text="Harbor Times: World &amp; Asia" xmlUrl="{b}/rss.xml"
                 htmlUrl="{b}/section/world/"/>
      </outline>
      <outline title="Harbor Times (Atom)" xmlURL="{b}/atom.xml" htmlUrl=""/>
    </outline>
    <outline text="A folder with nothing in it"/>
  </body>
</opml>
""", encoding="utf-8")
    config = _config(tmp_path, "outlets_from: [subscriptions.opml]\noutlet_defaults: {topics: [vietnam]}\n")

    checked = invoke("check-config", str(config))
    assert checked.returncode == 0, checked.stdout
    assert checked.stdout.splitlines() == [
        "ok", f"2 outlets: 0 in {config}, 2 from {tmp_path / 'subscriptions.opml'}"]

    summary = _crawl(config)
    # names made to fit outlet names; each outline's feed read
    assert set(summary) == {"Harbor Times World Asia", "Harbor Times Atom"}
    assert all(row["discovered"] > 0 for row in summary.values()), summary
    archived = _archived_by_outlet(config)
    assert archived and set(archived) <= set(summary)
    urls = {u for group in archived.values() for u in group}
    assert f"{b}/2025/06/12/vietnam-diplomacy-2025.html" in urls
    # outlet_defaults' topics: Vietnam stories only, not the South China Sea one
    assert f"{b}/2025/06/13/south-china-sea-asean.html" not in urls
    # htmlUrl is the outlet's home, read as a listing page
    assert any(h.path == "/section/world/" for h in site.hits)


def test_csv_rows_become_outlets_a_pass_archives_from(site, tmp_path: Path):
    b = site.base_url
    (tmp_path / "outlets.csv").write_text(
        "\ufeffName, Feeds ,pages,Topics,every,capture mode\n"
        "# the sample outlet, two ways\n"
        f"harbor-feeds,{b}/rss.xml | {b}/atom.xml,,vietnam|South China Sea,1h,\n"
        "\n"
        f'harbor-section,,"{b}/section/world/",,,html\n', encoding="utf-8")
    config = _config(tmp_path, "outlets_from: outlets.csv\noutlet_defaults: {schedule: {every: 2h}}\n"
                               "outlets:\n  - {name: own, feeds: [\"" + b + "/rss.xml\"], topics: [vietnam]}\n")

    checked = invoke("check-config", str(config))
    assert checked.stdout.splitlines() == ["ok", f"3 outlets: 1 in {config}, 2 from {tmp_path / 'outlets.csv'}"]
    outlets = {o.name: o for o in load_config(config).config.outlets}
    assert outlets["harbor-feeds"].feeds == [f"{b}/rss.xml", f"{b}/atom.xml"]
    assert outlets["harbor-feeds"].topics == ["vietnam", "South China Sea"]
    assert outlets["harbor-feeds"].schedule.every == 3600  # its own every
    assert outlets["harbor-section"].schedule.every == 7200  # outlet_defaults
    assert outlets["harbor-section"].capture_mode == "html"

    summary = _crawl(config)
    assert set(summary) == {"own", "harbor-feeds", "harbor-section"}
    assert summary["harbor-section"]["discovered"] > 0
    urls = {u for group in _archived_by_outlet(config).values() for u in group}
    assert {f"{b}/2025/06/12/vietnam-diplomacy-2025.html", f"{b}/2025/06/13/south-china-sea-asean.html"} <= urls


def test_problems_in_outlet_files_are_file_line_and_column(tmp_path: Path):
    (tmp_path / "feeds.opml").write_text("""\
<?xml version="1.0"?>
<opml version="1.0">
<body>
  <outline text="Desk">
    <outline text="Harbor" xmlUrl="https://a.example/feed"/>
    <outline text="Harbor!" xmlUrl="https://b.example/feed"/>
    <outline text="Bay" xmlUrl="https://c.example/feed" htmlUrl="mailto:desk@c.example"/>
    <outline text="Links" type="link" xmlUrl="https://d.example/"/>
  </outline>
</body>
</opml>
""", encoding="utf-8")
    (tmp_path / "rows.csv").write_text(
        "name,feeds,topics,every\n"
        "fine,https://e.example/feed,vietnam,1h\n"
        ",https://f.example/feed,,\n"
        "bad-url,ftp://g.example/feed,,\n"
        "bad-topic,https://h.example/feed,vietnum,\n"
        "shared,https://i.example/feed,,\n"
        "bad-every,https://j.example/feed,,soon\n", encoding="utf-8")
    (tmp_path / "typo.csv").write_text("name,feed\nx,https://k.example/\n", encoding="utf-8")
    config = _config(tmp_path, """\
outlets_from:
  - feeds.opml
  - rows.csv
  - typo.csv
  - gone.csv
outlets:
  - name: shared
    feeds: [https://l.example/feed]
""")
    opml, rows, typo, gone = (tmp_path / n for n in ("feeds.opml", "rows.csv", "typo.csv", "gone.csv"))
    ran = invoke("check-config", str(config))
    assert ran.returncode == 2
    assert ran.stdout.splitlines() == [
        f"{config}:12: outlets_from[3]: cannot read {gone}: No such file or directory (got 'gone.csv')",
        f"{opml}:6: text: gives the outlet name 'Harbor', as does {opml}:5; outlet names must be unique "
        "(got 'Harbor!')",
        f"{opml}:7: htmlUrl: not an http(s) URL: 'mailto:desk@c.example' (got 'mailto:desk@c.example')",
        f"{opml}:8: type: an outline with an xmlUrl is read as a feed when its type is rss or atom, or not given "
        "(got 'link')",
        f"{rows}:3: name: every row names its outlet",
        f"{rows}:4: feeds: not an http(s) URL: 'ftp://g.example/feed'",
        f"{rows}:5: topics: names no defined topic (did you mean 'vietnam'? defined: vietnam, South China Sea) "
        "(got 'vietnum')",
        f"{rows}:6: name: gives the outlet name 'shared', as does {config}:14 (outlets[shared]); outlet names must "
        "be unique (got 'shared')",
        f"{rows}:7: every: expected a duration such as 30, '45s', '30m' or '2h' (got 'soon')",
        f"{typo}:1: feed: unknown column (did you mean 'feeds'?)",
    ]
    # every command refuses it the same way, on stderr
    crawled = invoke("crawl", "--config", str(config))
    assert crawled.returncode == 2 and f"{typo}:1: feed: unknown column" in crawled.stderr


def test_xml_entities_in_an_opml_file_are_refused(tmp_path: Path):
    (tmp_path / "bomb.opml").write_text("""\
<?xml version="1.0"?>
<!DOCTYPE opml [
<!ENTITY lol "lollollollollollollollollollol">
<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
]>
<opml><body><outline text="&lol2;" xmlUrl="https://a.example/feed"/></body></opml>
""", encoding="utf-8")
    (tmp_path / "feed.xml").write_text('<rss version="2.0">\n<channel/></rss>\n', encoding="utf-8")
    config = _config(tmp_path, "outlets_from: [bomb.opml, feed.xml]\n")
    ran = invoke("check-config", str(config))
    assert ran.returncode == 2
    assert ran.stdout.splitlines() == [
        f"{tmp_path / 'bomb.opml'}:3: (xml): declares the entity 'lol': entities are not read (they are how XML "
        "bombs work)",
        f"{tmp_path / 'feed.xml'}:1: (xml): not an OPML document: its root element is <rss>, not <opml>",
    ]


def test_a_changed_outlet_file_changes_the_config_hash(tmp_path: Path):
    """The hash is in every warcinfo record and starts a new WARC: an edited file must count."""
    csv = tmp_path / "o.csv"
    csv.write_text("name,feeds\na,https://a.example/feed\n", encoding="utf-8")
    config = _config(tmp_path, "outlets_from: [o.csv]\n")
    before = load_config(config).sha256
    csv.write_text("name,feeds\na,https://a.example/other-feed\n", encoding="utf-8")
    assert load_config(config).sha256 != before


def test_the_example_outlet_files_load_beside_the_example_config(tmp_path: Path):
    text = (CONFIG / "example.yaml").read_text(encoding="utf-8")
    assert "outlets_from: []" in text
    files = [CONFIG / "outlets.example.opml", CONFIG / "outlets.example.csv"]
    text = text.replace("outlets_from: []", f"outlets_from: [{', '.join(map(str, files))}]")
    text = text.replace("root: ../storage", f"root: {tmp_path / 'storage'}")
    config = tmp_path / "example.yaml"
    config.write_text(text, encoding="utf-8")
    ran = invoke("check-config", str(config))
    assert ran.returncode == 0, ran.stdout
    assert ran.stdout.splitlines()[1] == f"11 outlets: 5 in {config}, 3 from {files[0]}, 3 from {files[1]}"
