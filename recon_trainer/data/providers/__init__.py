"""Dataset map providers of shared formats: NeRF's Blender layout and the built-in rendered scene."""
