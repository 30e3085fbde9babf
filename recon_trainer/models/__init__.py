"""Models: the protocol every trainable model follows, and the generic NVS models."""
