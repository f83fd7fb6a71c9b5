"""numnet's engine: the Model (a spec's layers on one kernel module), the one training loop every
backend shares (`training`), optimizers, and the fusion of layer runs into single kernels."""
