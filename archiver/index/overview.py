"""What the browse UI and the feeds count and list: the home page's overview, publication dates, topics' articles."""

from __future__ import annotations

from typing import Any


from .records import (CaptureRow, Overview, _row)


class OverviewQueries:
    """Methods of Index (archiver/index/queries.py), which provides transaction(), reading(),
    _rows(), _scalar(), _one() and _all()."""

    def overview(self, latest: int = 15) -> Overview:
        """Archived articles by topic, outlet and day, and the newest `latest` of them."""
        art = "kind = 'article' AND state = 'archived'"
        each = ("jsonb_array_elements_text(captures.topics::jsonb)" if self.dialect == "postgresql"
                else "json_each(captures.topics)")
        topics = [(r["t"], r["n"]) for r in self._rows(
            f"SELECT j.value AS t, COUNT(*) AS n FROM captures, {each} j WHERE {art} "
            f"GROUP BY j.value ORDER BY COUNT(*) DESC, j.value")]
        outlets = [(r["outlet"], r["n"]) for r in self._rows(
            f"SELECT outlet, COUNT(*) AS n FROM captures WHERE {art} GROUP BY outlet ORDER BY COUNT(*) DESC, outlet")]
        days = [(r["d"], r["n"]) for r in self._rows(
            f"SELECT substr(fetched_at, 1, 10) AS d, COUNT(*) AS n FROM captures WHERE {art} GROUP BY 1 ORDER BY 1")]
        newest = [_row(r) for r in self._rows(f"SELECT * FROM captures WHERE {art} ORDER BY id DESC LIMIT :n",
                                              n=latest)]
        total = self._scalar(f"SELECT COUNT(*) FROM captures WHERE {art}") or 0
        return Overview(topics, outlets, days, newest, total)

    def _archived_articles(self, topic: str | None) -> tuple[str, dict[str, Any]]:
        where: str = "kind = 'article' AND state = 'archived'"
        params: dict[str, Any] = {}
        if topic is not None:
            where += f" AND EXISTS (SELECT 1 FROM {self._topics_of_row()} j WHERE j.value = :topic)"
            params["topic"] = topic
        return where, params

    def publication_dates(self, topic: str | None = None) -> list[tuple[str, int]]:
        """(publication date as the pages state it, archived articles) for archived articles
        (about `topic`), in no particular order. An article is a URL fetched, counted once
        however many versions of it share the date."""
        where, params = self._archived_articles(topic)
        return [(r["p"], r["n"]) for r in self._rows(
            f"SELECT published AS p, COUNT(DISTINCT COALESCE(final_url, url)) AS n FROM captures "
            f"WHERE {where} AND published IS NOT NULL GROUP BY published", **params)]

    def capture_days(self, topic: str | None = None) -> list[tuple[str, int]]:
        """(YYYY-MM-DD, archived article captures made that day, UTC) for articles (about
        `topic`), in date order."""
        where, params = self._archived_articles(topic)
        return [(r["d"], r["n"]) for r in self._rows(
            f"SELECT substr(fetched_at, 1, 10) AS d, COUNT(*) AS n FROM captures WHERE {where} GROUP BY 1 ORDER BY 1",
            **params)]

    def _topics_of_row(self) -> str:
        """A row's topics as a table of one `value` column (JSON in a text column)."""
        return ("jsonb_array_elements_text(captures.topics::jsonb)" if self.dialect == "postgresql"
                else "json_each(captures.topics)")

    def topic_articles(self, topic: str | None, limit: int = 50) -> list[CaptureRow]:
        """The newest archived articles (first captures and new versions) about `topic` (None:
        about anything), newest first: what a topic's feed lists."""
        where, params = "kind = 'article' AND state = 'archived' AND topics <> '[]'", {"n": limit}
        if topic is not None:
            where += f" AND EXISTS (SELECT 1 FROM {self._topics_of_row()} j WHERE j.value = :topic)"
            params["topic"] = topic
        return [_row(r) for r in self._rows(f"SELECT * FROM captures WHERE {where} ORDER BY id DESC LIMIT :n",
                                            **params)]

    def topic_names(self) -> list[str]:
        """Every topic some archived article is about, by name."""
        return [r["t"] for r in self._rows(f"SELECT DISTINCT j.value AS t FROM captures, {self._topics_of_row()} j "
                                           "WHERE kind = 'article' AND state = 'archived' ORDER BY 1")]
