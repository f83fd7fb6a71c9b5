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
