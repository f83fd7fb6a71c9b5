"""Keras model files in and out: `.keras` (Keras 3) and legacy `.h5`, read without TensorFlow.

Reading needs only JSON and h5py: the architecture comes from the file's config (nested
Sequential blocks are flattened) through each numnet layer's `from_keras`, the weights from its
HDF5 datasets in Keras order, and a layer or option numnet does not have is refused by name.
Readers return data (spec, weights); `numnet.load` builds. Writing needs only h5py too: the
configs come from the same mapping, in the layout Keras 3 writes, so `keras.models.load_model`
reads numnet's files as its own.
"""

from __future__ import annotations

import datetime
import io
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from numnet import specs
from numnet.errors import ModelFileError, NumnetError, SpecError
from numnet.formats.npz import ZIP_ERRORS, member_info
from numnet.io import atomic_write, require_readable
from numnet.keras.mapping import (
    LAYERS_MODULE,
    layer_entries,
    loss_config,
    loss_from_keras,
    optimizer_config,
    optimizer_from_keras,
)
from numnet.layers import (
    KERAS_CLASSES,
    KerasMismatch,
    Layer,
    check_spec,
    layer_from_config,
    outputs_logits,
    snake_case,
    weight_shapes,
)

KERAS_SUFFIXES = (".keras", ".h5", ".hdf5")
ZIP_SIGNATURE, HDF5_SIGNATURE = b"PK\x03\x04", b"\x89HDF\r\n\x1a\n"
LFS_POINTER = b"version https://git-lfs.github.com/spec/"
MAX_NESTING = 16  # Sequential blocks inside Sequential blocks (the seed CNN nests one level)


def is_keras_file(path: str | Path) -> bool:
    return Path(path).suffix.lower() in KERAS_SUFFIXES


