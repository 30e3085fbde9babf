"""Data: the data-source slot and (later) batch types, cameras and dataset providers."""
