"""Training: typed configs and recipes, optimiser and schedules, DDP, the loop, and the
checkpoint format (save, load, rebuild a trained model: :func:`load_model`)."""
