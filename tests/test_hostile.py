"""Hostile files: each is built here, small on disk, and must be refused with a clear error before
numnet allocates what it claims. Each load runs in a child process under a 3 GiB address-space
limit, so a regression fails here instead of exhausting the machine."""

from __future__ import annotations

import json
import os
import re
import resource
import subprocess
import sys
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest

import numnet
from numnet import runs
from numnet.errors import ModelFileError, RunError
from numnet.formats import records

LIMIT = 3 << 30


def limit_memory():
    resource.setrlimit(resource.RLIMIT_AS, (LIMIT, LIMIT))


def load_in_child(path) -> subprocess.CompletedProcess:
    code = "import sys, numnet\nnumnet.load(sys.argv[1])\n"
    return subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=300,
                          preexec_fn=limit_memory)  # fmt: skip


def assert_refused(result: subprocess.CompletedProcess, error: str, message: str) -> None:
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"numnet.errors.{error}:") and message in last, result.stderr[-2000:]
    assert "MemoryError" not in result.stderr


SOFTMAX = {"type": "Dense", "units": 10, "activation": "softmax"}
DENSE_BOMB = {"name": "bomb", "input_shape": [10000], "layers": [{"type": "Dense", "units": 10000}] * 40 + [SOFTMAX]}


def npz_with_spec(path, spec) -> None:
    header = {"format": "numnet-model", "version": 1, "spec": spec, "backend": "numpy", "epochs_done": 0,
              "weights": [], "optimizer": []}  # fmt: skip
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("header.json", json.dumps(header))


@pytest.mark.parametrize(
    "spec",
    [DENSE_BOMB,
     {"input_shape": [1, 1, 100_000_000], "layers": [{"type": "BatchNormalization"}, {"type": "Flatten"},
                                                     {"type": "Dense", "units": 10, "activation": "softmax"}]}],
    ids=["40-dense-layers", "wide-batchnorm"],
)  # fmt: skip
def test_a_model_file_whose_spec_is_too_large_is_refused_before_building(tmp_path, spec):
    path = tmp_path / "bomb.npz"
    npz_with_spec(path, spec)
    assert path.stat().st_size < 2000
    assert_refused(load_in_child(path), "ModelFileError", "too large to build")


def test_an_h5_weight_declaring_a_huge_shape_is_refused_before_reading(seed_mlp_file, tmp_path):
    path = tmp_path / "16_model.h5"
    numnet.load(seed_mlp_file).save(path)
    with h5py.File(path, "r+") as h5:
        group = h5["model_weights/dense"]
        del group["dense/kernel"]
        group.create_dataset(
            "dense/kernel", shape=(200_000, 200_000), dtype="f4", chunks=(1000, 1000), compression="gzip"
        )  # fmt: skip  (149 GiB declared, nothing stored)
    assert path.stat().st_size < 2_000_000
    assert_refused(load_in_child(path), "ModelFileError", "declares shape (200000, 200000)")


def test_a_keras_config_that_is_a_zip_bomb_is_not_read(tmp_path):
    path = tmp_path / "bomb.keras"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("config.json", "{" + " " * (64 << 20) + "}")
        archive.writestr("model.weights.h5", b"")
    assert path.stat().st_size < 1_000_000
    assert_refused(load_in_child(path), "ModelFileError", "config.json declares 67,108,866 bytes")


def test_an_oversized_variable_length_h5_model_config_is_refused(tmp_path):
    """h5py stores str attributes as variable-length strings, whose text lies outside the attribute:
    the size check must see it too."""
    path = tmp_path / "big.h5"
    numnet.build(numnet.specs.mlp()).save(path)
    text = json.dumps({"class_name": "Sequential", "config": {"layers": [], "padding": " " * (2 << 20)}})
    with h5py.File(path, "a") as h5:
        del h5.attrs["model_config"]
        h5.attrs["model_config"] = text
        assert h5py.check_string_dtype(h5.attrs.get_id("model_config").dtype).length is None
    assert_refused(load_in_child(path), "ModelFileError", "oversized model_config (over 1,048,576 bytes)")


def test_an_h5_model_config_that_is_many_strings_is_refused(tmp_path):
    path = tmp_path / "many.h5"
    numnet.build(numnet.specs.mlp()).save(path)
    with h5py.File(path, "a") as h5:
        config = h5.attrs["model_config"]
        del h5.attrs["model_config"]
        h5.attrs.create("model_config", [config] * 3, dtype=h5py.string_dtype())
    assert_refused(load_in_child(path), "ModelFileError", "its model_config is not one string")


