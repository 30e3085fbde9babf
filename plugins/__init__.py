"""The built-in methods, installed as the package `recon_trainer_plugins`: one package per
method, each registering into recon_trainer's slots and shipping its YAML configs in configs/.

Every sub-package except `examples` is imported by plugin discovery before configs are built.
"""
