"""`python -m numnet.export MODEL --format tfjs|keras|h5 --out DIR`: a trained model for other tools.

tfjs writes the TensorFlow.js Layers format (model.json + group1-shard1of1.bin) that
`tf.loadLayersModel` reads in a browser; keras and h5 write the files `keras.models.load_model`
reads. None of them needs TensorFlow.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numnet
from numnet.errors import ModelFileError, run_command
from numnet.formats.keras_files import write_keras_file
from numnet.formats.tfjs import WEIGHTS_FILE, write_tfjs
from numnet.io import output_folder

FORMATS = ("tfjs", "keras", "h5")


def export(model, format: str, out: str | Path, source: Path | None = None) -> Path:
    """Writes `model` in `format` under the folder `out`; returns the main file's path. A file it
    would write that is `source` itself (the model file it was loaded from) is refused, not replaced."""
    out = output_folder(Path(out), ModelFileError)
    path = out / ("model.json" if format == "tfjs" else f"{model.spec['name']}.{format}")
    written = [path, out / WEIGHTS_FILE] if format == "tfjs" else [path]
    if source is not None and any(target.exists() and target.samefile(source) for target in written):
        raise ModelFileError(f"exporting '{source}' to {out} would overwrite '{source}' itself; choose another --out")
    if format == "tfjs":
        return write_tfjs(model.spec, model.get_weights(), out)
    write_keras_file(model.spec, model.get_weights(), path, model.optimizer.get_state(), model.learning_rate)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m numnet.export", description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, help="a model file (.npz, .keras or .h5)")
    parser.add_argument("--format", choices=FORMATS, default="tfjs")
    parser.add_argument("--out", type=Path, required=True, help="the folder to write into")
    args = parser.parse_args(argv)
    return run_command(lambda: f"wrote {export(numnet.load(args.model, 'numpy'), args.format, args.out, args.model)}")


if __name__ == "__main__":
    sys.exit(main())
