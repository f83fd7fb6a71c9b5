"""Property-based fuzzing of the spec and model-file readers: whatever the input, numnet answers with
a model or a NumnetError naming the problem, never another exception."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import numnet
from numnet.errors import NumnetError
from numnet.layers import LAYER_TYPES, check_spec
from numnet.settings import SETTINGS

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 300) | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
OPTION_VALUES = st.one_of(JSON, st.sampled_from([None, "relu", "softmax", "same", "valid", 2, 3, [2, 2], 0.1]))


@st.composite
def layer_configs(draw):
    layer_type = draw(st.sampled_from([*LAYER_TYPES, "LSTM", 7, None]))
    options = sorted(LAYER_TYPES[layer_type].options) if layer_type in LAYER_TYPES else ["units"]
    keys = draw(st.lists(st.sampled_from([*options, "bogus"]), max_size=3, unique=True))
    return {"type": layer_type, **{key: draw(OPTION_VALUES) for key in keys}}


@st.composite
def specs(draw):
    spec = {
        "input_shape": draw(st.one_of(st.lists(st.integers(-2, 40), min_size=0, max_size=4), JSON)),
        "layers": draw(st.one_of(st.lists(layer_configs(), min_size=0, max_size=6), JSON)),
    }
    for key, values in (("name", st.one_of(st.text(max_size=12), JSON)), ("loss", JSON), ("optimizer", JSON)):
        if draw(st.booleans()):
            spec[key] = draw(values)
    return spec


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs())
def test_any_spec_is_built_or_refused_with_a_spec_error(spec):
    try:
        check_spec(spec)
    except NumnetError:
        pass


@pytest.fixture(scope="module")
def model_file_bytes(tmp_path_factory):
    path = tmp_path_factory.mktemp("fuzz") / "mlp.npz"
    spec = {**numnet.specs.mlp(), "layers": [{"type": "Flatten"}, {"type": "Dense", "units": 4, "activation": "relu"},
                                             {"type": "Dense", "units": 10, "activation": "softmax"}]}  # fmt: skip
    numnet.build(spec).save(path)
    return path.read_bytes()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_any_mutation_of_a_model_file_loads_or_is_refused_by_name(model_file_bytes, tmp_path_factory, data):
    raw = bytearray(model_file_bytes)
    for _ in range(data.draw(st.integers(1, 8))):
        at = data.draw(st.integers(0, len(raw) - 1))
        raw[at] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans()):
        raw = raw[: data.draw(st.integers(0, len(raw)))]
    path = tmp_path_factory.mktemp("mutant") / "mutant.npz"
    path.write_bytes(bytes(raw))
    try:
        model = numnet.load(path)
    except NumnetError:
        return
    assert np.isfinite(model.predict(np.zeros((1, 28, 28, 1), np.float32))).all()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(header=st.dictionaries(st.sampled_from(["format", "version", "spec", "backend", "epochs_done", "weights",
                                              "optimizer", "run"]), JSON, max_size=8))  # fmt: skip
def test_any_model_file_header_loads_or_is_refused_by_name(tmp_path_factory, header):
    import json

    path = tmp_path_factory.mktemp("header") / "model.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("header.json", json.dumps({"format": "numnet-model", "version": 1, **header}))
    try:
        numnet.load(path)
    except NumnetError:
        pass


@pytest.fixture(scope="module")
def keras_file_members(tmp_path_factory):
    path = tmp_path_factory.mktemp("fuzz") / "cnn.keras"
    numnet.build(numnet.specs.cnn()).save(path)
    with zipfile.ZipFile(path) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def _nodes(tree, path=()):
    """Every (path, value) in a JSON tree, the root included."""
    yield path, tree
    children = tree.items() if isinstance(tree, dict) else enumerate(tree) if isinstance(tree, list) else ()
    for key, child in children:
        yield from _nodes(child, (*path, key))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_any_keras_config_with_values_of_any_type_loads_or_is_refused_by_name(keras_file_members, tmp_path_factory,
                                                                              data):  # fmt: skip
    """A .keras file whose config.json has nodes replaced by random JSON (wrong types anywhere)."""
    import json

    config = json.loads(keras_file_members["config.json"])
    for _ in range(data.draw(st.integers(1, 3))):
        nodes = list(_nodes(config))
        path, _ = nodes[data.draw(st.integers(0, len(nodes) - 1))]
        value = data.draw(JSON)
        if not path:
            config = value
            break
        parent = config
        for key in path[:-1]:
            parent = parent[key]
        parent[path[-1]] = value
    file = tmp_path_factory.mktemp("keras") / "mutant.keras"
    with zipfile.ZipFile(file, "w") as archive:
        for name, content in keras_file_members.items():
            archive.writestr(name, json.dumps(config) if name == "config.json" else content)
    try:
        model = numnet.load(file)
    except NumnetError:
        return
    assert np.isfinite(model.predict(np.zeros((1, *model.spec["input_shape"]), np.float32))).all()


# -- run records, checkpoints and HDF5 structures: the files runs and Keras hand numnet -----------------

RECORD = {"name": "run", "model": "mlp", "settings": {"epochs": 1}, "spec": numnet.specs.mlp(), "backend": "numpy",
          "history": {"loss": [1.0], "accuracy": [0.5], "seconds": [1.0]}, "test_accuracy": 0.5,
          "per_digit_accuracy": {str(d): 0.5 for d in range(10)}, "confusion": np.eye(10, dtype=int).tolist(),
          "test_samples": 10, "train_seconds": 1.0, "test_seconds": 0.1, "device": "CPU"}  # fmt: skip


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.dictionaries(st.sampled_from(sorted(RECORD)), JSON, max_size=4), st.sampled_from([None, 0, 10, 11]))
def test_any_run_record_is_read_whole_or_refused_by_name(tmp_path_factory, changes, rows):
    """A record with fields of any JSON type, and its probabilities of any row count: the report's
    readers give data the report can draw, or a RunError."""
    import json

    from numnet.formats import records

    folder = tmp_path_factory.mktemp("run")
    (folder / "run.json").write_text(json.dumps({**RECORD, **changes}))
    if rows is not None:
        np.save(folder / "test_probabilities.npy", np.full((rows, 10), 0.1, np.float32))
    try:
        record = records.read_record(folder / "run.json")
        probabilities = records.read_probabilities(folder / "run.json", record)
    except NumnetError:
        return
    assert probabilities.shape == (record["test_samples"], 10)
    assert len(record["history"]["loss"]) == len(record["history"].get("accuracy", record["history"]["loss"]))


@pytest.fixture(scope="module")
def checkpoint_parts(tmp_path_factory):
    """A run's checkpoint as the training CLI writes one, taken apart: header and arrays."""
    from numnet.formats.npz import ModelFile

    path = tmp_path_factory.mktemp("checkpoint") / "mlp.checkpoint.npz"
    model = numnet.build(numnet.specs.mlp())
    run = {"name": "mlp", "model": "mlp", "settings": {"epochs": 2, "batch_size": 100}, "history": {"loss": [1.0]},
           "checkpoint": str(path)}  # fmt: skip
    model.save(path)
    with ModelFile(path) as saved:
        weights, state = saved.arrays([w.shape for w in model.get_weights()],
                                      [s.shape for s in model.optimizer.get_state()])  # fmt: skip
        return saved.header, run, weights, state


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.dictionaries(st.sampled_from(["name", "model", "settings", "history", "checkpoint"]), JSON, max_size=3))
def test_any_run_state_in_a_checkpoint_resumes_or_is_refused_by_name(checkpoint_parts, tmp_path_factory, changes):
    """The run state a checkpoint's header carries, with values of any type: resuming gives a run whose
    files lie where the user chose (beside the checkpoint), or a NumnetError."""
    from pathlib import Path

    from numnet import runs
    from numnet.formats.npz import write_model

    header, run, weights, state = checkpoint_parts
    folder = tmp_path_factory.mktemp("resume")
    path = folder / "mlp.checkpoint.npz"
    write_model(path, header["spec"], "numpy", 1, weights, state, run={**run, **changes})
    try:
        resumed = runs.resume_run(path)
        files = runs.resumed_files(path)
    except NumnetError:
        return
    assert files.model.parent == folder and Path(files.checkpoint).parent == folder
    assert all(SETTINGS[key].valid(value) for key, value in resumed.settings.items())


