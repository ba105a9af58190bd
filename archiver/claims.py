"""Who archives a page that two candidates lead to (a redirect and its target, two feed links
to one story): the first to claim it. In one process the pass's own set decides; in a scaled
setup the shared frontier does (see FrontierClaims in scale/worker.py)."""

from __future__ import annotations

from typing import Protocol

from .discover import Candidate
from .outletrun import OutletRun


class Claims(Protocol):
    def kept_already(self, final_url: str, c: Candidate, run: OutletRun) -> bool:
        """Was this page kept already from another candidate?"""

    def claim(self, final_url: str, c: Candidate, run: OutletRun) -> bool:
        """Take the page for this candidate; False when another candidate has it."""


class PassClaims:
    """Claims within one process's pass of an outlet."""

    def kept_already(self, final_url: str, c: Candidate, run: OutletRun) -> bool:
        return final_url in run.archived

    def claim(self, final_url: str, c: Candidate, run: OutletRun) -> bool:
        if final_url in run.archived:
            return False
        run.archived.add(final_url)
        return True
