"""Next-token selection for a batch whose rows have different sampling parameters."""

from __future__ import annotations

import torch

from gpu_backend.sequence import Sequence


def next_tokens(logits: torch.Tensor, seqs: list[Sequence]) -> list[int]:
    """Pick one token per row of `logits` [rows, vocab]: argmax for temperature 0, else top-p sampling
    with the sequence's own generator (so a seed reproduces regardless of the rest of the batch)."""
    out = logits.argmax(dim=-1).tolist()
    sampled = [i for i, s in enumerate(seqs) if not s.params.greedy]
    if sampled:
        rows = logits[sampled].float().cpu()
        for row, i in zip(rows, sampled, strict=True):
            out[i] = _sample(row, seqs[i])
    return out


def _sample(row: torch.Tensor, seq: Sequence) -> int:
    probs = torch.softmax(row / seq.params.temperature, dim=-1)
    top_p = seq.params.top_p
    if top_p < 1.0:
        sorted_probs, order = probs.sort(descending=True)
        # Keep the smallest prefix whose mass reaches top_p (the first token always stays).
        keep = sorted_probs.cumsum(-1) - sorted_probs < top_p
        sorted_probs = sorted_probs * keep
        choice = torch.multinomial(sorted_probs, 1, generator=seq.generator)
        return int(order[choice])
    return int(torch.multinomial(probs, 1, generator=seq.generator))
