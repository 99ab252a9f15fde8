"""Cost of frequency/presence penalties per decode step, in process: `gpu_backend.sampling.apply_penalties`
on one batch of penalised rows, against the greedy pick it precedes (argmax over the same logits).

    .venv/bin/python bench/penalties.py                  # CPU, one thread, as the engine on a 2-core VM
    .venv/bin/python bench/penalties.py --device cuda

Rows are the phone agent's sampling (frequency_penalty 0.2); vocabularies are the tiny test model's (270)
and GLM-4.1V's (151,552); "generated" is how many tokens each row has produced so far.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from gpu_backend.detok import TextState  # noqa: E402
from gpu_backend.sampling import apply_penalties  # noqa: E402
from gpu_backend.sequence import SamplingParams, Sequence  # noqa: E402


def timed(fn, repeat: int) -> float:
    fn()
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / repeat * 1000


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--rows", type=int, default=32)
    p.add_argument("--repeat", type=int, default=10)
    args = p.parse_args()
    torch.set_num_threads(1)
    rng = random.Random(0)
    print(f"{'vocab':>8}{'generated':>11}{'penalties ms':>14}{'argmax ms':>11}{'ratio':>8}   ({args.rows} rows, {args.device})")
    for vocab, generated in [(270, 64), (151_552, 100), (151_552, 1000), (151_552, 3000)]:
        seqs = []
        for _ in range(args.rows):
            seq = Sequence([1], SamplingParams(max_tokens=4096, temperature=0.0, frequency_penalty=0.2),
                           TextState(None, []), asyncio.Queue())
            seq.output_ids = [rng.randrange(vocab) for _ in range(generated)]
            seqs.append(seq)
        logits = torch.randn(args.rows, vocab, device=args.device)
        pen = timed(lambda: apply_penalties(logits, seqs), args.repeat)  # noqa: B023
        pick = timed(lambda: logits.argmax(dim=-1).tolist(), args.repeat)  # noqa: B023
        print(f"{vocab:>8}{generated:>11}{pen:>14.2f}{pick:>11.2f}{pen / pick:>7.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
