"""numnet in Keras terms: one mapping (`mapping`: layer, optimizer and schedule configs) that the
Keras backends, the Keras file reader and writer and the TensorFlow.js writer share; a spec as a Keras
model (`bridge`); the Keras layers numnet adds (`layers`); and the frameworks Keras runs on. Keras
itself is imported only when a Keras model is built."""

# Keras' name for each framework -> (the module it imports, numnet's install extra for it)
KERAS_FRAMEWORKS = {"tensorflow": ("tensorflow", "tf"), "jax": ("jax", "jax"), "torch": ("torch", "torch")}