@pytest.mark.parametrize(("depth", "message"), [(100, "nested more than 16 deep"), (10_000, "nested too deeply")])
def test_deeply_nested_sequentials_are_refused_by_name(tmp_path, depth, message):
    dense = json.dumps({"class_name": "Dense", "config": {"units": 10, "activation": "softmax"}})
    opening = '{"class_name": "Sequential", "config": {"layers": ['
    path = tmp_path / "deep.keras"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("config.json", opening * depth + dense + "]}}" * depth)
        archive.writestr("model.weights.h5", b"")
    assert_refused(load_in_child(path), "ModelFileError", message)


def test_a_deeply_nested_model_file_header_is_refused(tmp_path):
    path = tmp_path / "deep.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("header.json", "[" * 50_000 + "]" * 50_000)
    assert_refused(load_in_child(path), "ModelFileError", "nested too deeply")


def finished_run(folder, **changes) -> None:
    """The files of one finished-looking run in `folder`, its record changed by `changes`."""
    folder.mkdir(parents=True)
    record = {"name": "run", "model": "mlp", "settings": {"epochs": 1}, "spec": numnet.specs.mlp(),
              "backend": "numpy", "history": {"loss": [1.0], "accuracy": [0.5], "seconds": [1.0]},
              "test_accuracy": 0.5, "per_digit_accuracy": {str(d): 0.5 for d in range(10)},
              "confusion": np.eye(10, dtype=int).tolist(), "test_samples": 10, "train_seconds": 1.0,
              "test_seconds": 0.1, "device": "CPU", **changes}  # fmt: skip
    (folder / "run.json").write_text(json.dumps(record))
    np.save(folder / "test_probabilities.npy", np.full((10, 10), 0.1, np.float32))


def report_on_a_record(tmp_path, out=None, **changes) -> subprocess.CompletedProcess:
    """`numnet.report` on one finished-looking run whose record is changed by `changes`."""
    finished_run(tmp_path / "runs" / "run", **changes)
    home = tmp_path / "home"
    home.mkdir()
    (home / "mnist.npz").symlink_to(numnet.data.cache_path())
    command = [sys.executable, "-m", "numnet.report", str(tmp_path / "runs"), *(["--out", str(out)] if out else [])]
    return subprocess.run(command, capture_output=True, text=True, env={**os.environ, "NUMNET_HOME": str(home)},
                          timeout=300, preexec_fn=limit_memory)  # fmt: skip


def test_a_run_record_holding_a_spec_bomb_is_refused_by_the_report(tmp_path, mnist):
    result = report_on_a_record(tmp_path, spec=DENSE_BOMB)
    assert result.returncode == 2 and "too large to build" in result.stderr and "Traceback" not in result.stderr


# -- careless input: refused by name, nothing lost ---------------------------------------------------
def train_cli(*args, home):
    env = {**os.environ, "NUMNET_HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "numnet.train", *args], capture_output=True, text=True, env=env,
                          timeout=600)  # fmt: skip


@pytest.fixture
def home_with_a_trained_model(tmp_path):
    home = tmp_path / "home"
    (home / "models").mkdir(parents=True)
    (home / "mnist.npz").symlink_to(numnet.data.cache_path())
    model = numnet.build(numnet.specs.mlp())
    model.save(home / "models" / "mlp.npz")
    return home, (home / "models" / "mlp.npz").read_bytes()


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--epochs", "-5"], "--epochs: must be an integer >= 1, got '-5'"),
     (["--epochs", "0"], "--epochs: must be an integer >= 1"),
     (["--seed", "-1"], "--seed: must be an integer >= 0"),
     (["--batch-size", "2.5"], "--batch-size: must be an integer >= 1, got '2.5'"),
     (["--validation-split", "1.5"], "--validation-split: must be a number in [0, 1)"),
     (["--early-stopping", "x"], "--early-stopping: must be an integer >= 0")],
)  # fmt: skip
def test_bad_cli_values_are_refused_before_any_file_is_touched(home_with_a_trained_model, args, message):
    home, saved = home_with_a_trained_model
    result = train_cli("--model", "mlp", *args, home=home)
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr
    assert (home / "models" / "mlp.npz").read_bytes() == saved


