"""Alerts: what a capture means to the people following a topic, sent to a webhook or by mail.

Three events come from article capture rows. `new`: a first capture of an article (archived).
`updated`: a new version of an article kept before (archived, with the capture it follows),
with a short diff of its text. `removed`: an article kept before that now answers 404 or 410,
or redirects to its outlet's home page (`home:`, or any site's front page `/`); told once,
when the page goes, not again at each refetch that finds it still gone.

Deliveries are queued in the index's outbox inside the transaction that inserts the capture
row (Index.add asks `Alerts.plan` before the insert and queues what it answers with the
row's id), so a committed capture always has its deliveries and one lost in a crash has
none. `Deliverer` sends them: the daemon's background task, woken as a capture is committed
and looking every second anyway, or `archiver alerts deliver` once (cron) or with `--follow`.

Delivery is at least once. A delivery is marked made only after the receiver accepted it (a
2xx answer, or the SMTP server taking the message); a sender that dies between the two
leaves it to be sent again, with the same `X-Archiver-Delivery` id (mail: Message-ID), by
which a receiver drops the rare repeat. Failed deliveries are tried again after 1, 2, 4 ...
seconds, at most `MAX_BACKOFF` apart, for as long as their alert is configured (a restart
tries each receiver again at once); a delivery whose alert left the config waits, untouched,
for it to come back.

Webhooks are sent with a client of their own, not the crawler's: the crawler's address
policy (wire.py) keeps it off private networks, and a receiver on this machine is normal.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import hmac
import json
import logging
import re
import smtplib
import ssl
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from email.message import EmailMessage
from email.utils import formatdate
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from . import __version__
from .clock import utc_now, warc_date
from .config import LoadedConfig
from .errors import StorageError
from .index import ARCHIVED, FAILED, NOT_MODIFIED, UNCHANGED, CaptureRow, Index, OutboxRow, row_to_public
from .ratelog import RateLimitedLog
from .settings import Alert, EmailSettings

log = logging.getLogger(__name__)

POLL_SECONDS = 1.0  # the delivery loop looks at the outbox at least this often
MAX_BACKOFF = 600.0  # seconds between two attempts of one delivery, at most
CLAIM_MARGIN = 30.0  # a claim lasts the alert's timeout plus this: past it, another sender may take it
BATCH = 200  # deliveries read from the outbox per round
DIFF_LINES = 20  # changed lines an `updated` event shows
DIFF_LINE_CHARS = 300
GONE_STATUSES = (404, 410)


@dataclass(frozen=True)
class Event:
    """What one capture row means to alerts."""

    kind: str  # new | updated | removed
    topics: list[str]
    matched: dict[str, list[str]]
    shown: CaptureRow  # the version the links show (removed: the last one archived)
    previous_id: int | None = None  # updated, removed: the capture before
    diff: str | None = None  # updated: what changed in the article text
    reason: str | None = None  # removed: why the page counts as gone


def retry_delay(attempts: int) -> float:
    """Seconds before a delivery attempted `attempts` times is tried again."""
    return min(MAX_BACKOFF, 2.0 ** max(0, attempts - 1))


def signature(secret: str, body: bytes) -> str:
    """The X-Archiver-Signature of a body: sha256=<hex HMAC-SHA256 of the body, keyed by the secret>."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def _later(seconds: float) -> str:
    return warc_date(datetime.now(timezone.utc) + timedelta(seconds=seconds))


# ---------------------------------------------------------------------- events


