"""Model files: one zip of .npy arrays plus a JSON header; written atomically, read without pickle.

Layout (an ordinary `.npz`): `header.json` (format, spec, backend, epochs done, array manifest,
and for a run's checkpoint the run's settings and history), `weights/NNN.npy` in Keras order,
`optimizer/NNN.npy`. Readers return data and never build: `numnet.load` reads the header, builds
the spec, then asks `ModelFile.arrays` for arrays of exactly the shapes it needs, and each array's
shape and dtype are checked *before* it is read, so a hostile file cannot make numnet allocate or
execute anything it did not expect.
"""

from __future__ import annotations

import json
import os
import tokenize
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from numnet.errors import ModelFileError, NumnetError
from numnet.io import atomic_write, require_readable

FORMAT = "numnet-model"
VERSION = 1
MAX_HEADER_BYTES = 1 << 20
ALLOWED_DTYPES = {np.dtype("float32"), np.dtype("float64"), np.dtype("int64")}
# What reading a damaged zip can raise, besides BadZipFile: a cut-off or garbled deflate stream,
# an unknown compression method, a member that ends early.
ZIP_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, OSError, ValueError)


def member_info(archive: zipfile.ZipFile, name: str, path: Path, what: str) -> zipfile.ZipInfo:
    """A zip member's entry (KeyError if missing), refused if encrypted: reading it would ask for a
    password (zipfile's RuntimeError), and numnet never writes one."""
    info = archive.getinfo(name)
    if info.flag_bits & 0x1:
        raise ModelFileError(f"{what} '{path}': {name} is encrypted; numnet reads only unencrypted files")
    return info


def _write_array(archive: zipfile.ZipFile, name: str, array: np.ndarray) -> None:
    with archive.open(name, "w", force_zip64=True) as member:
        np.lib.format.write_array(member, np.asarray(array, order="C"), allow_pickle=False)


def write_model(
    path: str | Path,
    spec: dict[str, Any],
    backend: str,
    epochs_done: int,
    weights: list[np.ndarray],
    optimizer_state: list[np.ndarray],
    run: dict[str, Any] | None = None,
    random_state: dict[str, Any] | None = None,
) -> None:
    """Writes numnet's format atomically; `run` (settings and history of a run) and `random_state`
    (where the model's generators stand) go into the header."""
    header = {
        "format": FORMAT,
        "version": VERSION,
        "spec": spec,
        "backend": backend,
        "epochs_done": epochs_done,
        "weights": [{"shape": list(w.shape), "dtype": str(w.dtype)} for w in weights],
        "optimizer": [{"shape": list(s.shape), "dtype": str(s.dtype)} for s in optimizer_state],
    }
    if run is not None:
        header["run"] = run
    if random_state is not None:
        header["random_state"] = random_state
    with atomic_write(path) as f, zipfile.ZipFile(f, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("header.json", json.dumps(header))
        for i, w in enumerate(weights):
            _write_array(archive, f"weights/{i:03d}.npy", w)
        for i, s in enumerate(optimizer_state):
            _write_array(archive, f"optimizer/{i:03d}.npy", s)


def _npy_header(member: Any, name: str, path: Path) -> tuple:
    """(shape, fortran order, dtype) of an .npy member; NumPy parses its header as a Python literal,
    so a damaged one can raise a SyntaxError or a tokenizer error: all of them name the file."""
    try:
        version = np.lib.format.read_magic(member)
        if version == (1, 0):
            return np.lib.format.read_array_header_1_0(member)
        if version == (2, 0):
            return np.lib.format.read_array_header_2_0(member)
    except (SyntaxError, tokenize.TokenError, TypeError, ValueError, EOFError, OSError) as error:
        raise ModelFileError(f"model file '{path}' is corrupt (the header of array {name}: {error})") from None
    raise ModelFileError(f"model file '{path}': array {name} has npy version {version}")


def _read_array(archive: zipfile.ZipFile, name: str, shape: tuple, path: Path) -> np.ndarray:
    try:
        with archive.open(member_info(archive, name, path, "model file")) as member:
            header = _npy_header(member, name, path)
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
    except ZIP_ERRORS as error:
        if isinstance(error, NumnetError):
            raise
        raise ModelFileError(
            f"model file '{path}' is corrupt (array {name}: {error}); re-save it or train again"
        ) from None


class ModelFile:
    """A numnet model file, opened once: its header and then its arrays come from the same open
    file, so a file replaced meanwhile (an atomic save by another process) can never pair one
    file's header with another's weights."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        require_readable(self.path, "model file", ModelFileError, "train one with `python -m numnet.train`")
        self.file = open(self.path, "rb")  # closed by close(), with the archive
        try:
            self.archive = zipfile.ZipFile(self.file)
        except ZIP_ERRORS:
            size = os.fstat(self.file.fileno()).st_size
            self.file.close()
            raise ModelFileError(
                f"model file '{self.path}' is truncated or not a numnet model ({size:,} bytes, no valid zip "
                "directory); re-save it or train again"
            ) from None
        try:
            self.header = _header(self.archive, self.path)
        except BaseException:
            self.close()
            raise

    def arrays(
        self, weight_shapes: list[tuple], optimizer_shapes: list[tuple]
    ) -> tuple[list[np.ndarray], list[np.ndarray] | None]:
        """The weights and optimizer state, each array checked against the shape its spec needs before
        it is read; the optimizer state is None when the file holds none for this optimizer."""
        declared = len(self.header.get("weights", []))
        if declared != len(weight_shapes):
            raise ModelFileError(
                f"model file '{self.path}' has {declared} weight arrays; its spec needs {len(weight_shapes)}"
            )
        weights = [_read_array(self.archive, f"weights/{i:03d}.npy", shape, self.path)
                   for i, shape in enumerate(weight_shapes)]  # fmt: skip
        if len(self.header.get("optimizer", [])) != len(optimizer_shapes):
            return weights, None
        state = [_read_array(self.archive, f"optimizer/{i:03d}.npy", shape, self.path)
                 for i, shape in enumerate(optimizer_shapes)]  # fmt: skip
        return weights, state

    def close(self) -> None:
        self.archive.close()
        self.file.close()

    def __enter__(self) -> ModelFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_header(path: str | Path) -> dict[str, Any]:
    with ModelFile(path) as saved:
        return saved.header


def _header(archive: zipfile.ZipFile, path: Path) -> dict[str, Any]:
    try:
        info = member_info(archive, "header.json", path, "model file")
    except KeyError:
        raise ModelFileError(f"'{path}' is not a numnet model file (no header.json)") from None
    if info.file_size > MAX_HEADER_BYTES:
        raise ModelFileError(f"model file '{path}' has an oversized header ({info.file_size:,} bytes)")
    try:
        header = json.loads(archive.read(info))
    except ZIP_ERRORS as error:
        raise ModelFileError(f"model file '{path}' has a corrupt header: {error}") from None
    except RecursionError:
        raise ModelFileError(f"model file '{path}' has a header nested too deeply to be a model") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise ModelFileError(f"'{path}' is not a numnet model file")
    for key in ("weights", "optimizer"):
        if not isinstance(header.get(key, []), list):
            raise ModelFileError(f"model file '{path}' has a corrupt header: '{key}' is not a list")
    if header.get("version") != VERSION:
        raise ModelFileError(
            f"model file '{path}' has format version {header.get('version')}; this numnet reads {VERSION}"
        )
    return header
