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
