"""The page's static files (its script and style sheet, and the vendored htmx and
uPlot), read from the package once and served from memory with an ETag."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib.resources import files
from importlib.resources.abc import Traversable

CONTENT_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".txt": "text/plain; charset=utf-8",
    ".md": "text/plain; charset=utf-8",
}


@dataclass(frozen=True, slots=True)
class StaticFile:
    """One file: its bytes, content type and entity tag."""

    body: bytes
    content_type: str
    etag: str


class StaticFiles:
    """Every file under ``segue/web/static``, by its path there (``vendor/htmx.min.js``)."""

    def __init__(self, by_name: dict[str, StaticFile]) -> None:
        self._by_name = by_name

    @classmethod
    def from_package(cls) -> StaticFiles:
        """Read the files shipped with the package."""
        root = files("segue.web").joinpath("static")
        return cls(dict(_walk(root, "")))

    def get(self, name: str) -> StaticFile | None:
        """The file called ``name``; None for anything else (no path is ever opened)."""
        return self._by_name.get(name)


def _walk(folder: Traversable, prefix: str) -> list[tuple[str, StaticFile]]:
    found = []
    for entry in folder.iterdir():
        if entry.is_dir():
            found += _walk(entry, f"{prefix}{entry.name}/")
            continue
        suffix = entry.name[entry.name.rfind(".") :]
        if suffix not in CONTENT_TYPES:
            continue
        body = entry.read_bytes()
        etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
        found.append((prefix + entry.name, StaticFile(body, CONTENT_TYPES[suffix], etag)))
    return found
