"""Example plugins written as a user would write their own.

Discovery does not import this package's modules: a launcher script imports them and then
calls recon_runner's main(), e.g. `python -m recon_trainer_plugins.examples.launch_line_fit`.
"""
