"""Find the files an ingest run reads: recursive, filtered, hidden and escaping links skipped."""

from __future__ import annotations

import fnmatch
import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rag_memory.errors import IngestError
from rag_memory.ingest.loaders import SUPPORTED_SUFFIXES

log = logging.getLogger(__name__)


@dataclass
class Discovery:
    """What a walk found.

    Attributes:
        files: Absolute paths of files to read, each once, in a stable order.
        roots: The absolute inputs; a file that vanished from under a root is removed by sync.
        skipped: Files passed over (unsupported type, link leaving the root), for the report.
        unreadable: Entries that look like files but cannot be ingested (a link that loops or
            points nowhere, a name that is not UTF-8), each with the reason: per-file errors.
    """

    files: list[Path] = field(default_factory=list)
    roots: list[Path] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    unreadable: list[tuple[str, str]] = field(default_factory=list)


def _matches(rel: str, patterns: Sequence[str]) -> bool:
    """A pattern with a '/' matches the path below the root; one without, any path component."""
    name = rel.rsplit("/", 1)[-1]
    for pat in patterns:
        pat = pat.rstrip("/")
        if "/" in pat:
            if fnmatch.fnmatch(rel, pat) or fnmatch.fnmatch(rel, pat + "/*"):
                return True
        elif fnmatch.fnmatch(name, pat) or any(fnmatch.fnmatch(part, pat) for part in rel.split("/")[:-1]):
            return True
    return False


def printable(path: str | Path) -> str:
    """A path as text that can be stored, printed and written as JSON: bytes that are not UTF-8
    (kept by Python as surrogates) are shown escaped, ``caf\\xe9.txt``."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def _utf8(path: str | Path) -> bool:
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def discover(
    paths: Iterable[str | Path], *, include: Sequence[str] = (), exclude: Sequence[str] = ()
) -> Discovery:
    """Walk the inputs.

    Args:
        paths: Files and folders. A folder is walked recursively; hidden names are skipped.
        include: If given, a file (its name, or its path below the root) must match one.
        exclude: Files and folders matching any of these are skipped.

    Raises:
        IngestError: An input does not exist or is neither a file nor a folder.
    """
    found = Discovery()
    by_real: dict[str, int] = {}  # real path -> index in found.files

    def add(path: Path, rel: str, explicit: bool, root_real: str | None = None) -> None:
        if not _utf8(path):
            # Chroma, SQLite and JSON all need text: such a name cannot be stored as it is.
            found.unreadable.append(
                (printable(path), "the file name is not valid UTF-8 (shown escaped); rename the file to ingest it")
            )
            return
        real = os.path.realpath(path)
        # A file reached through a link is judged by where it really lives too, so a link
        # cannot smuggle in what --exclude keeps out.
        rel_real = os.path.relpath(real, root_real).replace(os.sep, "/") if root_real else rel
        if exclude and (_matches(rel, exclude) or _matches(rel_real, exclude)):
            return
        if include and not explicit and not _matches(rel, include):
            return
        if path.suffix.lower() not in SUPPORTED_SUFFIXES and not explicit:
            found.skipped.append((path, "unsupported file type"))
            return
        if real in by_real:
            # The same file twice (through a link): keep the path that is not a link.
            if os.path.abspath(path) == real:
                found.files[by_real[real]] = path
            return
        by_real[real] = len(found.files)
        found.files.append(path)

    for raw in paths:
        given = Path(raw).expanduser()
        if not given.exists():
            raise IngestError(f"{raw}: no such file or folder. Check the path and run the command again.")
        root = Path(os.path.abspath(given))
        found.roots.append(root)
        if root.is_file():
            add(root, root.name, explicit=True)
            continue
        if not root.is_dir():
            raise IngestError(f"{raw}: not a regular file or folder")
        root_real = os.path.realpath(root)
        visited: set[str] = {root_real}
        for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
            rel_dir = os.path.relpath(dirpath, root)
            rel_dir = "" if rel_dir == "." else rel_dir.replace(os.sep, "/") + "/"
            keep = []
            for d in sorted(dirnames):
                full = os.path.join(dirpath, d)
                if d.startswith("."):
                    continue
                real = os.path.realpath(full)
                # A link that points back up the tree would loop; one that leaves the
                # root would ingest something the user did not name.
                if not _inside(real, root_real):
                    found.skipped.append((Path(full), "link leaves the folder"))
                    continue
                if real in visited:
                    continue
                if exclude and _matches(rel_dir + d, exclude):
                    continue
                visited.add(real)
                keep.append(d)
            dirnames[:] = keep
            for name in sorted(filenames):
                if name.startswith("."):
                    continue
                full = Path(dirpath) / name
                if full.is_symlink() and not _inside(os.path.realpath(full), root_real):
                    found.skipped.append((full, "link leaves the folder"))
                    continue
                if not full.is_file():
                    if full.is_symlink() and not full.exists():
                        found.unreadable.append(
                            (printable(full), "a symbolic link that loops or points to nothing; fix or remove it")
                        )
                    continue
                add(full, rel_dir + name, explicit=False, root_real=root_real)
    return found


def under_roots(path: str, roots: Sequence[Path]) -> bool:
    """Whether a recorded file belongs to one of the inputs (so sync may remove it)."""
    return any(_inside(path, str(root)) for root in roots)