class _Reader:
    """Turns one Keras config tree into numnet layer configs, naming the file in every error."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, message: str) -> ModelFileError:
        return ModelFileError(f"Keras file '{self.path}': {message}")

    def layer(self, entry: dict) -> dict:
        """numnet config for one Keras layer entry, through the numnet layer's own mapping."""
        kind, config = entry.get("class_name"), entry.get("config", {})
        name = config.get("name", kind)
        if kind not in KERAS_CLASSES:
            raise self.fail(f"layer '{name}' is a {kind}, which numnet does not have")
        try:
            KERAS_CLASSES[kind].check_keras_keys(config)
            layer = KERAS_CLASSES[kind].from_keras(config)
            layer_from_config(layer)  # its values checked here, where the error can name the layer
            return layer
        except KerasMismatch as mismatch:
            raise self.fail(f"layer '{name}' uses {mismatch}, which numnet does not support") from None
        except SpecError as error:
            raise self.fail(f"layer '{name}': {error}") from None
        except (KeyError, TypeError, ValueError, IndexError, OverflowError) as error:
            raise self.fail(f"layer '{name}' has an unreadable config ({type(error).__name__}: {error})") from None

    def entries(self, model_config: Any) -> list:
        """The model's layer entries in the order data flows through them: a Sequential's list (Keras
        <= 2.1 writes the list as the whole config), or a Functional model's layers when they form a
        single chain from its input to its output."""
        kind = model_config.get("class_name") if isinstance(model_config, dict) else type(model_config).__name__
        config = model_config.get("config", {}) if isinstance(model_config, dict) else None
        if kind == "Sequential":
            entries = (
                config if isinstance(config, list) else config.get("layers", []) if isinstance(config, dict) else None
            )
        elif kind in ("Functional", "Model"):
            entries = self.chain(config)
        else:
            raise self.fail(f"the model is a {kind}; numnet reads Sequential models and Functional chains")
        if not isinstance(entries, list) or not all(self.well_formed(entry) for entry in entries):
            raise self.fail("its model config does not hold its layers as a list, each with a class name and a config")
        return entries

    def chain(self, config: Any) -> list:
        """A Functional model's layers from its one input to its one output, each fed by the one before:
        anything else (branches, merges, shared layers, several inputs) is a graph numnet cannot chain."""
        entries = config.get("layers") if isinstance(config, dict) else None
        if not isinstance(entries, list) or not all(isinstance(e, dict) and isinstance(e.get("name"), str)
                                                    for e in entries):  # fmt: skip
            raise self.fail("its Functional config does not list its layers by name")
        feeds = {entry["name"]: _inbound_layers(entry) for entry in entries}
        inputs = [entry["name"] for entry in entries if entry.get("class_name") == "InputLayer"]
        outputs = _layer_refs(config.get("output_layers"))
        if len(inputs) != 1 or len(outputs) != 1:
            raise self.fail(f"the model is a graph numnet cannot chain: {len(inputs)} inputs, {len(outputs)} outputs")
        chain = [inputs[0]]
        while chain[-1] != outputs[0] and len(chain) <= len(entries):
            consumers = [name for name, fed in feeds.items() if chain[-1] in fed]
            if len(consumers) != 1 or feeds[consumers[0]] != [chain[-1]]:
                takes = f", which takes {feeds[consumers[0]]}" if len(consumers) == 1 else ""
                raise self.fail(f"the model is a graph numnet cannot chain: layer '{chain[-1]}' feeds "
                                f"{consumers or 'nothing'}{takes}")  # fmt: skip
            chain.append(consumers[0])
        if len(chain) != len(entries):
            off = sorted(set(feeds) - set(chain))
            raise self.fail(f"the model is a graph numnet cannot chain: {off} lie off the path from its input")
        by_name = {entry["name"]: entry for entry in entries}
        return [by_name[name] for name in chain]

    def flatten(self, model_config: dict, h5_prefix: str = "layers", depth: int = 0) -> tuple[list, list, list | None]:
        """(numnet layer configs, where each weighted layer's weights may lie in a .keras file, input shape)."""
        if depth > MAX_NESTING:
            raise self.fail(f"Sequential models are nested more than {MAX_NESTING} deep")
        entries = self.entries(model_config)
        config = model_config.get("config") if isinstance(model_config.get("config"), dict) else {}
        layers, weight_paths, input_shape = [], [], None
        counts: dict[str, int] = {}
        for entry in entries:
            kind = entry.get("class_name")
            inner = entry.get("config", {})
            shape = inner.get("batch_shape") or inner.get("batch_input_shape")
            if input_shape is None and isinstance(shape, list | tuple):
                input_shape = list(shape[1:])
            if kind == "InputLayer":
                continue
            base = snake_case(kind)
            n = counts.get(base, 0)
            counts[base] = n + 1
            h5_name = f"{h5_prefix}/{base if n == 0 else f'{base}_{n}'}"
            if kind == "Sequential":
                inner_layers, inner_paths, inner_shape = self.flatten(entry, f"{h5_name}/layers", depth + 1)
                layers += inner_layers
                weight_paths += inner_paths
                input_shape = input_shape or inner_shape
                continue
            layers.append(self.layer(entry))
            if KERAS_CLASSES[kind].weight_names:
                # Keras 3 names a layer's group by its class; tf.keras 2.13-2.14 by its place among
                # the weighted layers (`_layer_checkpoint_dependencies/layer_with_weights-K`).
                legacy = f"_layer_checkpoint_dependencies/layer_with_weights-{len(weight_paths)}"
                weight_paths.append((h5_name, legacy) if depth == 0 else (h5_name,))
        if input_shape is None:
            build_config = model_config.get("build_config")
            build = config.get("build_input_shape") or (build_config or {}).get("input_shape")
            input_shape = list(build[1:]) if isinstance(build, list | tuple) else None
        return layers, weight_paths, input_shape

    @staticmethod
    def well_formed(entry: Any) -> bool:
        """A layer entry as Keras writes one: {"class_name": str, "config": {...}}."""
        return (isinstance(entry, dict) and isinstance(entry.get("class_name"), str)
                and isinstance(entry.get("config", {}), dict))  # fmt: skip

    def spec(self, model_config: dict, compile_config: Any) -> tuple[specs.Spec, list[Layer], list[str]]:
        """The checked spec, its layers and where each weighted layer's weights lie in a .keras file."""
        layers, weight_paths, input_shape = self.flatten(model_config)
        if not input_shape or any(not isinstance(d, int) for d in input_shape):
            raise self.fail(f"cannot tell the model's input shape (found {input_shape})")
        if len(input_shape) == 2:  # a (28, 28) image input: numnet keeps the channel axis explicit
            input_shape = [*input_shape, 1]
        compiled = compile_config if isinstance(compile_config, dict) else {}
        loss = loss_from_keras(compiled.get("loss"))
        # .keras files name the optimizer `optimizer`, legacy .h5 files `optimizer_config`
        optimizer = optimizer_from_keras(compiled.get("optimizer") or compiled.get("optimizer_config"))
        config = model_config.get("config")
        name = config.get("name") if isinstance(config, dict) else None
        spec = {
            "name": name if isinstance(name, str) and specs.SAFE_NAME.fullmatch(name) else "keras_model",
            "input_shape": input_shape,
            "layers": layers,
            "loss": loss or "sparse_categorical_crossentropy",
            "optimizer": optimizer or {"type": "adam"},
        }
        try:
            return *check_spec(spec), weight_paths
        except NumnetError as error:
            raise self.fail(str(error)) from None