def test_a_bad_thread_count_is_refused_before_any_file_is_touched(home_with_a_trained_model, monkeypatch):
    home, saved = home_with_a_trained_model
    monkeypatch.setenv("NUMNET_NUM_THREADS", "two")
    result = train_cli("--model", "mlp", "--backend", "numba", "--epochs", "1", home=home)
    assert result.returncode == 2 and "NUMNET_NUM_THREADS='two' is not a positive whole number" in result.stderr
    assert "Traceback" not in result.stderr and (home / "models" / "mlp.npz").read_bytes() == saved


@pytest.mark.parametrize("name", ["../escaped", "/tmp/escaped", ".hidden", "a b"])
def test_a_spec_name_cannot_escape_the_output_folder(home_with_a_trained_model, tmp_path, name):
    home, _ = home_with_a_trained_model
    spec = {**numnet.specs.mlp(), "name": name}
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    result = train_cli("--model", str(path), "--epochs", "1", "--out", str(tmp_path / "out"), home=home)
    assert result.returncode == 2 and "spec 'name' must be" in result.stderr
    assert not (tmp_path / "out").exists() and not (tmp_path / "escaped.npz").exists()


@pytest.mark.parametrize(
    ("optimizer", "message"),
    [({"type": "adam", "learning_rate": -0.001}, "learning_rate must be a number"),
     ({"type": "sgd", "learning_rate": "0.1"}, "learning_rate must be a number"),
     ({"type": "adam", "beta_1": 1.5}, "beta_1 must be a number in (0.0, 1.0)")],
)  # fmt: skip
def test_nonsense_optimizer_settings_are_refused(optimizer, message):
    with pytest.raises(numnet.errors.SpecError, match=message.replace("(", r"\(").replace(")", r"\)")):
        numnet.build({**numnet.specs.mlp(), "optimizer": optimizer})


def rewrite_json_member(path, member: str, change):
    """Rewrites the zip at `path` with its JSON `member` changed by `change(value, members)`."""
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    value = json.loads(members[member])
    change(value, members)
    members[member] = json.dumps(value).encode()
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def damaged_model(tmp_path, change):
    """A real model file with one thing in it changed by `change(header, arrays)`."""
    path = tmp_path / "model.npz"
    numnet.build(numnet.specs.mlp()).save(path)
    return rewrite_json_member(path, "header.json", change)


def npy(array) -> bytes:
    import io

    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("change", "message"),
    [(lambda h, m: h.update(epochs_done="abc"), "epochs_done must be a non-negative integer"),
     (lambda h, m: h.update(weights=5), "'weights' is not a list"),
     (lambda h, m: m.update({"optimizer/002.npy": npy(np.full((784, 128), np.nan, np.float32))}), "NaN"),
     (lambda h, m: m.update({"optimizer/002.npy": npy(np.full((784, 128), -1.0, np.float32))}), "negative"),
     (lambda h, m: m.update({"optimizer/000.npy": npy(np.array(-3, np.int64))}), "step count"),
     (lambda h, m: h.update(backend=["numba"]), "backend ['numba'] is not available")],
    ids=["epochs-done-text", "weights-not-a-list", "nan-optimizer-state", "negative-velocity", "negative-steps",
         "backend-not-a-name"],
)  # fmt: skip
def test_model_files_with_impossible_contents_are_refused(tmp_path, change, message):
    path = damaged_model(tmp_path, change)
    with pytest.raises(numnet.errors.ModelFileError, match=re.escape(message)):
        numnet.load(path)


def test_experiment_runs_differing_only_in_test_samples_are_distinct():
    from numnet.runs import grid

    two = {"model": "mlp", "epochs": 1, "test_samples": [100, 200]}
    names = [grid.run_name(settings) for settings in grid.expand_grid(two)]
    assert len(set(names)) == 2


def test_a_scale_that_merges_runs_says_which_scale_keeps_them_apart():
    from numnet.runs import grid

    with pytest.raises(grid.GridError, match=r"use --scale 0.04 or more"):
        grid.expand_grid(grid.GRIDS["seed-cnn"], 0.01)
    assert [r["epochs"] for r in grid.expand_grid(grid.GRIDS["seed-cnn"], 0.04)] == [1, 2, 4]


