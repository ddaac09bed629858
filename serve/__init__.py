"""dcgan-serve: an HTTP service around runtime.Generator and its dynamic batcher."""