def _layer_refs(value: Any) -> list[str]:
    """The layer names in a Functional config's `output_layers`: [name, 0, 0], or a list of those."""
    if isinstance(value, list) and len(value) == 3 and isinstance(value[0], str):
        return [value[0]]
    if not isinstance(value, list):
        return []
    return [ref[0] for ref in value if isinstance(ref, list) and ref and isinstance(ref[0], str)]


def _inbound_layers(entry: dict) -> list[str]:
    """The layers feeding a Functional layer entry, from its inbound nodes in Keras 2's form
    ([[[name, node, tensor, kwargs]]]) or Keras 3's ({"args": [keras tensors with a keras_history]});
    a layer called more than once is marked so that no chain takes it."""
    nodes = entry.get("inbound_nodes") or []
    if not isinstance(nodes, list) or len(nodes) > 1:
        return ["<called more than once>"]
    names: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            inner = value.get("config")
            history = inner.get("keras_history") if isinstance(inner, dict) else None
            if isinstance(history, list) and history and isinstance(history[0], str):
                names.append(history[0])
                return
            for child in value.values():
                walk(child)
        elif isinstance(value, list):
            if len(value) == 4 and isinstance(value[0], str) and isinstance(value[1], int):
                names.append(value[0])  # Keras 2: [layer name, node index, tensor index, kwargs]
                return
            for child in value:
                walk(child)

    for node in nodes:
        walk(node)
    return names


def _h5py():
    try:
        import h5py
    except ImportError as error:  # pragma: no cover - h5py is a dependency
        raise ModelFileError("reading Keras files needs h5py: pip install h5py") from error
    return h5py


def _json(text: Any, path: Path, what: str) -> dict:
    try:
        value = json.loads(text.decode() if isinstance(text, bytes) else text)
    except (ValueError, UnicodeDecodeError) as error:
        raise ModelFileError(f"Keras file '{path}' has a corrupt {what}: {error}") from None
    except RecursionError:
        raise ModelFileError(f"Keras file '{path}' has a {what} nested too deeply to be a model") from None
    if not isinstance(value, dict):
        raise ModelFileError(f"Keras file '{path}' has a corrupt {what}")
    return value


MAX_CONFIG_BYTES = 1 << 20  # a Keras model config is a few kB; this is far above any real one