def test_an_interrupted_epoch_never_overwrites_the_last_complete_checkpoint(tmp_path, mnist):

    run = runs.new_run("mlp", "mlp", {"epochs": 3, "batch_size": 100}, "numba")
    files = runs.RunFiles.named(tmp_path, "mlp")
    after_first = {}

    def stop_inside_the_second_epoch(run):
        after_first["weights"] = run.model.get_weights()
        real_step = run.model.train_step
        calls = []

        def step(x, y):
            calls.append(1)
            if len(calls) == 5:
                raise KeyboardInterrupt
            return real_step(x, y)

        run.model.train_step = step

    with pytest.raises(KeyboardInterrupt):
        runs.train(run, files, mnist, verbose=False, on_epoch=stop_inside_the_second_epoch)
    saved = numnet.load(files.checkpoint)
    assert saved.epochs_done == 1
    for ours, theirs in zip(saved.get_weights(), after_first["weights"]):
        np.testing.assert_array_equal(ours, theirs)


def test_a_run_record_whose_spec_name_escapes_the_report_folder_is_refused(tmp_path, mnist):
    escaping = {**numnet.specs.mlp(), "name": "../../escaped"}
    result = report_on_a_record(tmp_path, spec=escaping, out=tmp_path / "a" / "b")
    assert result.returncode == 2 and "spec 'name' must be" in result.stderr and "Traceback" not in result.stderr
    assert not list(tmp_path.glob("**/structure_*"))


@pytest.mark.parametrize(
    ("changes", "message"),
    [({"history": {"loss": "abc"}}, "'history' must be an object of equally long lists"),
     ({"history": {"loss": [1.0, 0.5], "val_loss": [1.0]}}, "'history' must be"),
     ({"test_accuracy": "99%"}, "'test_accuracy' must be a number in [0, 1], got '99%'"),
     ({"confusion": [[1]]}, "'confusion' must be a 10x10 list of counts"),
     ({"per_digit_accuracy": {"0": 2.0}}, "'per_digit_accuracy' must be"),
     ({"settings": {"epochs": "3"}}, "'settings' must be an object of run settings, each within its range"),
     ({"name": 5}, "'name' must be a string"),
     ({"train_seconds": None}, "'train_seconds' must be a number")],
)  # fmt: skip
def test_a_run_record_with_wrong_types_is_refused_by_name(tmp_path, changes, message):
    finished_run(tmp_path / "run", **changes)
    with pytest.raises(RunError, match=re.escape(message)):
        records.read_record(tmp_path / "run" / "run.json")


def test_a_run_record_with_wrong_types_is_refused_by_the_report(tmp_path, mnist):
    result = report_on_a_record(tmp_path, confusion="none")
    assert result.returncode == 2 and "'confusion' must be" in result.stderr and "Traceback" not in result.stderr


def test_run_names_are_drawn_as_typed_not_parsed_as_mathtext(tmp_path, mnist):
    result = report_on_a_record(tmp_path, name=r"$\notacommand{x}$ 50% _under_")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "runs" / "report.html").read_text().count(r"$\notacommand{x}$ 50% _under_") == 1
    assert (tmp_path / "runs" / "curves.png").stat().st_size > 10_000


