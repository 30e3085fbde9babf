"""The --device option of the command-line tools (tools/moge_infer.py, tools/spann3r_reconstruct.py)."""
from __future__ import annotations

from typing import Optional

import torch

from recon_trainer.errors import UserError


def device_from_option(value: Optional[str], option: str = "--device") -> torch.device:
    """torch.device(value), or cuda when it is available else cpu when value is None or empty;
    UserError naming `option` when torch does not know the device or it is CUDA without CUDA here."""
    try:
        device = torch.device(value or ("cuda" if torch.cuda.is_available() else "cpu"))
    except RuntimeError as error:
        raise UserError(f"{option} {value!r}: {error}") from error
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"{option} {value!r}: CUDA is not available here; use {option} cpu")
    return device
