"""The one device resolver: config device names to a ``torch.device``.

Every stage that runs torch (simulation, the judge, the ridge and MLP maps)
resolves its configured device here, so ``auto`` means the same everywhere
and a missing GPU fails with the same message (docs/architecture.md,
"Rules and jobs").
"""

from __future__ import annotations

import torch


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None``/``auto`` -> the current CUDA device when there is one, else CPU; otherwise as given.

    A bare ``cuda`` becomes the current CUDA device (``cuda:N``), so tensors made
    from the result compare equal to those a model placed there holds. Raises
    ValueError naming the request when CUDA is asked for and not available.
    """
    if device is None or device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"device {str(device)!r} requested but CUDA is not available; set the device to 'cpu' or 'auto'"
            )
        if dev.index is None:
            dev = torch.device("cuda", torch.cuda.current_device())
    return dev
