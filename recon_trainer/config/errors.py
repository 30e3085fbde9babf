"""Errors a user can act on, and the closest-match hint they carry."""
import difflib
from typing import Iterable, Optional

from recon_trainer.errors import UserError


class ConfigError(UserError, ValueError):
    """A mistake in a config: unknown key or implementation, wrong type, missing value.

    The command-line tools print it as one message, without a traceback, and exit with status 2.
    """


class PluginImportError(UserError, ImportError):
    """A plugin (built-in package or entry point) could not be imported; names it and the cause."""


def closest_match(word: str, choices: Iterable[str]) -> Optional[str]:
    """The choice most similar to `word` (case-insensitive), or None if nothing is close."""
    by_lower = {choice.lower(): choice for choice in choices}
    found = difflib.get_close_matches(word.lower(), list(by_lower), n=1, cutoff=0.6)
    return by_lower[found[0]] if found else None


def did_you_mean(word: str, choices: Iterable[str], prefix: str = "") -> str:
    """"; did you mean 'prefix+best'?" for the closest choice, or "" when none is close."""
    best = closest_match(word, choices)
    return f"; did you mean '{prefix}{best}'?" if best is not None else ""
