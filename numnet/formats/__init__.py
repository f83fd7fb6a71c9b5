"""Files in and out: numnet's `.npz` (`npz`), Keras' `.keras` and `.h5` (`keras_files`), the
TensorFlow.js Layers format (`tfjs`) and run records (`records`). Readers return data and never
build a model; `save` writes any model; `numnet.load` builds what the readers return."""