def test_a_full_disk_at_out_keeps_the_saved_model_and_rescues_the_run(tmp_path, mnist):
    """A real full disk: --out is a 1.6 MB tmpfs (in a private mount namespace) already holding a model."""
    home, out = tmp_path / "home", tmp_path / "out"
    out.mkdir()
    home.mkdir()
    (home / "mnist.npz").symlink_to(numnet.data.cache_path())
    python = f"{sys.executable} -c 'import numnet; numnet.build(numnet.specs.mlp()).save(\"{out}/mlp.npz\")'"
    script = (f"mount -t tmpfs -o size=1600k tmpfs {out} && {python} && sha256sum {out}/mlp.npz && "
              f"{sys.executable} -m numnet.train --model mlp --epochs 2 --quiet --out {out}; echo rc=$?; "
              f"sha256sum {out}/mlp.npz; ls -a {out}")  # fmt: skip
    env = {**os.environ, "NUMNET_HOME": str(home)}
    full = subprocess.run(["unshare", "-rm", "sh", "-c", script], capture_output=True, text=True, env=env, timeout=300)
    before, after = [line.split()[0] for line in full.stdout.splitlines() if line.endswith("/mlp.npz")]
    assert "rc=2" in full.stdout and before == after, full.stdout + full.stderr
    assert "No space left on device" in full.stderr and "Traceback" not in full.stderr
    assert ".tmp" not in full.stdout  # no half-written file left on the full disk
    rescued = home / "rescued" / "mlp.checkpoint.npz"
    assert f"safe in '{rescued}'" in full.stderr and numnet.load(rescued).epochs_done == 1
    printed = f"python -m numnet.train --resume {rescued} --out {out}"
    assert printed in full.stderr
    # With room again (the tmpfs is gone), the printed command finishes the run where it started.
    resumed = train_cli(*printed.split()[3:], "--quiet", home=home)
    assert resumed.returncode == 0, resumed.stderr
    record = records.read_record(out / "mlp.run.json")
    assert len(record["history"]["loss"]) == 2 and record["settings"]["epochs"] == 2
    assert numnet.load(out / "mlp.npz").epochs_done == 2
    assert rescued.exists() and "is no longer needed" in resumed.stdout  # numnet deletes only what it wrote


def without_read_permission(command: list[str]) -> list[str]:
    """`command` as a process that file permissions apply to: root keeps its uid but loses the override."""
    return ["setpriv", "--bounding-set", "-dac_override,-dac_read_search", *command] if os.geteuid() == 0 else command


def test_unreadable_files_are_named_as_unreadable_not_corrupt(tmp_path):
    model = numnet.build(numnet.specs.mlp())
    paths = {name: tmp_path / name for name in ("m.npz", "m.h5", "m.keras", "spec.json")}
    for name in ("m.npz", "m.h5", "m.keras"):
        model.save(paths[name])
    paths["spec.json"].write_text(json.dumps(numnet.specs.mlp()))
    finished_run(tmp_path / "run")
    paths["run.json"] = tmp_path / "run" / "run.json"
    for path in paths.values():
        path.chmod(0)
    code = """import sys, numnet
from numnet import specs
from numnet.formats import records
for path in sys.argv[1:]:
    reader = records.read_record if path.endswith("run.json") else specs.load_spec if path.endswith("spec.json") \\
        else numnet.load
    try:
        reader(path)
    except numnet.errors.NumnetError as error:
        print(type(error).__name__, error)
"""
    result = subprocess.run(without_read_permission([sys.executable, "-c", code, *map(str, paths.values())]),
                            capture_output=True, text=True, timeout=300)  # fmt: skip
    lines = result.stdout.splitlines()
    assert len(lines) == len(paths), result.stdout + result.stderr
    for line in lines:
        assert "Permission denied" in line and "corrupt" not in line and "truncated" not in line, line


def test_a_spec_file_that_is_not_utf8_is_refused_by_name(tmp_path):
    path = tmp_path / "spec.json"
    path.write_bytes(b"\xff\xfe{" + json.dumps(numnet.specs.mlp()).encode("utf-16-le"))
    with pytest.raises(numnet.errors.SpecError, match="is not UTF-8 text"):
        numnet.specs.load_spec(path)


def test_a_save_killed_midway_leaves_a_temp_file_the_next_save_removes(tmp_path):
    path = tmp_path / "model.npz"
    killed = "import os, signal, sys\nfrom numnet.io import atomic_write\nwith atomic_write(sys.argv[1]) as f:\n" \
             "    f.write(b'half')\n    f.flush()\n    os.kill(os.getpid(), signal.SIGKILL)\n"  # fmt: skip
    result = subprocess.run([sys.executable, "-c", killed, str(path)], timeout=60)
    assert result.returncode == -9 and len(list(tmp_path.glob(".model.npz.*.tmp"))) == 1 and not path.exists()
    live = tmp_path / f".model.npz.numnet-{os.getpid()}-inflight.tmp"  # a write in progress in a live process
    # Another file's write in progress, whose name holds digits that look like a dead process id.
    other = tmp_path / f".model.npz.123456789.numnet-{os.getpid()}-abc.tmp"
    for temp in (live, other):
        temp.write_bytes(b"")
    numnet.build(numnet.specs.mlp()).save(path)
    assert sorted(tmp_path.iterdir()) == sorted([live, other, path])


