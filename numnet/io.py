"""Writing files without ever leaving a half-written one, and where numnet keeps its files.

Everything numnet writes (models, records, caches, reports) goes through `atomic_write`, so an
interrupted or failed write leaves the previous file as it was.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import re
import stat
import tempfile
from pathlib import Path
from typing import Any


def numnet_home() -> Path:
    """$NUMNET_HOME, default ~/.cache/numnet: the MNIST cache, trained models, protocol results."""
    return Path(os.environ.get("NUMNET_HOME", Path.home() / ".cache" / "numnet"))


def models_dir() -> Path:
    """Where the training CLI saves models and the drawing apps look for them."""
    return numnet_home() / "models"


def _umask() -> int:
    umask = os.umask(0o022)
    os.umask(umask)
    return umask


# Read once at import: os.umask can only be read by setting it, which is not thread-safe.
NEW_FILE_MODE = 0o666 & ~_umask()


def _temp_prefix(path: Path) -> str:
    return f".{path.name}.numnet-{os.getpid()}-"


def _remove_stale_temp_files(path: Path) -> None:
    """Removes the temp files of earlier writes of `path` whose process is gone (killed mid-write):
    only names `atomic_write` gives `path`'s temp files, never another file's that looks alike."""
    own = re.compile(rf"\.{re.escape(path.name)}\.numnet-(\d+)-[A-Za-z0-9_]+\.tmp")
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.numnet-*.tmp"):
        match = own.fullmatch(tmp.name)
        if match and not _process_alive(int(match.group(1))):
            with contextlib.suppress(OSError):
                tmp.unlink()


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process: alive
        return True
    return True


@contextlib.contextmanager
def atomic_write(path: str | Path, mode: str = "wb"):
    """Yields a temp file beside `path`; it replaces `path` only once fully written and synced.

    The temp file's name carries the writer's process id, so a write killed midway leaves a file
    the next write of the same path recognises as stale and removes. A symbolic link is written
    through: its target gets the new contents.
    """
    path = Path(path)
    if path.is_symlink():  # write where the link points: the link stays a link
        path = path.resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temp_files(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=_temp_prefix(path), suffix=".tmp")
    try:
        os.chmod(tmp, NEW_FILE_MODE)  # mkstemp makes 0600; a saved file should read like any other
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def output_folder(path: Path, error: type[Exception]) -> Path:
    """`path` as a folder to write into, made if missing; `error` names why it cannot be one (a file
    stands there, or it cannot be made), before anything is computed for it."""
    if path.exists() and not path.is_dir():
        raise error(f"'{path}' is a file, not a folder: give --out a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as problem:
        raise error(f"cannot make the folder '{path}': {problem.strerror or problem}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise error(f"cannot write into the folder '{path}': Permission denied")
    return path


def write_json(path: str | Path, data: Any) -> None:
    with atomic_write(path, "w") as f:
        json.dump(data, f, indent=2)


def require_readable(path: Path, what: str, error: type[Exception], fix: str = "") -> None:
    """Raises `error` naming `what`, `path` and the real problem (missing, not allowed, a folder, a
    device or a pipe, which could be read without end or block forever) unless `path` is a regular
    file that can be opened for reading: readers never call a missing file corrupt."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise error(f"{what} '{path}' does not exist" + (f"; {fix}" if fix else "")) from None
    except OSError as problem:
        raise error(f"cannot read {what} '{path}': {problem.strerror or problem}") from None
    if stat.S_ISDIR(mode):
        raise error(f"cannot read {what} '{path}': Is a directory")
    if not stat.S_ISREG(mode):
        raise error(f"{what} '{path}' is not a regular file (a device, a pipe or a socket); numnet reads files")
    if reason := unreadable_reason(path):
        raise error(f"cannot read {what} '{path}': {reason}")


def read_text(path: Path, what: str, error: type[Exception], limit: int = 1 << 20, fix: str = "") -> str:
    """A regular UTF-8 text file of at most `limit` bytes, opened once and read no further than
    that, or `error` naming `what`, `path` and why not."""
    require_readable(path, what, error, fix)
    try:
        with open(path, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):  # replaced since it was looked at
                raise error(f"{what} '{path}' is not a regular file")
            data = f.read(limit + 1)
    except OSError as problem:
        raise error(f"cannot read {what} '{path}': {problem.strerror or problem}") from None
    if len(data) > limit:
        raise error(f"{what} '{path}' is larger than {limit:,} bytes, far more than any {what} holds")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as problem:
        raise error(f"{what} '{path}' is not UTF-8 text (byte {problem.start}): save it as UTF-8") from None


def unreadable_reason(path: str | Path) -> str | None:
    """Why `path` cannot be opened for reading ("No such file or directory", "Permission denied",
    "Is a directory"), or None when it can: readers name the real problem, not a corrupt file."""
    try:
        with open(path, "rb"):
            return None
    except OSError as error:
        return error.strerror or str(error)