def _inside(h5: Any, name: str, path: Path) -> Any:
    """The group or dataset `name` below `h5`, or None; reached only through the file's own (hard)
    links: an external link, a soft link (which may loop) or a dataset whose bytes lie in another file
    (external raw storage, a virtual dataset) could make numnet read another file's bytes as weights."""
    h5py = _h5py()
    item = h5
    for part in (p for p in name.split("/") if p):
        link = item.get(part, getlink=True) if isinstance(item, h5py.Group) else None
        if link is None:
            return None
        if not isinstance(link, h5py.HardLink):
            raise ModelFileError(f"Keras file '{path}' stores '{name}' behind a {type(link).__name__}; numnet reads "
                                 "only what a file holds itself")  # fmt: skip
        item = item[part]
    if isinstance(item, h5py.Dataset) and (item.is_virtual or item.external):
        raise ModelFileError(f"Keras file '{path}': dataset '{name}' keeps its bytes in another file; numnet reads "
                             "only what a file holds itself")  # fmt: skip
    return item


def _dataset(h5: Any, name: str, path: Path, shape: tuple[int, ...] | None, kinds: str = "f") -> np.ndarray:
    """One weight, its declared shape checked against the spec's before a byte of it is read."""
    h5py = _h5py()
    item = _inside(h5, name, path)
    if not isinstance(item, h5py.Dataset):
        raise ModelFileError(f"Keras file '{path}' is missing weight '{name}'")
    if item.dtype.kind not in kinds:
        raise ModelFileError(f"Keras file '{path}': weight '{name}' has dtype {item.dtype}")
    if shape is None:
        raise ModelFileError(f"Keras file '{path}' holds more weights than its architecture needs (at '{name}')")
    if tuple(item.shape) != tuple(shape):
        raise ModelFileError(
            f"Keras file '{path}': weight '{name}' declares shape {tuple(item.shape)}; its architecture needs {shape}"
        )
    return np.asarray(item[()])


def _attribute_json(h5: Any, name: str, path: Path) -> dict | None:
    """A JSON attribute (model_config, training_config), its size checked before it is read."""
    if name not in h5.attrs:
        return None
    attribute = _h5py().h5a.open(h5.id, name.encode())
    oversized = ModelFileError(f"Keras file '{path}' has an oversized {name} (over {MAX_CONFIG_BYTES:,} bytes)")
    if attribute.get_space().get_simple_extent_npoints() != 1:
        raise ModelFileError(f"Keras file '{path}': its {name} is not one string")
    if attribute.get_storage_size() > MAX_CONFIG_BYTES:
        raise oversized
    # A variable-length string stores only a reference here: its text lies elsewhere in the file,
    # so its size is known once read (one string, no larger than the file).
    value = h5.attrs[name]
    if isinstance(value, bytes | str) and len(value) > MAX_CONFIG_BYTES:
        raise oversized
    return _json(value, path, name)


def _member(archive: zipfile.ZipFile, name: str, limit: int, path: Path) -> bytes:
    """A zip member read only if its declared size is within `limit`, and never past it."""
    info = member_info(archive, name, path, "Keras file")
    if info.file_size > limit:
        raise ModelFileError(f"Keras file '{path}': {name} declares {info.file_size:,} bytes; at most {limit:,} fit")
    with archive.open(info) as member:
        data = member.read(limit + 1)
    if len(data) > limit:
        raise ModelFileError(f"Keras file '{path}': {name} is larger than it declares")
    return data


@dataclass
class KerasFile:
    """What a Keras file holds, in numnet's terms: the spec, the weights (Keras order), and for a
    `.keras` file the optimizer's state (iterations, then each parameter's slots) and learning rate."""

    spec: specs.Spec
    weights: list[np.ndarray]
    optimizer_state: list[np.ndarray] | None = None
    learning_rate: float | None = None


