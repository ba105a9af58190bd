"""Finding the WARC file a capture row names, wherever it lives now.

A single machine writes every file to `<storage root>/warc/`. In a scaled setup a file starts
in its worker's spool and moves to the shared store once closed; the index's `warc_files`
table says where it is. Readers (`verify`, `dump`, `serve`, `export`, a worker reading an
earlier capture) ask here: first the local folders, then `warc_files`. A file shipped while
a reader held its old location is looked up again once, on the spot.
"""

from __future__ import annotations

from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING, Iterator

from . import stores
from .errors import StorageError
from .index import Index
from .stores import OPEN_SUFFIX, StoreSettings

if TYPE_CHECKING:
    from .settings import StorageSettings


def store_settings(storage: StorageSettings) -> StoreSettings:
    """StoreSettings from the config's `storage` section."""
    return StoreSettings(storage.ship_to, storage.s3_endpoint, storage.s3_region)


class WarcFiles:
    def __init__(self, folders: list[Path], index: Index | None, settings: StoreSettings):
        self.folders = folders
        self.index = index
        self.settings = settings
        self._recorded: dict[str, tuple[str, str]] = {}  # name -> (location, state)

    @classmethod
    def for_root(cls, root: Path, index: Index | None, settings: StoreSettings) -> "WarcFiles":
        return cls([root / "warc"], index, settings)

    def _local(self, base: str) -> Path | None:
        for folder in self.folders:
            p = folder / base
            if p.exists() or Path(str(p) + OPEN_SUFFIX).exists():
                return p
        return None

    def _refresh(self) -> None:
        if self.index is None:
            return
        # replaced whole, never changed in place: threads of one reader may share it
        self._recorded = {f.name: (f.location, f.state) for f in self.index.warc_files()}

    def location(self, name: str, fresh: bool = False) -> str:
        """Where the file `name` (as a capture row has it: 'warc/NAME' or 'NAME') is now."""
        base = Path(name).name
        local = self._local(base)
        if local is not None:
            return local.resolve().as_uri() if local.exists() else local.absolute().as_uri()
        if fresh or base not in self._recorded:
            self._refresh()
        hit = self._recorded.get(base)
        if hit is None:
            where = ", ".join(str(f) for f in self.folders)
            raise StorageError(f"WARC {base} is not in {where} and the index records no other location for it")
        return hit[0]

    @contextmanager
    def open_record(self, name: str, offset: int, length: int | None = None) -> Iterator[IO[bytes]]:
        """A stream at the record at `offset` of file `name`."""
        loc = self.location(name)
        with ExitStack() as stack:
            try:
                f = stack.enter_context(stores.open_record(loc, offset, length, self.settings))
            except (OSError, StorageError):
                # shipped (and its spool copy removed) since we looked it up
                newer = self.location(name, fresh=True)
                if newer == loc:
                    raise
                f = stack.enter_context(stores.open_record(newer, offset, length, self.settings))
            yield f

    def all_closed(self) -> list[tuple[str, str]]:
        """(name, location) of every closed WARC file, local or recorded, by name."""
        found: dict[str, str] = {}
        for folder in self.folders:
            for p in folder.glob("*.warc.gz"):
                found.setdefault(p.name, p.resolve().as_uri())
        self._refresh()
        for name, (loc, state) in self._recorded.items():
            if state in ("closed", "shipped"):
                found.setdefault(name, loc)
        return sorted(found.items())

