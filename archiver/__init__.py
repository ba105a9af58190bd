"""archiver: scheduled scraping and archiving of news outlets into WARC, text and provenance."""

import sys as _sys

__version__ = "0.1.0"
SOFTWARE = f"archiver/{__version__}"

# httpx's __init__ imports its own command line (httpx._main) whenever click and rich are
# installed, as they are here, and with it pygments and rich's syntax highlighting: 1.3 MB in
# every process for a CLI archiver never runs. A None entry makes that import fail, and httpx
# then defines a stub `main` in its place, as it does when those packages are missing.
_sys.modules.setdefault("httpx._main", None)  # type: ignore[assignment]