def read_keras_file(path: str | Path) -> KerasFile:
    """A `.keras` or `.h5` file's spec, weights and (where the file carries them) optimizer state.

    The architecture is read and checked first (its size included, see `check_spec`), then
    each weight's declared shape against it before the weight is read: a small hostile file cannot
    make numnet allocate more than its architecture needs.
    """
    path = Path(path)
    require_readable(path, "Keras file", ModelFileError)
    with open(path, "rb") as f:  # opened once: the content chooses the reader, which reads this same file
        head = f.read(len(LFS_POINTER))
        f.seek(0)
        if head.startswith(LFS_POINTER):
            raise ModelFileError(f"Keras file '{path}' is a Git LFS pointer ({path.stat().st_size} bytes), not the "
                                 "model itself: fetch it with `git lfs pull` in its repository")  # fmt: skip
        if head.startswith(ZIP_SIGNATURE):  # by content, whatever the name says
            read = _read_keras_zip
        elif head.startswith(HDF5_SIGNATURE):
            read = _read_legacy_h5
        else:
            raise ModelFileError(f"Keras file '{path}' is neither a .keras archive (zip) nor an HDF5 file "
                                 f"(it starts with {head[:8]!r}); re-save it from Keras")  # fmt: skip
        try:
            return read(f, _Reader(path))
        except NumnetError:
            raise
        except (*ZIP_ERRORS, KeyError) as error:
            raise ModelFileError(f"Keras file '{path}' is truncated or corrupt ({error})") from None


def _read_keras_zip(file: BinaryIO, reader: _Reader) -> KerasFile:
    """Keras 3's `.keras`: a zip of config.json and model.weights.h5 (layers/<name>/vars/<i>)."""
    path = reader.path
    with zipfile.ZipFile(file) as archive:
        config = _json(_member(archive, "config.json", MAX_CONFIG_BYTES, path), path, "config.json")
        spec, layers, weight_paths = reader.spec(config, config.get("compile_config"))
        shapes = weight_shapes(layers)
        # The weights, two optimizer slots each, in float64 at most, and HDF5's own overhead.
        limit = 3 * 8 * sum(int(np.prod(s)) for s in shapes) + (16 << 20)
        weights_bytes = _member(archive, "model.weights.h5", limit, path)
    expected, weights = iter(shapes), []
    with _h5py().File(io.BytesIO(weights_bytes), "r") as h5:
        for places in weight_paths:
            layer_path = next((place for place in places if _inside(h5, f"{place}/vars", path)), places[0])
            count = len(_inside(h5, f"{layer_path}/vars", path) or {})
            if count == 0:
                raise reader.fail(f"no weights stored for layer '{places[0]}'")
            weights += [_dataset(h5, f"{layer_path}/vars/{i}", path, next(expected, None)) for i in range(count)]
        return KerasFile(spec, weights, *_optimizer_variables(h5, spec, layers, path))


def _optimizer_variables(h5: Any, spec: specs.Spec, layers: list[Layer], path: Path) -> tuple[list | None, Any]:
    """(iterations and each parameter's slots, the learning rate) of the optimizer Keras saved beside
    the weights, as numnet's optimizer keeps them; (None, None) where the file holds none in the
    layout of the spec's optimizer (Keras: iterations, the rate unless scheduled, then the slots)."""
    variables = _inside(h5, "optimizer/vars", path)
    scheduled = isinstance(spec["optimizer"]["learning_rate"], dict)
    slots = [shape for shape in weight_shapes(layers, trainable_only=True) for _ in range(2)]
    slots = slots if spec["optimizer"]["type"] == "adam" else []
    shapes = [(), *([] if scheduled else [()]), *slots]
    if variables is None or len(variables) != len(shapes):
        return None, None
    values = [_dataset(variables, str(i), path, shape, kinds="iuf") for i, shape in enumerate(shapes)]
    if scheduled:
        return values, None
    return [values[0], *values[2:]], float(values[1])


