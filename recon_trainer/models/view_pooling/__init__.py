"""View pooling: features of the source views sampled at 3D points and aggregated over the views."""
