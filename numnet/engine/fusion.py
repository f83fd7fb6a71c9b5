"""Fusing runs of layers into one op where a backend has a kernel for the whole run.

The layers stay as they are (parameters, weights, summary, files); only the chain the model runs
forward and backward changes. The NumPy reference backend fuses nothing.
"""

from __future__ import annotations

from numnet.layers import Activation, BatchNormalization, Conv2D, Layer, MaxPooling2D


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


class ConvBatchNormReluMaxPool(Layer):
    """A network's first layer, a one-channel Conv2D, then BatchNormReluMaxPool: forward as the two
    ops, backward as one kernel that sums the conv's gradients from batch norm's per image. Nothing
    before it wants a gradient, so the gradient of the conv's output (1,024 x 26 x 26 x 64 floats in
    the seed CNN) is never written (benchmarks/RESULTS.md)."""

    type = "ConvBatchNormReluMaxPool"

    def __init__(self, conv: Conv2D, block: BatchNormReluMaxPool) -> None:
        super().__init__()
        self.conv, self.block, self.kernels = conv, block, conv.kernels
        self.params = {**conv.params, **block.params}
        self.output_shape = block.output_shape

    def forward(self, x, training):
        return self.block.forward(self.conv.forward(x, training), training)

    def backward(self, dy):
        conv, block, bn = self.conv, self.block, self.block.batchnorm
        conv.grads["kernel"], conv.grads["bias"], bn.grads["gamma"], bn.grads["beta"] = (
            self.kernels.conv_scale_relu_maxpool_backward(
                conv.x, conv.params["kernel"].shape, conv.config["padding"], block.x, dy, block.argmax,
                bn.params["gamma"], bn.mean, bn.inv_std, block.training,
            )
        )  # fmt: skip
        return None


def fuse(ops: list[Layer]) -> list[Layer]:
    """Replaces each BatchNormalization, ReLU, MaxPooling2D run when the kernels support it, and a
    first layer that is a one-channel Conv2D together with such a run after it."""
    fused = _fuse_batchnorm_relu_maxpool(ops)
    first = next((i for i, op in enumerate(fused) if op.params), None)
    if (
        first is not None
        and isinstance(fused[first], Conv2D)
        and fused[first].params["kernel"].shape[2] == 1
        and fused[first].config["strides"] == 1
        and fused[first].config["use_bias"]
        and first + 1 < len(fused)
        and isinstance(fused[first + 1], BatchNormReluMaxPool)
        and hasattr(fused[first].kernels, "conv_scale_relu_maxpool_backward")
    ):
        fused[first : first + 2] = [ConvBatchNormReluMaxPool(fused[first], fused[first + 1])]
    return fused


def _fuse_batchnorm_relu_maxpool(ops: list[Layer]) -> list[Layer]:
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
            and (run[2].pool, run[2].strides, run[2].config["padding"]) == ((2, 2), (2, 2), "valid")
            and hasattr(run[0].kernels, "scale_relu_maxpool")
        ):
            fused.append(BatchNormReluMaxPool(run[0], run[2]))
            i += 3
        else:
            fused.append(ops[i])
            i += 1
    return fused
