"""Visualisation: fly-around renders of a trained model and video files."""
