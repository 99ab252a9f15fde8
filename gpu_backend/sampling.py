"""Next-token selection for a batch whose rows have different sampling parameters.

Order per row, as in vLLM: frequency/presence penalties on the raw logits (greedy rows too), then
temperature, top-k, top-p and a draw from the sequence's own generator.
"""

from __future__ import annotations

import numpy as np
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

    Only rows that ask for a penalty and have output pay for it, and only for the tokens they generated:
    their ids are padded into one [rows, longest] tensor, counted with one `unique` over (row, token)
    pairs, and subtracted at those positions. The cost follows the tokens generated, not rows x vocabulary
    (a dense count over GLM's 151k-token vocabulary would cost more than a small model's decode step).
    """
    rows = [i for i, s in enumerate(seqs) if s.output_ids and s.params.penalized]
    if not rows:
        return
    device, vocab = logits.device, logits.shape[-1]
    longest = max(len(seqs[i].output_ids) for i in rows)
    # Padding is token `vocab`, one past the last: counted, then dropped.
    ids = np.full((len(rows), longest), vocab, dtype=np.int64)
    for r, i in enumerate(rows):  # numpy takes a list of ints ~3x faster than torch.tensor does
        ids[r, : len(seqs[i].output_ids)] = seqs[i].output_ids
    flat = torch.from_numpy(ids).to(device) + torch.arange(len(rows), device=device)[:, None] * (vocab + 1)
    pairs, counts = torch.unique(flat, return_counts=True)
    row, token = pairs // (vocab + 1), pairs % (vocab + 1)
    real = token < vocab
    row, token, counts = row[real], token[real], counts[real].to(logits.dtype)
    freq = torch.tensor([seqs[i].params.frequency_penalty for i in rows], dtype=logits.dtype, device=device)
    pres = torch.tensor([seqs[i].params.presence_penalty for i in rows], dtype=logits.dtype, device=device)
    batch_row = torch.tensor(rows, device=device)[row]
    logits.index_put_((batch_row, token), -(counts * freq[row] + pres[row]), accumulate=True)


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
