"""Readers' comments are not the article: finding them in the chosen content by markup.

readability drops elements whose class says "comment" unless it also says "content", "body",
"article" or "main" ("comment-body", "article-comments"), and knows no other language. Three
kinds of evidence here, each independent of the site:
- class/id words of comment areas and comment systems (WordPress, Disqus, Facebook, and the
  words for "comments" in the languages archived most), schema.org Comment markup, and
  reply forms (a form with a textarea);
- the heading that opens a thread ("12 Comments", "Leave a Reply", "Отзывы"): what follows it
  in the same container is the thread and its reply form;
- notices about comment moderation ("comments are moderated", "Comentários ... não serão
  aprovados pelo moderador").
"""

from __future__ import annotations

import re

from lxml import etree, html

# "comment" in the languages of the archive's outlets, and the names comment systems give
# their containers
_STEM = (r"comments?|commentlist|comentarios?|comentários?|comentario|kommentare?|commenti|commento|"
         r"commentaires?|reacties|komentar|komentarze|коммент\w*|отзыв\w*|disqus(?:_thread)?|"
         r"respond|replies|reply|livefyre|fb-comments|spot-?im|openweb|viafoura|coral-talk")
# a class or id token names a comment area when the stem is one of its -/_ separated parts and
# no part says only whether comments are open
_TOKEN = re.compile(rf"(?:^|[-_])(?:{_STEM})(?:$|[-_])", re.IGNORECASE)
_STATUS = re.compile(r"(?:^|[-_])(?:open|closed|enabled|disabled|allowed|off|count|number|num|link|icon)"
                     r"(?:$|[-_])", re.IGNORECASE)
_SCHEMA_COMMENT = re.compile(r"schema\.org/(?:User)?Comments?\b", re.IGNORECASE)


def _names_comments(el: html.HtmlElement) -> bool:
    for token in f"{el.get('class') or ''} {el.get('id') or ''}".split():
        if _TOKEN.search(token) and not _STATUS.search(token):
            return True
    return _SCHEMA_COMMENT.search(el.get("itemtype") or "") is not None


_MARKED = etree.XPath(".//*[@class or @id or @itemtype]")
_REPLY_FORMS = etree.XPath(".//form[.//textarea]")
_HOLDS_STORY = etree.XPath("boolean(.//h1 | .//article | .//main)")


def drop_comment_sections(tree: html.HtmlElement) -> None:
    """Remove comment areas and reply forms from chosen content. An element holding the
    headline (<h1>) or an <article>/<main> is never removed: some themes mark the whole post
    with a comment status."""
    doomed = list(_REPLY_FORMS(tree))
    for el in _MARKED(tree):
        if el.tag in ("html", "body", "head"):
            continue
        if _names_comments(el) and not _HOLDS_STORY(el):
            doomed.append(el)
    for el in doomed:
        # an ancestor may have gone first; dropping a detached subtree is harmless
        if el.getparent() is not None:
            el.drop_tree()


_HEADING = re.compile(
    r"^(?:\d+\s+)?(?:comments?|responses?|replies|reactions|discussion|reader comments|"
    r"comentários?|comentarios?|kommentare?|commenti|commentaires?|reacties|komentar|"
    r"отзывы|комментарии|댓글|コメント|评论|評論)(?:\s*\(\d+\))?\s*:?$"
    r"|^(?:leave|post|add|write|submit|join)\s+(?:a|your|the)\s+(?:comment|reply|review|discussion)\b.*"
    r"|^(?:deixe|deixar)\s+(?:um|seu|uma|sua)\s+(?:comentário|resposta)\b.*"
    r"|^(?:deja|dejar)\s+(?:un|tu)\s+comentario\b.*"
    r"|^(?:lascia|lasciare)\s+un\s+commento\b.*"
    r"|^(?:laissez|laisser)\s+un\s+commentaire\b.*"
    r"|^(?:kommentar|kommentare)\s+(?:schreiben|verfassen)\b.*"
    r"|^(?:tinggalkan|tulis)\s+(?:balasan|komentar)\b.*"
    r"|^(?:добавить|оставить|написать)\s+(?:отзыв|комментарий)\b.*",
    re.IGNORECASE)
_HEADING_TAGS = ("h2", "h3", "h4", "h5", "h6", "p", "div", "strong", "b", "span")


def _text(el: html.HtmlElement) -> str:
    return " ".join(el.text_content().split())


def drop_comment_threads(tree: html.HtmlElement) -> None:
    """Cut a thread out of chosen content: a comments heading in the second half of the text,
    and what follows it in its container (the comments and the reply form)."""
    total = len(_text(tree))
    if not total:
        return
    for el in list(tree.iter(*_HEADING_TAGS)):
        if el.getparent() is None or len(el) > 2:
            continue
        text = _text(el)
        if not text or len(text) > 60 or not _HEADING.match(text):
            continue
        before = _text_before(el)
        if before < total / 2:
            continue
        for sibling in list(el.itersiblings()):
            sibling.drop_tree()
        el.drop_tree()


def _text_before(target: html.HtmlElement) -> int:
    return sum(len(t.strip()) for t in target.xpath("preceding::text()"))


_NOTICE = re.compile(
    r"(?=.*\b(?:comments?|comentários?|comentarios?|kommentare?|commenti|commentaires?|komentar|"
    r"комментари\w*|отзыв\w*)\b)"
    r"(?=.*\b(?:moderat\w*|approv\w*|aprovad\w*|spam|guidelines?|policy|política|richtlinien|"
    r"regeln|netiquette|respectful|respeito|offensive|ofensiv\w*|publicad\w*|freigeschaltet|"
    r"модерат\w*))",
    re.IGNORECASE)


def is_comment_notice(line: str) -> bool:
    """A short line about the comment section's rules, not about the story."""
    return len(line) < 300 and _NOTICE.match(line) is not None
