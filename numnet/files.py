"""Model files: one zip of .npy arrays plus a JSON header; written atomically, read without pickle.

Layout (an ordinary `.npz`): `header.json` (format, spec, backend, epochs done, array manifest),
`weights/NNN.npy` in Keras order, `optimizer/NNN.npy`. Every array's shape and dtype are checked
against the spec *before* it is read, so a hostile file cannot make numnet allocate or execute
anything it did not expect.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from numnet.errors import ModelFileError, NumnetError

FORMAT = "numnet-model"
VERSION = 1
MAX_HEADER_BYTES = 1 << 20
ALLOWED_DTYPES = {np.dtype("float32"), np.dtype("float64"), np.dtype("int64")}


def _umask() -> int:
    umask = os.umask(0o022)
    os.umask(umask)
    return umask


# Read once at import: os.umask can only be read by setting it, which is not thread-safe.
NEW_FILE_MODE = 0o666 & ~_umask()


@contextlib.contextmanager
def atomic_write(path: str | Path, mode: str = "wb"):
    """Yields a temp file beside `path`; it replaces `path` only once fully written and synced."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
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


def _write_array(archive: zipfile.ZipFile, name: str, array: np.ndarray) -> None:
    with archive.open(name, "w", force_zip64=True) as member:
        np.lib.format.write_array(member, np.asarray(array, order="C"), allow_pickle=False)


def save_model(model, path: str | Path) -> None:
    """numnet's own format, or a Keras file when the name ends in .keras or .h5."""
    from numnet.keras_files import is_keras_file, save_keras_file

    if is_keras_file(path):
        return save_keras_file(model, path)
    weights = model.get_weights()
    optimizer_state = model.optimizer.get_state()
    header = {
        "format": FORMAT,
        "version": VERSION,
        "spec": model.spec,
        "backend": model.backend,
        "epochs_done": model.epochs_done,
        "weights": [{"shape": list(w.shape), "dtype": str(w.dtype)} for w in weights],
        "optimizer": [{"shape": list(s.shape), "dtype": str(s.dtype)} for s in optimizer_state],
    }
    with atomic_write(path) as f, zipfile.ZipFile(f, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("header.json", json.dumps(header))
        for i, w in enumerate(weights):
            _write_array(archive, f"weights/{i:03d}.npy", w)
        for i, s in enumerate(optimizer_state):
            _write_array(archive, f"optimizer/{i:03d}.npy", s)


def _read_array(archive: zipfile.ZipFile, name: str, shape: tuple, path: Path) -> np.ndarray:
    try:
        with archive.open(name) as member:
            version = np.lib.format.read_magic(member)
            if version == (1, 0):
                header = np.lib.format.read_array_header_1_0(member)
            elif version == (2, 0):
                header = np.lib.format.read_array_header_2_0(member)
            else:
                raise ModelFileError(f"model file '{path}': array {name} has npy version {version}")
            stored_shape, fortran, dtype = header
            if dtype not in ALLOWED_DTYPES or fortran:
                raise ModelFileError(f"model file '{path}': array {name} has unsupported dtype {dtype}")
            if tuple(stored_shape) != tuple(shape):
                raise ModelFileError(
                    f"model file '{path}': array {name} has shape {stored_shape}, but its spec needs {tuple(shape)}"
                )
            data = member.read(int(np.prod(shape)) * dtype.itemsize)
        return np.frombuffer(data, dtype=dtype).reshape(shape).copy()
    except KeyError:
        raise ModelFileError(f"model file '{path}' is missing array {name}; re-save it or train again") from None
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as error:
        if isinstance(error, NumnetError):
            raise
        raise ModelFileError(
            f"model file '{path}' is corrupt (array {name}: {error}); re-save it or train again"
        ) from None


def read_header(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    with _open_archive(path) as archive:
        return _header(archive, path)


def _open_archive(path: Path) -> zipfile.ZipFile:
    if not path.is_file():
        raise ModelFileError(f"model file '{path}' does not exist; train one with `python -m numnet.train`")
    try:
        return zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        size = path.stat().st_size
        raise ModelFileError(
            f"model file '{path}' is truncated or not a numnet model ({size:,} bytes, no valid zip "
            "directory); re-save it or train again"
        ) from None


def _header(archive: zipfile.ZipFile, path: Path) -> dict[str, Any]:
    try:
        info = archive.getinfo("header.json")
    except KeyError:
        raise ModelFileError(f"'{path}' is not a numnet model file (no header.json)") from None
    if info.file_size > MAX_HEADER_BYTES:
        raise ModelFileError(f"model file '{path}' has an oversized header ({info.file_size:,} bytes)")
    try:
        header = json.loads(archive.read(info))
    except (zipfile.BadZipFile, ValueError) as error:
        raise ModelFileError(f"model file '{path}' has a corrupt header: {error}") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise ModelFileError(f"'{path}' is not a numnet model file")
    if header.get("version") != VERSION:
        raise ModelFileError(
            f"model file '{path}' has format version {header.get('version')}; this numnet reads {VERSION}"
        )
    return header


def load_model(path: str | Path, backend: str | None = None):
    """Builds the saved spec on `backend` (default: the one it was saved from) and loads its state."""
    from numnet import build
    from numnet.keras_files import is_keras_file, load_keras_file

    if is_keras_file(path):
        return load_keras_file(path, backend=backend or "numpy")
    path = Path(path)
    with _open_archive(path) as archive:
        header = _header(archive, path)
        try:
            model = build(header["spec"], backend=backend or header.get("backend", "numpy"))
        except NumnetError as error:
            raise ModelFileError(f"model file '{path}' holds an invalid spec: {error}") from None
        expected = [w.shape for w in model.get_weights()]
        if len(header.get("weights", [])) != len(expected):
            raise ModelFileError(
                f"model file '{path}' has {len(header.get('weights', []))} weight arrays; "
                f"its spec needs {len(expected)}"
            )
        weights = [_read_array(archive, f"weights/{i:03d}.npy", shape, path) for i, shape in enumerate(expected)]
        model.set_weights(weights)
        optimizer_shapes = [s.shape for s in model.optimizer.get_state()]
        if len(header.get("optimizer", [])) == len(optimizer_shapes):
            state = [
                _read_array(archive, f"optimizer/{i:03d}.npy", shape, path) for i, shape in enumerate(optimizer_shapes)
            ]
            model.optimizer.set_state(state)
        model.epochs_done = int(header.get("epochs_done", 0))
    return model
