"""One-off studies of the models (tables for training/EXPERIMENTS.md); the training library never imports them."""
