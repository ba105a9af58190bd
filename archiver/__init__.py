"""archiver: scheduled scraping and archiving of news outlets into WARC, text and provenance."""

__version__ = "0.1.0"
SOFTWARE = f"archiver/{__version__}"