class Alerts:
    """The index's CaptureWatcher while alerts are configured: which events a capture row is,
    and the outbox rows of the alerts that want them. `text_root` is where the pass writes
    article texts (the storage root, or a scaled worker's spool)."""

    def __init__(self, cfg: LoadedConfig, text_root: Path):
        self.alerts = list(cfg.config.alerts)
        self.public_url = cfg.config.daemon.public_url or ""
        self.text_roots = list(dict.fromkeys((text_root, cfg.storage_root)))
        self.homes = {o.name: o.home for o in cfg.config.outlets}

    @classmethod
    def for_pass(cls, cfg: LoadedConfig, text_root: Path) -> "Alerts | None":
        """The watcher a pass gives its index; None when no alert is configured (nothing asked)."""
        return cls(cfg, text_root) if cfg.config.alerts else None

    def plan(self, row: CaptureRow, index: Index) -> Callable[[CaptureRow], list[OutboxRow]] | None:
        if row.kind != "article" or row.state not in (ARCHIVED, FAILED):
            return None
        try:
            event = self.event(row, index)
        except StorageError:
            raise
        except Exception:  # a defect here must not cost the capture itself
            log.exception("alerts: capture of %s: its events could not be worked out", row.url)
            return None
        if event is None:
            return None
        wanted = [a for a in self.alerts if event.kind in a.events and _about(a, event.topics)]
        if not wanted:
            return None
        return lambda saved: self._queued(saved, event, wanted)

    def event(self, row: CaptureRow, index: Index) -> Event | None:
        """The event `row` is, judged against the article's captures before it."""
        if row.state == FAILED:
            if row.status not in GONE_STATUSES:
                return None
            return self._removed(row, index, f"answered HTTP {row.status}")
        if self._at_home(row):
            return self._removed(row, index, f"redirects to the outlet's home page {row.final_url}")
        if row.previous_capture_id is None:
            return Event("new", list(row.topics), dict(row.matched), row)
        earlier = _full(index, index.get(row.previous_capture_id))
        topics, matched = row.topics, row.matched
        if not topics and earlier is not None:  # a new version is kept even when it no longer matches
            topics, matched = earlier.topics, earlier.matched
        diff = None
        if earlier is not None:
            before, after = self._text(earlier), self._text(row)
            if before is not None and after is not None:
                diff = short_diff(before, after)
        return Event("updated", list(topics), dict(matched), row, row.previous_capture_id, diff)

    def _removed(self, row: CaptureRow, index: Index, reason: str) -> Event | None:
        prior = index.last_article_outcome(row.url)
        if prior is None or not self._alive(prior):
            return None  # never kept, or gone already: told when it went
        last = _full(index, prior) or prior
        return Event("removed", list(last.topics), dict(last.matched), last, prior.id, reason=reason)

    def _alive(self, row: CaptureRow) -> bool:
        return row.state in (ARCHIVED, UNCHANGED, NOT_MODIFIED) and not self._at_home(row)

    def _at_home(self, row: CaptureRow) -> bool:
        """The article's URL led to its outlet's home page (how many sites retire a story)."""
        final = row.final_url
        if not final or final == row.url:
            return False
        home = self.homes.get(row.outlet)
        if home is not None and _same_page(final, home):
            return True
        parts = urlsplit(final)
        return parts.path in ("", "/") and not parts.query

    def _text(self, row: CaptureRow) -> str | None:
        if not row.text_path:
            return None
        for root in self.text_roots:
            try:
                return (root / row.text_path).read_text(encoding="utf-8")
            except OSError:
                continue
        return None

    def _queued(self, saved: CaptureRow, event: Event, alerts: list[Alert]) -> list[OutboxRow]:
        try:
            now = utc_now()
            out = []
            for alert in alerts:
                delivery_id = uuid.uuid4().hex
                body = self.body(saved, event, delivery_id, now)
                out.append(OutboxRow(delivery_id=delivery_id, capture_id=saved.id or 0, event=event.kind,
                                     channel=alert.channel, address=alert.address, body=body, created_at=now,
                                     next_attempt_at=now))
            return out
        except Exception:  # as in plan(): never the capture's failure
            log.exception("alerts: capture %s of %s: its deliveries could not be queued", saved.id, saved.url)
            return []

    def link(self, path: str) -> str:
        """A browse UI path, absolute under daemon.public_url when that is set."""
        return self.public_url + path

    def body(self, saved: CaptureRow, event: Event, delivery_id: str, queued_at: str) -> str:
        """The JSON a receiver gets: the capture as `archiver captures --format jsonl` gives it,
        and what the event adds."""
        shown = event.shown if event.kind == "removed" else saved
        obj = {
            **row_to_public(saved),
            "event": event.kind,
            "delivery": delivery_id,
            "queued_at": queued_at,
            "topics": event.topics,
            "matched": event.matched,
            "terms": sorted(event.matched),
            "permalink": self.link(permalink(shown)),
            "capture_page": self.link(f"/capture/{shown.id}"),
            "previous_id": event.previous_id,
        }
        if event.kind == "updated":
            obj["diff"] = event.diff
        if event.kind == "removed":
            obj["reason"] = event.reason
        return json.dumps(obj, ensure_ascii=False, sort_keys=True)


