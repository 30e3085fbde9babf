"""Evaluation: metrics (tensors in, tensors out) and evaluators that write results_test.json."""
