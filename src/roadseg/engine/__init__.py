"""Training, evaluation, checkpoints, distributed helpers."""