def permalink(row: CaptureRow) -> str:
    """/web/<14-digit UTC time>/<URL>: the capture in the browse UI's replay, by time and URL."""
    stamp = "".join(ch for ch in row.fetched_at if ch.isdigit())[:14]
    return f"/web/{stamp}/{row.final_url or row.url}"


def _about(alert: Alert, topics: list[str]) -> bool:
    """An alert without topics wants captures about any topic; one with topics, about one of them."""
    return bool(topics) and (not alert.topics or any(t in alert.topics for t in topics))


def _same_page(a: str, b: str) -> bool:
    pa, pb = urlsplit(a), urlsplit(b)
    return (pa.netloc.lower(), pa.path.rstrip("/"), pa.query) == (pb.netloc.lower(), pb.path.rstrip("/"), pb.query)


def _full(index: Index, row: CaptureRow | None) -> CaptureRow | None:
    """The archived capture holding `row`'s payload and texts (a revisit row refers to it)."""
    for _ in range(8):  # a revisit refers to a full capture; the bound is against a corrupt chain
        if row is None or row.state == ARCHIVED:
            return row
        if row.revisit_of:
            row = index.by_record_id(row.revisit_of)
        elif row.previous_capture_id:
            row = index.get(row.previous_capture_id)
        else:
            return None
    return None


def short_diff(before: str, after: str) -> str:
    """The lines of article text removed (- ) and added (+ ), at most DIFF_LINES of them."""
    from .web.diffs import ADDED, REMOVED, diff_texts

    d = diff_texts(before, after, max_lines=2000, seconds=0.1)
    changed = [(tag, text) for tag, text in d.lines if tag in (ADDED, REMOVED) and text.strip()]
    lines = [f"{tag} {text[:DIFF_LINE_CHARS]}{' …' if len(text) > DIFF_LINE_CHARS else ''}"
             for tag, text in changed[:DIFF_LINES]]
    if len(changed) > DIFF_LINES:
        lines.append(f"… {len(changed) - DIFF_LINES} more changed lines")
    return "\n".join(lines)


# ---------------------------------------------------------------------- delivery


@dataclass
class Round:
    """What one look at the outbox did."""

    delivered: int = 0
    failed: int = 0
    waiting: int = 0  # due, but their alert is no longer configured
    errors: list[str] = dataclasses.field(default_factory=list)  # "<alert>: <why>", one per failure


