"""What every settings model shares: strict frozen models, ${ENV} values, the keys kept secret."""

from __future__ import annotations

import os
import re
from typing import Any

from pydantic import BaseModel, ConfigDict



# relative to the config file's folder, like any relative root: never the package's own
# folder, which after a plain `pip install` is inside site-packages
DEFAULT_STORAGE_ROOT = "storage"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# headers the fetcher sets or HTTP framing needs: configuring them would corrupt the exchange
_MANAGED_HEADERS = {"host", "content-length", "transfer-encoding", "connection", "accept-encoding",
                    "user-agent", "if-none-match", "if-modified-since", "upgrade", "te", "cookie"}
# config keys whose values are secrets: never echoed back in problems
SECRET_KEYS = ("headers", "cookies", "url", "broker",  # index.url, scale.broker may carry passwords
               "webhook", "secret", "password")  # a webhook URL often is its own credential


def from_env(value: Any) -> Any:
    """A value written "${NAME}" is the environment variable NAME's (a secret kept out of the
    file); ValueError naming NAME when it is not set. Any other value is itself."""
    if isinstance(value, str):
        m = re.fullmatch(r"\$\{(\w+)\}", value.strip())
        if m:
            if m.group(1) not in os.environ:
                raise ValueError(f"environment variable {m.group(1)} is not set")
            return os.environ[m.group(1)]
    return value
