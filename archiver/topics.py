"""Topic matching: which configured topics a text is about, and which terms matched where.

Terms are matched case- and accent-insensitively on word boundaries; whitespace inside a
phrase matches any run of whitespace (NBSP included). "Vietnamese" does not match "Vietnam".
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field

from .settings import Topic


def fold(text: str) -> str:
    """Case-fold and strip accents; keeps length-independent word boundaries intact."""
    if text.isascii():
        return text.casefold()
    text = unicodedata.normalize("NFKD", text)
    # the text's own combining marks, dropped by one regex: str.translate looks each
    # character of a non-ASCII string up in its table, ~1 ms for a 10 KB article body
    marks = [c for c in set(text) if unicodedata.combining(c)]
    if marks:
        text = re.sub("[" + "".join(map(re.escape, marks)) + "]+", "", text)
    return text.casefold()


def _term_regex(term: str) -> re.Pattern[str]:
    words = fold(term).split()
    return re.compile(r"(?<!\w)" + r"\s+".join(re.escape(w) for w in words) + r"(?!\w)")


@dataclass
class TopicMatch:
    """Matched topics and, per matched term, the places it was seen (e.g. 'feed_title', 'body')."""

    topics: list[str] = field(default_factory=list)
    matched: dict[str, list[str]] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.topics)


class TopicMatcher:
    """Compiled matcher for a list of topics."""

    def __init__(self, topics: list[Topic]):
        self.topics = list(topics)
        terms = {t for topic in self.topics for t in (*topic.any, *topic.all, *topic.none)}
        self._regex = {t: _term_regex(t) for t in sorted(terms)}
        # a term's longest word is in any text the term matches: a plain substring test
        # (C, no backtracking) rules out most terms before their regex scans the body
        self._needle = {t: max(fold(t).split() or [""], key=len) for t in self._regex}

    def terms_in(self, fields: dict[str, str]) -> dict[str, list[str]]:
        """term -> places (keys of `fields`, in the given order) where it occurs."""
        folded = {where: fold(text) for where, text in fields.items() if text}
        found: dict[str, list[str]] = {}
        for term, rx in self._regex.items():
            needle = self._needle[term]
            places = [where for where, text in folded.items() if needle in text and rx.search(text)]
            if places:
                found[term] = places
        return found

    def match(self, fields: dict[str, str]) -> TopicMatch:
        return self.decide(self.terms_in(fields))

    def decide(self, found: dict[str, list[str]]) -> TopicMatch:
        """The topics that terms found (term -> places, as from terms_in) make a match."""
        result = TopicMatch()
        for topic in self.topics:
            if topic.any and not any(t in found for t in topic.any):
                continue
            if not all(t in found for t in topic.all):
                continue
            if any(t in found for t in topic.none):
                continue
            result.topics.append(topic.name)
            for t in (*topic.any, *topic.all):
                if t in found:
                    result.matched[t] = found[t]
        return result
