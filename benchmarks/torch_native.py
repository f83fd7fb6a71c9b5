"""The seed networks written as a PyTorch user writes them (torch.nn, NCHW, torch.optim.Adam), so
the benchmark compares numnet with PyTorch itself and not only with Keras running on PyTorch.

Only speed is compared here: the layers are the seed specs' (same shapes, batch-norm momentum and
epsilon, dropout, Adam's settings), not numnet's initial weights. Images are kept channels-last,
PyTorch's advice for convolutions on a CPU (a CNN step here: 1.6-2.0 s, against 2.3-2.5 s in
its default NCHW layout).
"""

from __future__ import annotations

import numpy as np


def seed_network(name: str):
    from torch import nn

    if name == "mlp":
        return nn.Sequential(nn.Flatten(), nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 10))
    layers, channels = [], 1
    for filters in (64, 128):  # Keras' momentum 0.99 is PyTorch's 0.01; its epsilon is 1e-3
        layers += [nn.Conv2d(channels, filters, 3), nn.BatchNorm2d(filters, eps=1e-3, momentum=0.01), nn.ReLU(),
                   nn.MaxPool2d(2), nn.Dropout(0.1)]  # fmt: skip
        channels = filters
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(128 * 5 * 5, 10))


class Trainer:
    """`fit` as Keras' (shuffled epochs of NHWC images), for the benchmark's child."""

    def __init__(self, name: str, seed: int = 0, device: str = "cpu") -> None:
        import torch

        torch.manual_seed(seed)
        self.torch, self.device = torch, device
        self.model = seed_network(name).to(device, memory_format=torch.channels_last)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=1e-3, eps=1e-7)
        self.loss = torch.nn.CrossEntropyLoss()
        self.rng = np.random.default_rng(seed)

    def fit(self, x: np.ndarray, y: np.ndarray, epochs: int, batch_size: int, verbose: int = 0) -> None:
        torch = self.torch
        images = torch.from_numpy(np.ascontiguousarray(x)).permute(0, 3, 1, 2).to(self.device)  # NCHW, channels-last
        labels = torch.from_numpy(y.astype(np.int64)).to(self.device)
        self.model.train()
        for _ in range(epochs):
            self.epoch(images, labels, batch_size)

    def epoch(self, images, labels, batch: int) -> None:
        torch = self.torch
        order = torch.from_numpy(self.rng.permutation(len(images))).to(self.device)
        for start in range(0, len(images), batch):
            chosen = order[start : start + batch]
            self.optimizer.zero_grad(set_to_none=True)
            batch_images = images[chosen].contiguous(memory_format=torch.channels_last)
            self.loss(self.model(batch_images), labels[chosen]).backward()
            self.optimizer.step()

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Probabilities, as `model.predict` returns them: images in, NumPy out."""
        torch = self.torch
        self.model.eval()
        with torch.no_grad():
            images = torch.from_numpy(np.ascontiguousarray(x)).permute(0, 3, 1, 2).to(self.device)
            probabilities = torch.softmax(self.model(images.contiguous(memory_format=torch.channels_last)), dim=1)
            result = probabilities.cpu().numpy()
        self.model.train()
        return result