def test_saving_through_a_symbolic_link_keeps_the_link(tmp_path):
    target, link = tmp_path / "real" / "model.npz", tmp_path / "model.npz"
    target.parent.mkdir()
    link.symlink_to(target)
    numnet.build(numnet.specs.mlp()).save(link)
    assert link.is_symlink() and numnet.load(target).epochs_done == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.npz", "real"]


@pytest.mark.parametrize(
    ("layer", "message"),
    [({"kernel_size": 0}, "kernel_size must be a positive integer, got 0"),
     ({"kernel_size": -3}, "kernel_size must be a positive integer, got -3"),
     ({"kernel_size": "3"}, "kernel_size must be a positive integer, got '3'"),
     ({"kernel_size": 2.5}, "kernel_size must be a positive integer, got 2.5"),
     ({"filters": True}, "filters must be a positive integer, got True")],
)  # fmt: skip
def test_bad_conv_settings_are_refused_by_name(layer, message):
    spec = numnet.specs.cnn()
    spec["layers"][0] = {**spec["layers"][0], **layer}
    with pytest.raises(numnet.errors.SpecError, match=re.escape(message)):
        numnet.build(spec)


def test_a_bad_spec_file_is_refused_before_mnist_is_fetched(tmp_path):
    """A string momentum in a spec file: refused at once, not after a 17 MB download or a training run."""
    spec = numnet.specs.cnn()
    spec["layers"][1] = {**spec["layers"][1], "momentum": "0.9"}
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    home = tmp_path / "empty-home"  # no MNIST cache: any attempt to fetch it would print "MNIST:"
    result = train_cli("--model", str(path), "--epochs", "1", home=home)
    assert result.returncode == 2 and "BatchNormalization momentum must be a finite number, got '0.9'" in result.stderr
    assert "MNIST" not in result.stderr and not home.exists()


def keras_file_with_config(tmp_path, change):
    """A real .keras file whose config.json is changed by `change(config)`."""
    path = tmp_path / "model.keras"
    numnet.build(numnet.specs.cnn()).save(path)
    return rewrite_json_member(path, "config.json", lambda config, _: change(config))


@pytest.mark.parametrize(
    "change",
    [lambda c: c["config"].update(layers="abc"),
     lambda c: c["config"]["layers"][1].update(config=5),
     lambda c: c["config"]["layers"][1].update(class_name=["Conv2D"]),
     lambda c: c.update(config=[1])],
    ids=["layers-a-string", "layer-config-a-number", "class-name-a-list", "model-config-a-list"],
)  # fmt: skip
def test_keras_configs_of_the_wrong_shape_are_refused_by_name(tmp_path, change):
    with pytest.raises(
        numnet.errors.ModelFileError, match="does not hold its layers as a list, each with a class name and a config"
    ):
        numnet.load(keras_file_with_config(tmp_path, change))


def test_two_models_of_the_same_name_are_refused_before_either_trains(tmp_path):
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(numnet.specs.mlp()))  # also named "mlp"
    out = tmp_path / "out"
    result = train_cli("--model", "mlp", "--model", str(spec), "--epochs", "1", "--out", str(out), home=tmp_path)
    assert result.returncode == 2 and "are both named 'mlp' and would be saved as the same files" in result.stderr
    assert not out.exists()


@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_a_pipe_or_a_device_where_a_file_belongs_is_refused_without_reading(tmp_path, kind):
    """/dev/zero would be read without end and a FIFO with no writer blocks forever: both are refused
    by name, in a child process that would hang otherwise."""
    if kind == "fifo":
        os.mkfifo(tmp_path / "pipe")
        target = tmp_path / "pipe"
    else:
        target = Path("/dev/zero")
    code = """import sys, numnet
from numnet.formats import records
for reader in (numnet.load, numnet.specs.load_spec, records.read_record):
    try:
        reader(sys.argv[1])
    except numnet.errors.NumnetError as error:
        print(type(error).__name__, error)
"""
    result = subprocess.run([sys.executable, "-c", code, str(target)], capture_output=True, text=True, timeout=120)
    lines = result.stdout.splitlines()
    assert len(lines) == 3 and all("is not a regular file" in line for line in lines), result.stdout + result.stderr
    grid = subprocess.run([sys.executable, "-m", "numnet.experiments", "--grid", str(target), "--out",
                           str(tmp_path / "runs")], capture_output=True, text=True, timeout=120)  # fmt: skip
    assert grid.returncode == 2 and "is not a regular file" in grid.stderr


