"""Topic matching rules as a user writes them in the config."""

from __future__ import annotations

from archiver.settings import Topic
from archiver.topics import TopicMatcher


def m(**topics) -> TopicMatcher:
    return TopicMatcher([Topic(name=n, **spec) for n, spec in topics.items()])


def test_word_boundaries_case_and_accents():
    t = m(v={"any": ["Vietnam"]})
    assert t.match({"body": "talks in VIETNAM today"}).topics == ["v"]
    assert not t.match({"body": "Vietnamese food"})
    assert not t.match({"body": "NotVietnam"})
    assert m(h={"any": ["Hà Nội"]}).match({"body": "arrived in Ha Noi"}).topics == ["h"]
    assert m(b={"any": ["Blinken"]}).match({"body": "BLINKÉN said"}).topics == ["b"]


def test_phrases_match_any_whitespace_including_nbsp():
    t = m(a={"any": ["Asia trip"]})
    for text in ("his Asia trip", "his Asia\u00a0trip", "his Asia\n  trip", "his asia\ttrip."):
        assert t.match({"body": text}), text
    assert not t.match({"body": "a trip to Asia"})
    assert not t.match({"body": "Asia trips"})


def test_any_all_none_semantics_and_where():
    t = m(x={"all": ["Blinken", "Vietnam"], "any": ["visit", "trip"], "none": ["obituary"]})
    assert not t.match({"body": "Blinken visit"})  # missing an `all` term
    assert not t.match({"body": "Blinken Vietnam"})  # no `any` term
    assert not t.match({"body": "Blinken Vietnam visit obituary"})  # a `none` term
    r = t.match({"page_title": "Blinken in Vietnam", "body": "the visit to Vietnam"})
    assert r.topics == ["x"]
    assert r.matched == {"Blinken": ["page_title"], "Vietnam": ["page_title", "body"], "visit": ["body"]}


def test_accents_dropped_whatever_the_script_and_a_term_needs_all_its_words():
    from archiver.topics import fold

    # composed and decomposed forms, marks on Latin, Greek and Cyrillic letters, and text around
    # them that has no marks at all (typographic quotes, dashes) all fold the same way
    assert fold("Đà Nẵng — “Hà Nội”") == fold("Đa\u0300 Na\u0306\u0303ng — “Ha\u0300 No\u0323\u0302i”")
    assert fold("Ἀθῆναι Йошкар-Ола́") == "αθηναι иошкар-ола"
    assert fold("Straße ÉCOLE") == "strasse ecole"
    t = m(v={"any": ["Hà Nội trip"]})
    body = "“Quotes” and dashes — " * 2000 + "the ha noi\u00a0TRIP"
    assert t.match({"body": body}).topics == ["v"]
    # each word of the phrase must be there: the longest alone, or every word apart, is not it
    assert not t.match({"body": "trip to Nội"})
    assert not t.match({"body": "Hà in the morning, Nội trip later"})
