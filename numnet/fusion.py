"""Fusing runs of layers into one op where a backend has a kernel for the whole run.

The layers stay as they are (parameters, weights, summary, files); only the chain the model runs
forward and backward changes. The NumPy reference backend fuses nothing.
"""

from __future__ import annotations

from numnet.layers import Activation, BatchNormalization, Layer, MaxPooling2D


class BatchNormReluMaxPool(Layer):
    """BatchNormalization -> ReLU -> MaxPooling2D as one op: two passes over memory, not ten."""

    type = "BatchNormReluMaxPool"

    def __init__(self, batchnorm: BatchNormalization, pool: MaxPooling2D) -> None:
        super().__init__()
        self.batchnorm, self.kernels = batchnorm, batchnorm.kernels
        self.params, self.grads = batchnorm.params, batchnorm.grads
        self.output_shape = pool.output_shape

    def forward(self, x, training):
        bn = self.batchnorm
        self.x, self.training = x, training
        bn.mean, bn.inv_std = bn.statistics(x, training)
        y, self.argmax = self.kernels.scale_relu_maxpool(x, *bn.scale_and_shift())
        return y

    def backward(self, dy):
        bn = self.batchnorm
        dx, self.grads["gamma"], self.grads["beta"] = self.kernels.scale_relu_maxpool_backward(
            self.x, dy, self.argmax, self.params["gamma"], bn.mean, bn.inv_std, self.training
        )
        return dx


def fuse(ops: list[Layer]) -> list[Layer]:
    """Replaces each BatchNormalization, ReLU, MaxPooling2D run when the kernels support it."""
    fused: list[Layer] = []
    i = 0
    while i < len(ops):
        run = ops[i : i + 3]
        if (
            len(run) == 3
            and isinstance(run[0], BatchNormalization)
            and isinstance(run[1], Activation)
            and run[1].name == "relu"
            and isinstance(run[2], MaxPooling2D)
            and hasattr(run[0].kernels, "scale_relu_maxpool")
        ):
            fused.append(BatchNormReluMaxPool(run[0], run[2]))
            i += 3
        else:
            fused.append(ops[i])
            i += 1
    return fused
