"""The built-in methods: one package per method, each registering into recon_trainer's slots.

Every sub-package except `examples` is imported by plugin discovery before configs are built.
"""

IS_RECON_TRAINER_PLUGINS = True  # tells discovery this is our package, not another "plugins"
