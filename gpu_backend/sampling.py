"""Next-token selection for a batch whose rows have different sampling parameters.

Order per row, as in vLLM: frequency/presence penalties on the raw logits (greedy rows too), then
temperature, top-k, top-p and a draw from the sequence's own generator.
"""

from __future__ import annotations

import torch

from gpu_backend.sequence import Sequence


def next_tokens(logits: torch.Tensor, seqs: list[Sequence]) -> list[int]:
    """Pick one token per row of `logits` [rows, vocab]: argmax for temperature 0, else top-k/top-p
    sampling with the sequence's own generator (so a seed reproduces regardless of the rest of the batch).
    Penalties are applied first, in float32 (a bfloat16 logit near 20 has a resolution of 0.125, coarser
    than the 0.2 penalties clients send)."""
    if any(s.params.penalized for s in seqs):
        logits = logits.float()
        apply_penalties(logits, seqs)
    out = logits.argmax(dim=-1).tolist()
    sampled = [i for i, s in enumerate(seqs) if not s.params.greedy]
    if sampled:
        rows = logits[sampled].float().cpu()
        for row, i in zip(rows, sampled, strict=True):
            out[i] = _sample(row, seqs[i])
    return out


def apply_penalties(logits: torch.Tensor, seqs: list[Sequence]) -> None:
    """OpenAI's frequency and presence penalties, per row, over the tokens that row generated so far
    (the prompt does not count):  logit[t] -= count[t] * frequency_penalty + (count[t] > 0) * presence_penalty.

    Only rows that ask for a penalty and have output pay for it: their generated ids are padded into one
    [rows, longest] tensor and counted with a single scatter_add (as vLLM does), so the cost is one
    small kernel per step, not one per sequence.
    """
    rows = [i for i, s in enumerate(seqs) if s.output_ids and s.params.penalized]
    if not rows:
        return
    longest = max(len(seqs[i].output_ids) for i in rows)
    vocab = logits.shape[-1]
    # Padding points at an extra column (index `vocab`) that is dropped after counting.
    ids = torch.tensor([seqs[i].output_ids + [vocab] * (longest - len(seqs[i].output_ids)) for i in rows],
                       device=logits.device)
    counts = torch.zeros(len(rows), vocab + 1, dtype=logits.dtype, device=logits.device)
    counts.scatter_add_(1, ids, torch.ones_like(ids, dtype=logits.dtype))
    counts = counts[:, :vocab]
    freq = torch.tensor([seqs[i].params.frequency_penalty for i in rows], dtype=logits.dtype, device=logits.device)
    pres = torch.tensor([seqs[i].params.presence_penalty for i in rows], dtype=logits.dtype, device=logits.device)
    index = torch.tensor(rows, device=logits.device)
    penalty = counts * freq[:, None] + (counts > 0).to(logits.dtype) * pres[:, None]
    logits.index_copy_(0, index, logits.index_select(0, index) - penalty)


def _sample(row: torch.Tensor, seq: Sequence) -> int:
    row = row / seq.params.temperature
    top_k = seq.params.top_k
    if 0 < top_k < row.shape[-1]:
        kth = torch.topk(row, top_k).values[-1]
        row = row.masked_fill(row < kth, float("-inf"))
    probs = torch.softmax(row, dim=-1)
    top_p = seq.params.top_p
    if top_p < 1.0:
        sorted_probs, order = probs.sort(descending=True)
        # Keep the smallest prefix whose mass reaches top_p (the first token always stays).
        keep = sorted_probs.cumsum(-1) - sorted_probs < top_p
        sorted_probs = sorted_probs * keep
        choice = torch.multinomial(sorted_probs, 1, generator=seq.generator)
        return int(order[choice])
    return int(torch.multinomial(probs, 1, generator=seq.generator))