@pytest.fixture(scope="module")
def legacy_h5_bytes(tmp_path_factory):
    path = tmp_path_factory.mktemp("h5") / "model.h5"
    numnet.build(numnet.specs.mlp()).save(path)
    return path.read_bytes()


H5_CHANGES = st.lists(st.tuples(st.sampled_from(["delete", "reshape", "retype", "soft link", "external link",
                                                 "layer_names", "weight_names", "model_config"]),
                                st.integers(0, 5), JSON), min_size=1, max_size=3)  # fmt: skip


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(H5_CHANGES)
def test_any_change_to_a_keras_h5_structure_loads_or_is_refused_by_name(legacy_h5_bytes, tmp_path_factory, changes):
    """HDF5 structures a hand-made or hostile file may hold (missing or reshaped datasets, other
    dtypes, soft and external links, attributes of any type): a model or a NumnetError."""
    import json

    import h5py

    path = tmp_path_factory.mktemp("h5") / "mutant.h5"
    path.write_bytes(legacy_h5_bytes)
    with h5py.File(path, "r+") as h5:
        datasets = []
        h5.visititems(lambda name, item: datasets.append(name) if isinstance(item, h5py.Dataset) else None)
        for kind, index, value in changes:
            name = datasets[index % len(datasets)]
            if kind in ("layer_names", "weight_names", "model_config"):
                layer_group = "/".join(name.split("/")[:2])  # model_weights/<layer>
                holder = {"model_config": h5, "layer_names": h5["model_weights"]}.get(kind) or h5[layer_group]
                holder.attrs[kind] = json.dumps(value) if kind == "model_config" else str(value)
                continue
            parent, _, leaf = name.rpartition("/")
            if not isinstance(h5[parent or "/"].get(leaf, getlink=True), h5py.HardLink):
                continue  # deleted or made a link by an earlier change
            data = h5[name][()]
            del h5[name]
            if kind == "reshape":
                h5[name] = np.zeros((len(str(value)) + 1, 3), np.float32)
            elif kind == "retype":
                h5[name] = data.astype(np.int8) if index % 2 else np.array([str(value).encode()] * 2)
            elif kind == "soft link":
                h5[name] = h5py.SoftLink("/" + name)  # a link to itself: a loop
            elif kind == "external link":
                h5[name] = h5py.ExternalLink("/etc/hostname", "/data")
    try:
        model = numnet.load(path)
    except NumnetError:
        return
    assert np.isfinite(model.predict(np.zeros((1, *model.spec["input_shape"]), np.float32))).all()
