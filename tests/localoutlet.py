"""A config for one outlet served from a local test server: the settings every crawl of a
test outlet shares (loopback allowed, no per-host delay, extraction in threads)."""

from __future__ import annotations

from pathlib import Path


def outlet_config(path: Path, root: Path, feeds: list[str], *, delay: float = 0, fetch: str = "", outlet: str = "",
                  topics: str = "[{name: vietnam, any: [Vietnam]}]", extra: str = "") -> Path:
    """Write the config to `path` and return it; `fetch` and `outlet` add keys to those
    mappings (", timeout: 2"), `extra` adds top-level sections."""
    feed_list = ", ".join(f'"{u}"' for u in feeds)
    path.write_text(f"""\
storage: {{root: {root}}}
fetch: {{allow_private_networks: true, per_host_delay: {delay}{fetch}}}
extract: {{workers: 0}}
{extra}topics: {topics}
outlets: [{{name: x, feeds: [{feed_list}]{outlet}}}]
""")
    return path