def _read_legacy_h5(file: BinaryIO, reader: _Reader) -> KerasFile:
    """The legacy HDF5 file: the config as attributes, model_weights/<layer>/<weight names>."""
    path = reader.path
    with _h5py().File(file, "r") as h5:
        config = _attribute_json(h5, "model_config", path)
        if config is None:
            raise reader.fail("it holds weights only (no model_config); save the whole model")
        spec, layers, _ = reader.spec(config, _attribute_json(h5, "training_config", path))
        expected = iter(weight_shapes(layers))
        group = _inside(h5, "model_weights", path) or h5
        weights = []
        for layer_name in group.attrs.get("layer_names", []):
            layer_name = layer_name.decode() if isinstance(layer_name, bytes) else layer_name
            layer_group = _inside(group, layer_name, path)
            if layer_group is None:
                raise reader.fail(f"no weights stored for layer '{layer_name}'")
            for weight_name in layer_group.attrs.get("weight_names", []):
                weight_name = weight_name.decode() if isinstance(weight_name, bytes) else weight_name
                weights.append(_dataset(layer_group, weight_name, path, next(expected, None)))
    return KerasFile(spec, weights)


KERAS_VERSION = "3.15.1"  # the Keras whose file layout this writer follows (read back by Keras >= 3.0)


def _keras_layers(layers: list[Layer]) -> list[dict[str, Any]]:
    """Each layer's Keras entry (`numnet.keras.mapping.layer_entries`) with its input shape."""
    return [{**entry, "input_shape": [None, *entry["layer"].input_shape]} for entry in layer_entries(layers)]


def _model_config(spec: specs.Spec, entries: list[dict[str, Any]], module: bool) -> dict[str, Any]:
    """The Sequential config Keras writes; `module` adds the Keras 3 .keras format's module keys."""

    def tag(layer: Any = None) -> dict[str, Any]:
        if not module:
            return {}
        custom = layer is not None and layer.keras_registered_name()
        return {"module": LAYERS_MODULE if custom else "keras.layers", "registered_name": custom or None}

    input_config = {"batch_shape": [None, *spec["input_shape"]], "dtype": "float32", "sparse": False,
                    "name": "input_layer"}  # fmt: skip
    input_layer = {"class_name": "InputLayer", **tag(), "config": input_config}
    layers = [input_layer] + [  # a legacy .h5 names a registered class by its registered name, as Keras does
        {"class_name": e["class_name"] if module else e["layer"].keras_registered_name() or e["class_name"],
         **tag(e["layer"]), "config": e["config"], "build_config": {"input_shape": e["input_shape"]}}
        for e in entries
    ]  # fmt: skip
    config = {"name": spec["name"], "trainable": True, "dtype": "float32", "layers": layers,
              "build_input_shape": [None, *spec["input_shape"]]}  # fmt: skip
    return {"class_name": "Sequential", **({"module": "keras", "registered_name": None} if module else {}),
            "config": config}  # fmt: skip


def _split_weights(entries: list[dict[str, Any]], weights: list[np.ndarray]) -> list[list[np.ndarray]]:
    """Keras-order weights cut into one list per layer."""
    per_layer, at = [], 0
    for entry in entries:
        count = len(entry["layer"].weight_names)
        per_layer.append([np.asarray(w, dtype=np.float32) for w in weights[at : at + count]])
        at += count
    if at != len(weights):
        raise ModelFileError(f"the model has {len(weights)} weight arrays; its spec needs {at}")
    return per_layer


