"""Training: the model-factory, optimizer-factory and training-loop slots."""
