"""The ragmem home is private to its owner: folders 0700, files 0600.

Chat history, memories and documents live under the home, so every folder ragmem makes there
is created ``0700`` and every file ``0600``, whatever the process's umask. A home that already
exists and that other users can read is left as it is (it may be shared on purpose) but named
in one warning per process, with the command that makes it private.
"""

from __future__ import annotations

import logging
import os
import stat
import threading
from pathlib import Path

log = logging.getLogger(__name__)

__all__ = ["DIR_MODE", "FILE_MODE", "private_dir", "private_file", "tighten_tree", "write_private"]

DIR_MODE = 0o700
FILE_MODE = 0o600

_warned: set[Path] = set()
_warned_lock = threading.Lock()


def private_dir(path: Path) -> Path:
    """Make ``path`` (and any missing parents) a folder only its owner can use; return it.

    Folders that already exist keep their mode; one readable by others gets a warning
    (one per process).
    """
    path = Path(path)
    missing: list[Path] = []
    probe = path
    while not probe.exists():
        missing.append(probe)
        if probe.parent == probe:
            break
        probe = probe.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=DIR_MODE)
        except FileExistsError:  # made meanwhile by another process
            continue
        os.chmod(folder, DIR_MODE)  # mkdir's mode is masked by the umask
    if not missing:
        warn_if_shared(path)
    return path


def warn_if_shared(path: Path) -> None:
    """Warn (once per process) when others may read ``path``."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return
    if not stat.S_ISDIR(mode) or not mode & 0o077:
        return
    with _warned_lock:
        if _warned:  # one warning per process is enough to act on
            return
        _warned.add(path.resolve())
    log.warning(
        "ragmem's data folder %s can be read by other users on this machine (mode %s); make the home"
        " private with: chmod -R go-rwx %s",
        path,
        stat.filemode(mode),
        _quote(str(path)),
    )


def private_file(path: Path) -> Path:
    """Create ``path`` empty with mode 0600 if it does not exist (its folder made private); return it.

    SQLite keeps an existing file's mode and gives its -wal and -shm files the same mode, so
    creating the database file this way first keeps all three private.
    """
    path = Path(path)
    private_dir(path.parent)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileExistsError:
        return path
    os.close(fd)
    os.chmod(path, FILE_MODE)
    return path


def write_private(path: Path, text: str) -> None:
    """Write a small text file (a config, a key list) readable only by its owner, atomically."""
    path = Path(path)
    private_dir(path.parent)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def tighten_tree(root: Path) -> None:
    """Take group and other permissions off everything under ``root`` that ragmem owns.

    For files another library writes with the umask's mode (Chroma's segment files).
    """
    root = Path(root)
    if not root.is_dir():
        return
    uid = os.getuid() if hasattr(os, "getuid") else None
    for folder, dirs, files in os.walk(root):
        for name in [*dirs, *files]:
            p = os.path.join(folder, name)
            try:
                st = os.lstat(p)
                if stat.S_ISLNK(st.st_mode) or not st.st_mode & 0o077 or (uid is not None and st.st_uid != uid):
                    continue
                os.chmod(p, stat.S_IMODE(st.st_mode) & ~0o077)
            except OSError:  # vanished or not ours: nothing to tighten
                continue


def _quote(text: str) -> str:
    import shlex

    return shlex.quote(text)
