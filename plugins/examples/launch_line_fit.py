"""Launcher for the line-fit example: import the plugin module, then run recon_runner's main().

    python -m recon_trainer_plugins.examples.launch_line_fit --config-name example_line_fit exp_dir=runs/line
"""
import recon_trainer_plugins.examples.line_fit  # noqa: F401  (registers the example's implementations)
from recon_trainer.cli.runner import main

if __name__ == "__main__":
    main()
