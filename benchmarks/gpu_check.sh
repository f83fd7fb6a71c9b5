#!/usr/bin/env bash
# numnet's CUDA engine checked and timed on a GPU machine, in one prepared run (~8 minutes).
#
#   bash benchmarks/gpu_check.sh prepare   # here: wheels the GPU image lacks, MNIST, into .gpu/
#   bash benchmarks/gpu_check.sh           # there (the device tool: carry .gpu): writes to $OUT
#
# On the GPU: the kernel harness and the whole-network tests at full size, with numnet's own
# products and with cuBLAS's; 15 epochs of the seed CNN on cuda (test accuracy); benchmarks/gpu.py.
set -u
cd "$(dirname "$0")/.."
if [ "${1:-}" = prepare ]; then
    mkdir -p .gpu/wheels .gpu/home
    # The GPU image (Python 3.12) has numba-cuda, CuPy, JAX and PyTorch, not Keras.
    python -m pip download keras namex optree --no-deps --python-version 3.12 --only-binary=:all: \
        --platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64 -d .gpu/wheels -q
    python -c "
import numpy as np, numnet
arrays = dict(zip(('x_train', 'y_train', 'x_test', 'y_test'), (a for pair in numnet.data.load_mnist() for a in pair)))
np.savez_compressed('.gpu/home/mnist.npz', **arrays)"
    du -sh .gpu
    exit 0
fi
OUT=${OUT:-/tmp/gpu_check}
mkdir -p "$OUT"
export NUMNET_HOME=$PWD/.gpu/home NUMBA_ENABLE_CUDASIM=0 PYTHONDONTWRITEBYTECODE=1
step() { echo "== $(date +%T) $*" | tee -a "$OUT/steps.txt"; }
step install
python3 -m pip install -q --no-index --no-deps .gpu/wheels/*.whl
python3 -m pip install -q --no-deps --no-build-isolation -e . 2>&1 | tail -3
nvidia-smi -L | tee -a "$OUT/steps.txt"
python3 -c "import numba, numpy; from numba import cuda; print('numba', numba.__version__, 'numpy', numpy.__version__,
 cuda.get_current_device().name)" | tee -a "$OUT/steps.txt"
for products in numnet cupy; do
    step "tests, $products products"
    NUMNET_CUDA_PRODUCTS=$products timeout 180 python3 -m pytest -q -p no:cacheprovider tests/test_kernels.py \
        tests/test_cuda.py -k "cuda and not web" --durations=5 2>&1 | tail -25 > "$OUT/tests_$products.txt"
    tail -1 "$OUT/tests_$products.txt" | tee -a "$OUT/steps.txt"
done
step "seed CNN, 15 epochs on cuda"
timeout 120 python3 -m numnet.train --backend cuda --model cnn --epochs 15 --out "$OUT/train" 2>&1 \
    | grep -v "it/s\|epoch/s" | tail -6 | tee -a "$OUT/steps.txt"
step "benchmarks/gpu.py"
timeout 300 python3 benchmarks/gpu.py --out "$OUT" 2>&1 | tail -20 > "$OUT/gpu_run.txt"
cat "$OUT/gpu.md" >> "$OUT/steps.txt" 2>/dev/null
step done
