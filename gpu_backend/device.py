"""Device and dtype selection: CUDA with bfloat16 when present, CPU with float32 otherwise."""

from __future__ import annotations

import os

import torch

_DTYPES = {"bfloat16": torch.bfloat16, "bf16": torch.bfloat16, "float16": torch.float16,
           "fp16": torch.float16, "float32": torch.float32, "fp32": torch.float32}


def resolve_device(arg: str = "auto") -> torch.device:
    """auto -> cuda when available, else cpu; cuda / cuda:N are checked to exist."""
    if arg == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(arg)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(f"--device {arg}: CUDA is not available on this machine")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise RuntimeError(f"--device {arg}: only {torch.cuda.device_count()} CUDA device(s)")
    return device


def resolve_dtype(arg: str, device: torch.device) -> torch.dtype:
    """auto -> bfloat16 on CUDA (float16 where bf16 is unsupported), float32 on CPU."""
    if arg == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    if arg not in _DTYPES:
        raise ValueError(f"unknown dtype {arg!r}; choose auto, bfloat16, float16 or float32")
    return _DTYPES[arg]


def configure_threads(threads: int | None) -> None:
    """Intra-op threads: explicit, $EDGEGW_TORCH_THREADS (set per replica by --replicas), or all cores but one.

    The spare core is for the event loop, tokenization and co-located clients: when every core runs an
    OpenMP worker, any other runnable thread stalls OpenMP's barriers and decode steps get ~10x slower.
    """
    if threads is None:
        env = os.environ.get("EDGEGW_TORCH_THREADS")
        threads = int(env) if env else len(os.sched_getaffinity(0)) - 1
    torch.set_num_threads(max(1, threads))
