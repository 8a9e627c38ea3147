"""Pure-PyTorch datasets, models and the training loop. Never imports Ray."""
