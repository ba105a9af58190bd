"""Recognise bot challenges, CAPTCHA interstitials and consent walls served instead of a page.

Such a response is archived as evidence but never counted as the article, and the URL is
tried again on a later pass. Phrases are only trusted on short pages: a long article that
mentions "captcha" is still an article.
"""

from __future__ import annotations

import re

_CHALLENGE = [
    (r"unusual (?:activity|traffic) from your (?:computer )?network", "bot challenge: unusual activity"),
    (r"(?:are you|i(?:'|’)?m|i am) not a robot|are you a robot|prove you(?:'|’)?re (?:a )?human",
     "bot challenge: not-a-robot"),
    (r"verify(?:ing)? (?:that )?you are (?:a )?human|human verification", "bot challenge: human verification"),
    (r"\bcaptcha\b|g-recaptcha|h-captcha|hcaptcha", "CAPTCHA interstitial"),
    (r"checking (?:if the site connection is secure|your browser before accessing)|just a moment\.\.\.|"
     r"cf-browser-verification|attention required! \| cloudflare|cf-chl-", "bot challenge: browser check"),
    (r"enable javascript and cookies to continue|please enable cookies", "bot challenge: cookies/JavaScript"),
    (r"access (?:to this page has been )?denied|request (?:was )?blocked|you have been blocked",
     "block page: access denied"),
    (r"before you continue to|we value your privacy|consent to (?:our|the use of) cookies|"
     r"accept (?:all )?cookies to (?:continue|read)", "consent wall"),
]
_COMPILED = [(re.compile(p, re.IGNORECASE), why) for p, why in _CHALLENGE]
SHORT_PAGE_CHARS = 2500


def block_reason(status: int, page_text: str, body_text: str) -> str | None:
    """Why this response is a block page rather than content, or None."""
    text = page_text or ""
    short = len(body_text.strip()) < SHORT_PAGE_CHARS and len(text) < SHORT_PAGE_CHARS * 4
    body_len = len(body_text.strip())
    if not short and status not in (403, 429, 503):
        return None  # no phrase can decide here; scanning 20 KB with eight patterns cost a quarter of a pass's CPU
    for rx, why in _COMPILED:
        if not rx.search(text[:20000]):
            continue
        # cookie banners sit on every page; only a page with next to no body is a wall
        if why == "consent wall" and body_len >= 600:
            continue
        if short or status in (403, 429, 503):
            return why
    if status in (403, 429) and len(body_text.strip()) < 200:
        return f"HTTP {status} with no content"
    return None
