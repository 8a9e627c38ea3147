"""How a training run ended: the two outcome words that the per-epoch records carry and that
the results store uses for finished trials (``sweep.store`` builds its vocabulary on them).
Torch-free, so the store and the sweep config can use them without importing torch."""

COMPLETED = "completed"  # trained to its last epoch
DIVERGED = "diverged"  # stopped by a non-finite minibatch loss

# The full-set metrics of an evaluated epoch and of every model (train and test, loss and accuracy).
METRICS = ("train_loss", "train_acc", "test_loss", "test_acc")
