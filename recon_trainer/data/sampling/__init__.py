"""Sampling: sequences of N views with frame-gap control (sequences.py)."""