def _write_keras_zip(spec, entries, per_layer, optimizer_state, learning_rate, f) -> None:
    h5py = _h5py()
    config = _model_config(spec, entries, module=True)
    config["build_config"] = {"input_shape": [None, *spec["input_shape"]]}
    config["compile_config"] = {
        "optimizer": optimizer_config(spec["optimizer"]),
        "loss": loss_config(spec["loss"], outputs_logits([e["layer"] for e in entries])), "metrics": ["accuracy"],
        "loss_weights": None,
        "weighted_metrics": None, "run_eagerly": False, "steps_per_execution": 1, "jit_compile": False,
    }  # fmt: skip
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as h5:
        for entry, arrays in zip(entries, per_layer):
            group = h5.create_group(f"layers/{entry['name']}/vars")
            group.attrs["name"] = entry["name"]
            for i, array in enumerate(arrays):
                group.create_dataset(str(i), data=array)
        model_vars = h5.create_group("vars")
        model_vars.attrs["name"] = spec["name"]
        if optimizer_state:
            # Keras' optimizer variables: iteration, learning rate, then each parameter's slots in
            # numnet's order (Adam: momentum, velocity), which is Keras' order too.
            slots = h5.create_group("optimizer/vars")
            slots.attrs["name"] = spec["optimizer"]["type"]
            # A scheduled rate is no variable in Keras: it is computed from the iteration count.
            rate = [] if isinstance(spec["optimizer"]["learning_rate"], dict) else [np.float32(learning_rate)]
            values = [np.asarray(optimizer_state[0], np.int64), *rate, *optimizer_state[1:]]
            for i, value in enumerate(values):
                slots.create_dataset(str(i), data=np.asarray(value, dtype=np.int64 if i == 0 else np.float32))
    metadata = {"keras_version": KERAS_VERSION, "date_saved": datetime.datetime.now().strftime("%Y-%m-%d@%H:%M:%S")}
    with zipfile.ZipFile(f, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("metadata.json", json.dumps(metadata))
        archive.writestr("config.json", json.dumps(config))
        archive.writestr("model.weights.h5", buffer.getvalue())


def _write_legacy_h5(spec, entries, per_layer, f) -> None:
    """Keras' legacy HDF5 layout (as `model.save("16_model.h5")` writes it): the architecture and
    training config as JSON attributes, each layer's weights under model_weights/<layer>/."""
    h5py = _h5py()
    optimizer = optimizer_config(spec["optimizer"])
    loss = loss_config(spec["loss"], outputs_logits([e["layer"] for e in entries]))
    training = {"loss": loss, "metrics": ["accuracy"], "loss_weights": None, "weighted_metrics": None,
                "optimizer_config": {key: optimizer[key] for key in ("class_name", "config")}}  # fmt: skip
    with h5py.File(f, "w") as h5:
        h5.attrs["backend"] = "tensorflow"
        h5.attrs["keras_version"] = KERAS_VERSION
        h5.attrs["model_config"] = json.dumps(_model_config(spec, entries, module=False))
        h5.attrs["training_config"] = json.dumps(training)
        weights = h5.create_group("model_weights")
        weights.attrs["backend"] = "tensorflow"
        weights.attrs["keras_version"] = KERAS_VERSION
        weights.attrs["layer_names"] = np.array([e["name"].encode() for e in entries])
        for entry, arrays in zip(entries, per_layer):
            group = weights.create_group(entry["name"])
            names = [f"{entry['name']}/{weight}" for weight in entry["layer"].weight_names]
            group.attrs["weight_names"] = np.array([n.encode() for n in names], dtype="S")
            for name, array in zip(names, arrays):
                group.create_dataset(name, data=array)


def write_keras_file(
    spec: specs.Spec,
    weights: list[np.ndarray],
    path: str | Path,
    optimizer_state: list[np.ndarray] | None = None,
    learning_rate: float | None = None,
) -> None:
    """Writes a `.keras` or legacy `.h5` file that Keras loads, with h5py and the standard library
    only (no TensorFlow or Keras import), atomically. The layer configs come from each layer's
    Keras mapping; a `.keras` file also carries the optimizer state."""
    spec, layers = check_spec(spec)
    entries = _keras_layers(layers)
    per_layer = _split_weights(entries, weights)
    rate = spec["optimizer"]["learning_rate"] if learning_rate is None else learning_rate
    with atomic_write(path) as f:
        if Path(path).suffix.lower() == ".keras":
            _write_keras_zip(spec, entries, per_layer, optimizer_state, rate, f)
        else:
            _write_legacy_h5(spec, entries, per_layer, f)
