"""The data numnet learns from and reads: real MNIST (`mnist`), drawings made into MNIST-style input
(`preprocess`), and sets of digits drawn as people draw them (`drawings`)."""

from numnet.data.mnist import cache_path, load_mnist, to_model_input

__all__ = ["cache_path", "load_mnist", "to_model_input"]
