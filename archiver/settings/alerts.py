"""The alerts section: who is told of new, updated and removed articles, and how."""

from __future__ import annotations

import re
from typing import Any, Optional

from pydantic import ConfigDict, Field, SecretStr, field_validator, model_validator

from ..units import parse_duration
from .base import _Model, from_env

ALERT_EVENTS = ("new", "updated", "removed")
_ADDRESS = r"[^@\s<>,;]+@[^@\s<>,;]+"


class EmailSettings(_Model):
    """An alert sent as mail through an SMTP server (smtplib)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
    to: list[str] = Field(min_length=1)
    from_: str = Field(alias="from")
    smtp: str = Field(pattern=r"^[^\s:\[\]]+:\d{1,5}$|^\[[0-9a-fA-F:]+\]:\d{1,5}$")  # HOST:PORT
    # starttls: upgrade a plain connection (port 587); ssl: TLS from the start (port 465);
    # none: a relay on this machine or a trusted network (port 25)
    tls: str = Field("starttls", pattern=r"^(none|starttls|ssl)$")
    username: Optional[str] = None
    password: Optional[SecretStr] = None  # or "${ENV_VAR}"
    subject_prefix: str = Field("[archiver]", pattern=r"^[^\r\n]*$")

    @field_validator("to", mode="before")
    @classmethod
    def _one_or_more(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v

    @field_validator("to")
    @classmethod
    def _addresses(cls, v: list[str]) -> list[str]:
        for address in v:
            if not re.fullmatch(_ADDRESS, address):
                raise ValueError(f"not an e-mail address: {address!r}")
        return v

    @field_validator("from_")
    @classmethod
    def _sender(cls, v: str) -> str:
        if not re.fullmatch(_ADDRESS, v):
            raise ValueError("not an e-mail address")
        return v

    @field_validator("password", mode="before")
    @classmethod
    def _password_from_env(cls, v: Any) -> Any:
        return from_env(v)

    @property
    def host_port(self) -> tuple[str, int]:
        host, _, port = self.smtp.rpartition(":")
        return host.strip("[]"), int(port)


class Alert(_Model):
    """Where news of captures goes: a webhook (a signed JSON POST per event) or e-mail, for
    the events and topics named (default: every event, every topic)."""

    name: Optional[str] = Field(None, pattern=r"^[\w][\w .-]*$")  # how logs and messages name it
    webhook: Optional[str] = None  # or "${ENV_VAR}"
    secret: Optional[SecretStr] = None  # signs a webhook's bodies (X-Archiver-Signature); or "${ENV_VAR}"
    email: Optional[EmailSettings] = None
    topics: list[str] = []
    events: list[str] = list(ALERT_EVENTS)
    timeout: float = 10.0  # seconds for one delivery

    @field_validator("webhook", "secret", mode="before")
    @classmethod
    def _value_from_env(cls, v: Any) -> Any:
        return from_env(v)

    @field_validator("webhook")
    @classmethod
    def _url(cls, v: Optional[str]) -> Optional[str]:
        if v is not None and not re.fullmatch(r"https?://[^/\s?#]+[^\s#]*", v):
            raise ValueError("not an http(s) URL")
        return v

    @field_validator("events")
    @classmethod
    def _events(cls, v: list[str]) -> list[str]:
        for event in v:
            if event not in ALERT_EVENTS:
                raise ValueError(f"no event {event!r} (events are {', '.join(ALERT_EVENTS)})")
        if not v:
            raise ValueError(f"name at least one of {', '.join(ALERT_EVENTS)}")
        return v

    @field_validator("timeout", mode="before")
    @classmethod
    def _duration(cls, v: Any) -> float:
        return parse_duration(v)

    @field_validator("timeout")
    @classmethod
    def _positive(cls, v: float) -> float:
        if not 0 < v <= 300:
            raise ValueError("must be more than 0 and at most 300 seconds")
        return v

    @model_validator(mode="after")
    def _one_channel(self) -> "Alert":
        if (self.webhook is None) == (self.email is None):
            raise ValueError("an alert is either a webhook: URL or an email: {to, from, smtp}")
        if self.secret is not None and self.webhook is None:
            raise ValueError("secret signs webhook bodies; an e-mail alert has none")
        return self

    @property
    def channel(self) -> str:
        return "webhook" if self.webhook is not None else "email"

    @property
    def address(self) -> str:
        """Where deliveries go, as the outbox records it: the webhook URL, or the mail recipients."""
        if self.webhook is not None:
            return self.webhook
        assert self.email is not None
        return ", ".join(self.email.to)

    @property
    def label(self) -> str:
        """The alert as logs name it: its name, else where it goes with a webhook's path left
        out (a webhook URL is often its own credential)."""
        if self.name:
            return self.name
        if self.webhook is not None:
            return "webhook " + re.sub(r"^(https?://[^/?#]+).*$", r"\1/…", self.webhook)
        return "e-mail to " + self.address