class Deliverer:
    """Sends what the outbox holds. `round()` tries every due delivery once, in the order
    queued, one receiver's deliveries after another (a failure ends that receiver's turn for
    the round); `run()` repeats it until `stop()`."""

    def __init__(self, cfg: LoadedConfig, index: Index):
        self.index = index
        self.cfg = cfg
        self._client = httpx.AsyncClient(follow_redirects=False, trust_env=False)
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = False
        self._rate = RateLimitedLog(log, 60.0)
        self._hold: dict[tuple[str, str], tuple[float, int]] = {}  # receiver -> (not before, failures in a row)
        self._unconfigured: set[tuple[str, str]] = set()  # receivers no alert names: their rows wait

    def reconfigure(self, cfg: LoadedConfig) -> None:
        self.cfg = cfg
        self._unconfigured.clear()
        self.wake()

    def _alert(self, row: OutboxRow) -> Alert | None:
        return next((a for a in self.cfg.config.alerts if (a.channel, a.address) == (row.channel, row.address)), None)

    def wake(self) -> None:
        """Look at the outbox now (a capture with deliveries was committed). Any thread may call it."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._wake.set)

    def stop(self) -> None:
        self._stopping = True
        self.wake()

    async def aclose(self) -> None:
        await self._client.aclose()

    async def run(self, poll: float = POLL_SECONDS) -> None:
        """Deliver until stop(): at once on start (back-off forgotten: a restart is the moment
        to try every receiver again), then when woken and every `poll` seconds."""
        self._loop = asyncio.get_running_loop()
        first = True
        while not self._stopping:
            self._wake.clear()
            try:
                await self.round(backoff=not first)
            except StorageError as e:
                self._rate.log(logging.ERROR, "outbox", "alerts: cannot read or update the outbox: %s", e)
            first = False
            if self._stopping:
                break
            try:
                await asyncio.wait_for(self._wake.wait(), poll)
            except TimeoutError:
                pass

    async def round(self, backoff: bool = True) -> Round:
        """Try each due delivery once (with `backoff` False, every one not made yet)."""
        done = Round()
        held = [key for key, (until, _) in self._hold.items() if backoff and time.monotonic() < until]
        # receivers waiting out a failure, or no longer configured, are left out of the read:
        # their backlog would fill every batch and starve the others
        due = self.index.outbox_due(utc_now(), BATCH, backoff=backoff, skip=[*held, *self._unconfigured])
        by_receiver: dict[tuple[str, str], list[OutboxRow]] = {}
        for row in due:
            by_receiver.setdefault((row.channel, row.address), []).append(row)
        await asyncio.gather(*(self._receiver(key, rows, done) for key, rows in by_receiver.items()))
        return done

    async def _receiver(self, key: tuple[str, str], rows: list[OutboxRow], done: Round) -> None:
        _, failures = self._hold.get(key, (0.0, 0))
        for row in rows:
            if self._stopping:
                return
            alert = self._alert(row)
            if alert is None:
                done.waiting += len(rows)
                self._unconfigured.add(key)
                log.warning("alerts: deliveries to %s wait: no alert in the config sends there any more",
                            _shown_address(row))
                return
            if not self.index.claim_delivery(row.id or 0, utc_now(), _later(alert.timeout + CLAIM_MARGIN)):
                continue  # delivered meanwhile, or another sender has it
            error, note = await self._send(alert, row)
            if error is None:
                self.index.delivery_made(row.id or 0, utc_now(), note)
                self._hold.pop(key, None)
                done.delivered += 1
                log.info("alerts: %s of capture %s delivered to %s", row.event, row.capture_id, alert.label)
                continue
            wait = retry_delay(row.attempts + 1)  # the claim counted this attempt
            self.index.delivery_failed(row.id or 0, error, _later(wait))
            failures += 1
            self._hold[key] = (time.monotonic() + retry_delay(failures), failures)
            done.failed += 1
            done.errors.append(f"{alert.label}: {error}")
            self._rate.log(logging.WARNING, f"failed {key}", "alerts: delivery to %s failed (%s); tried again "
                           "in %gs, nothing is dropped", alert.label, error, wait)
            return  # the receiver's other deliveries wait for its next turn

    async def _send(self, alert: Alert, row: OutboxRow) -> tuple[str | None, str | None]:
        """(why it failed, None) or (None, a note on what the receiver did not take)."""
        try:
            async with asyncio.timeout(alert.timeout):
                if alert.webhook is not None:
                    return await self._post(alert, row), None
                assert alert.email is not None
                return None, await asyncio.to_thread(send_mail, alert.email, mail_message(alert.email, row),
                                                     alert.timeout)
        except TimeoutError:
            return f"no answer within {alert.timeout:g}s", None
        except Exception as e:  # whatever a receiver does costs this attempt only
            return _reason(e, alert), None

    async def _post(self, alert: Alert, row: OutboxRow) -> str | None:
        assert alert.webhook is not None
        body = row.body.encode("utf-8")
        headers = {"Content-Type": "application/json", "User-Agent": f"archiver/{__version__} (alerts)",
                   "X-Archiver-Event": row.event, "X-Archiver-Delivery": row.delivery_id}
        if alert.secret is not None:
            headers["X-Archiver-Signature"] = signature(alert.secret.get_secret_value(), body)
        # the receiver's body is not read: only its status counts, and it cannot make us hold much
        async with self._client.stream("POST", alert.webhook, content=body, headers=headers,
                                       timeout=alert.timeout) as r:
            if 200 <= r.status_code < 300:
                return None
            return f"answered HTTP {r.status_code}"


def _reason(e: BaseException, alert: Alert) -> str:
    text = str(e).strip().splitlines()[0] if str(e).strip() else ""
    if alert.webhook:
        text = text.replace(alert.webhook, alert.label)  # a webhook URL is often its own credential
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def _shown_address(row: OutboxRow) -> str:
    if row.channel == "webhook":
        return "webhook " + re.sub(r"^(https?://[^/?#]+).*$", r"\1/…", row.address)
    return "e-mail to " + row.address


# ---------------------------------------------------------------------- e-mail


def _one_line(text: str) -> str:
    return re.sub(r"[\r\n]+", " ", text).strip()


def mail_message(settings: EmailSettings, row: OutboxRow) -> EmailMessage:
    """The mail of one delivery: a short text, the event's JSON attached; its Message-ID is
    the delivery id, so a mail client shows a repeat as the same message."""
    event = json.loads(row.body)
    msg = EmailMessage()
    title = event.get("title") or event.get("final_url") or event.get("url")
    msg["Subject"] = _one_line(f"{settings.subject_prefix} {row.event}: {title}")
    msg["From"] = settings.from_
    msg["To"] = ", ".join(settings.to)
    msg["Date"] = formatdate(localtime=False, usegmt=True)
    msg["Message-ID"] = f"<{row.delivery_id}@archiver>"
    msg["X-Archiver-Delivery"] = row.delivery_id
    msg["X-Archiver-Event"] = row.event
    lines = [f"{row.event}: {title}", "", f"URL: {event.get('url')}", f"Outlet: {event.get('outlet')}",
             f"Topics: {', '.join(event.get('topics') or [])}", f"Matched: {', '.join(event.get('terms') or [])}",
             f"Archived copy: {event.get('permalink')}", f"Capture: {event.get('capture_page')}"]
    if event.get("reason"):
        lines.append(f"Why: the page {event['reason']}")
    if event.get("diff"):
        lines += ["", "What changed:", event["diff"]]
    # quoted-printable: ASCII on the wire, for relays that do not take 8-bit mail
    msg.set_content("\n".join(lines) + "\n", cte="quoted-printable")
    msg.add_attachment(row.body.encode("utf-8"), maintype="application", subtype="json", filename="event.json")
    return msg


def send_mail(settings: EmailSettings, msg: EmailMessage, timeout: float) -> str | None:
    """Hand the message to the SMTP server; a note naming the recipients it refused (when it
    took it for some), None when it took it for all. Raises when it took it for none."""
    host, port = settings.host_port
    smtp_class = smtplib.SMTP_SSL if settings.tls == "ssl" else smtplib.SMTP
    with smtp_class(host, port, timeout=timeout) as smtp:
        if settings.tls == "starttls":
            smtp.starttls(context=ssl.create_default_context())
        if settings.username:
            smtp.login(settings.username, settings.password.get_secret_value() if settings.password else "")
        refused = smtp.send_message(msg)
    if refused:
        return "refused by the SMTP server: " + ", ".join(sorted(refused))
    return None
