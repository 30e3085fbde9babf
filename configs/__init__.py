"""The YAML configs, installed as the package recon_trainer.configs (see setup.py)."""
