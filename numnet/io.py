"""Writing files without ever leaving a half-written one, and where numnet keeps its files.

Everything numnet writes (models, records, caches, reports) goes through `atomic_write`, so an
interrupted or failed write leaves the previous file as it was.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
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


def _remove_stale_temp_files(path: Path) -> None:
    """Removes the temp files of earlier writes of `path` whose process is gone (killed mid-write)."""
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        pid = tmp.name.removeprefix(f".{path.name}.").split(".", 1)[0]
        if pid.isdigit() and not _process_alive(int(pid)):
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
    the next write of the same path recognises as stale and removes.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temp_files(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp")
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


def write_json(path: str | Path, data: Any) -> None:
    with atomic_write(path, "w") as f:
        json.dump(data, f, indent=2)


def require_readable(path: Path, what: str, error: type[Exception], fix: str = "") -> None:
    """Raises `error` naming `what`, `path` and the real problem (missing, not allowed, a folder)
    unless the file can be opened for reading: readers never call a missing file corrupt."""
    if not path.exists():
        raise error(f"{what} '{path}' does not exist" + (f"; {fix}" if fix else ""))
    if reason := unreadable_reason(path):
        raise error(f"cannot read {what} '{path}': {reason}")


def unreadable_reason(path: str | Path) -> str | None:
    """Why `path` cannot be opened for reading ("No such file or directory", "Permission denied",
    "Is a directory"), or None when it can: readers name the real problem, not a corrupt file."""
    try:
        with open(path, "rb"):
            return None
    except OSError as error:
        return error.strerror or str(error)
