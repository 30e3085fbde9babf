"""Command-line entry points (thin: parse, build, run)."""