def test_a_probabilities_file_declaring_a_huge_array_is_refused_before_it_is_read(tmp_path):
    finished_run(tmp_path / "run")
    path = tmp_path / "run" / "test_probabilities.npy"
    with open(path, "wb") as f:  # a header declaring 10^12 values, and no data behind it
        np.lib.format.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False, "shape": (10**6, 10**6)})
    record = records.read_record(tmp_path / "run" / "run.json")
    with pytest.raises(RunError, match="is corrupt|holds shape"):
        records.read_probabilities(tmp_path / "run" / "run.json", record)


@pytest.mark.parametrize(
    ("grid", "scale", "message"),
    [({"model": "mlp", **{key: list(range(1, 11)) for key in ("epochs", "batch_size", "seed", "train_samples",
      "test_samples", "early_stopping", "validation_split")}}, 1.0, "crosses into 10,000,000 runs"),
     ({"model": "mlp", "epochs": 3}, 1e308, "--scale 1e+308 gives a run of"),
     ({"model": "mlp", "epochs": 3, "test_samples": 0}, 1.0, "'test_samples' must be an integer >= 1, got 0")],
)  # fmt: skip
def test_grids_that_would_never_finish_are_refused_before_any_run(grid, scale, message):
    from numnet.runs import grid as grids

    with pytest.raises(grids.GridError, match=re.escape(message)):
        grids.expand_grid(grid, scale)


def test_a_grid_file_nested_without_end_is_refused_by_name(tmp_path):
    path = tmp_path / "deep.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    result = subprocess.run([sys.executable, "-m", "numnet.experiments", "--grid", str(path), "--out",
                             str(tmp_path / "runs")], capture_output=True, text=True, timeout=120)  # fmt: skip
    assert result.returncode == 2 and "cannot be read: RecursionError" in result.stderr, result.stderr[-500:]


@pytest.mark.parametrize("source", ["mlp.keras", "model.json"])
def test_export_never_overwrites_the_model_it_reads(tmp_path, source):
    """`--out` the source's own folder: a .keras source of the same name, or a numnet model saved as
    model.json (the TF.js writer's name), would be replaced by the export."""
    path = tmp_path / source
    saved = path if source.endswith(".keras") else tmp_path / "x.npz"
    numnet.build(numnet.specs.mlp()).save(saved)
    saved.rename(path)
    before = path.read_bytes()
    export_format = "keras" if source.endswith(".keras") else "tfjs"
    result = subprocess.run([sys.executable, "-m", "numnet.export", str(path), "--format", export_format, "--out",
                             str(tmp_path)], capture_output=True, text=True, timeout=300)  # fmt: skip
    assert result.returncode == 2 and "would overwrite" in result.stderr, result.stderr
    assert path.read_bytes() == before


@pytest.mark.parametrize("command", [["numnet.export", "{model}", "--out", "{file}"],
                                     ["numnet.experiments", "--grid", "{grid}", "--out", "{file}"],
                                     ["numnet.report", "{runs}", "--out", "{file}"]])  # fmt: skip
def test_an_out_that_is_a_file_is_refused_by_name(tmp_path, command):
    paths = {"model": tmp_path / "m.npz", "file": tmp_path / "a-file", "grid": tmp_path / "g.json",
             "runs": tmp_path / "runs"}  # fmt: skip
    numnet.build(numnet.specs.mlp()).save(paths["model"])
    paths["file"].write_text("not a folder")
    paths["grid"].write_text(json.dumps({"model": "mlp", "epochs": 1, "train_samples": 100, "test_samples": 100}))
    finished_run(paths["runs"] / "run")
    args = [part.format(**{k: str(v) for k, v in paths.items()}) for part in command]
    result = subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "NUMNET_HOME": str(tmp_path / "home")})  # fmt: skip
    assert result.returncode == 2 and "is a file, not a folder" in result.stderr and "Traceback" not in result.stderr
    assert paths["file"].read_text() == "not a folder"


def _replace_first_kernel(h5_path, make):
    """Replaces the first Dense kernel of a legacy .h5 model by what `make(group, name, data)` puts there."""
    with h5py.File(h5_path, "r+") as h5:
        group = h5["model_weights/dense"]
        name = group.attrs["weight_names"][0].decode()
        data = group[name][()]
        del group[name]
        make(group, name, data)


@pytest.mark.parametrize("kind", ["external link", "soft link", "external storage", "virtual dataset"])
def test_hdf5_weights_stored_outside_the_file_are_refused(tmp_path, kind):
    """A Keras .h5 file can point a weight at another file's bytes: numnet reads only what it holds."""
    secret = tmp_path / "secret.h5"
    raw = tmp_path / "secret.bin"
    with h5py.File(secret, "w") as h5:
        h5["data"] = np.full((784, 128), 7.0, np.float32)
    raw.write_bytes(np.full((784, 128), 7.0, np.float32).tobytes())
    path = tmp_path / "m.h5"
    numnet.build(numnet.specs.mlp()).save(path)

    def make(group, name, data):
        if kind == "external link":
            group[name] = h5py.ExternalLink(str(secret), "/data")
        elif kind == "soft link":
            group["real"] = data
            group[name] = h5py.SoftLink(group["real"].name)
        elif kind == "external storage":
            group.create_dataset(name, shape=data.shape, dtype=data.dtype, external=[(str(raw), 0, raw.stat().st_size)])
        else:
            layout = h5py.VirtualLayout(shape=data.shape, dtype=data.dtype)
            layout[:] = h5py.VirtualSource(str(secret), "data", shape=data.shape)
            group.create_virtual_dataset(name, layout)

    _replace_first_kernel(path, make)
    with pytest.raises(ModelFileError, match="behind a|keeps its bytes in another file"):
        numnet.load(path)


def test_a_model_file_replaced_while_it_is_read_gives_one_files_header_and_arrays(tmp_path):
    """Another process saves over the file (atomically) between the header and the arrays: the reader
    keeps reading the file it opened, never the new file's weights under the old file's header."""
    from numnet.formats.npz import ModelFile

    path = tmp_path / "m.npz"
    first, second = numnet.build(numnet.specs.mlp(), seed=1), numnet.build(numnet.specs.mlp(), seed=2)
    first.save(path)
    with ModelFile(path) as saved:
        second.save(path)  # os.replace: a new file where the old one was
        weights, _ = saved.arrays([w.shape for w in first.get_weights()], [])
    for ours, theirs in zip(weights, first.get_weights()):
        np.testing.assert_array_equal(ours, theirs)
    assert not np.array_equal(numnet.load(path).get_weights()[0], first.get_weights()[0])


@pytest.mark.parametrize(("suffix", "member"), [(".npz", b"header.json"), (".npz", b"weights/000.npy"),
                                                (".keras", b"config.json")])  # fmt: skip
def test_an_encrypted_zip_member_is_refused_by_name(tmp_path, suffix, member):
    path = tmp_path / f"m{suffix}"
    numnet.build(numnet.specs.mlp()).save(path)
    data = bytearray(path.read_bytes())
    entry = data.index(b"PK\x01\x02")
    while True:  # the central directory entry naming `member`: set its "encrypted" flag
        length = int.from_bytes(data[entry + 28 : entry + 30], "little")
        if data[entry + 46 : entry + 46 + length] == member:
            data[entry + 8] |= 0x1
            break
        entry = data.index(b"PK\x01\x02", entry + 4)
    path.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match=f"{member.decode()} is encrypted"):
        numnet.load(path)


def test_a_report_of_seventy_runs_draws_the_most_accurate_and_lists_them_all(tmp_path, mnist):
    """A big grid's report stays readable: per-run figures draw the 12 most accurate runs and say so;
    the time table lists every run."""
    for i in range(70):
        finished_run(tmp_path / "runs" / f"run{i:02d}", name=f"run{i:02d}", test_accuracy=i / 100)
    home = tmp_path / "home"
    home.mkdir()
    (home / "mnist.npz").symlink_to(numnet.data.cache_path())
    result = subprocess.run([sys.executable, "-m", "numnet.report", str(tmp_path / "runs")], capture_output=True,
                            text=True, env={**os.environ, "NUMNET_HOME": str(home)}, timeout=600)  # fmt: skip
    assert result.returncode == 0, result.stderr
    page = (tmp_path / "runs" / "report.html").read_text()
    assert "confusion matrices (the 12 most accurate of 70 runs)" in page
    assert all(f"<td>run{i:02d}</td>" in page for i in range(70))
