"""Sampling as the client asks: frequency/presence penalties (checked against a reference computation,
in process and through a real backend, per sequence inside a batch), top_k, and their 400s."""

from __future__ import annotations

import asyncio
import collections
import random

import httpx
import pytest
import torch

from gpu_backend.detok import TextState
from gpu_backend.sampling import apply_penalties, next_tokens
from gpu_backend.sequence import SamplingParams, Sequence
from tests.backend.conftest import BackendProc

MODEL = "tiny-llama"


def _seq(output: list[int], **params: float) -> Sequence:
    seq = Sequence([1, 2, 3], SamplingParams(max_tokens=100, **params), TextState(None, []), asyncio.Queue())
    seq.output_ids = list(output)
    return seq


def _reference(row: list[float], output: list[int], freq: float, pres: float) -> list[float]:
    """OpenAI's definition, one token at a time."""
    counts = collections.Counter(output)
    return [x - counts[t] * freq - (1.0 if counts[t] else 0.0) * pres for t, x in enumerate(row)]


def test_penalised_logits_match_the_reference_per_row() -> None:
    rng = random.Random(7)
    vocab = 50
    rows = [([], 0.5, 0.5), ([3, 3, 3, 9], 0.2, 0.0), ([1, 2, 1], 0.0, 1.5), ([4, 4, 7, 7, 7, 7], -1.0, 2.0),
            ([5, 6], 0.0, 0.0), ([0, 49, 49], 2.0, -2.0)]
    logits = torch.tensor([[rng.uniform(-5, 5) for _ in range(vocab)] for _ in rows])
    seqs = [_seq(out, temperature=0.0, frequency_penalty=f, presence_penalty=p) for out, f, p in rows]
    expected = torch.tensor([_reference(logits[i].tolist(), out, f, p) for i, (out, f, p) in enumerate(rows)])
    got = logits.clone()
    apply_penalties(got, seqs)
    torch.testing.assert_close(got, expected)


def test_greedy_pick_moves_off_a_repeated_token() -> None:
    logits = torch.tensor([[0.0, 3.0, 2.9, 0.0], [0.0, 3.0, 2.9, 0.0]])
    plain, penalised = _seq([1, 1], temperature=0.0), _seq([1, 1], temperature=0.0, frequency_penalty=0.2)
    assert next_tokens(logits.clone(), [plain, penalised]) == [1, 2]


def test_top_k_limits_the_draw() -> None:
    logits = torch.tensor([[5.0, 4.0, 3.0, 2.0, 1.0, 0.0]])
    picks = {next_tokens(logits.clone(), [_seq([], temperature=2.0, top_k=2, seed=i)])[0] for i in range(200)}
    assert picks == {0, 1}
    wide = {next_tokens(logits.clone(), [_seq([], temperature=2.0, seed=i)])[0] for i in range(200)}
    assert len(wide) > 2


# ---- through a real backend ----------------------------------------------------------------------------

PROMPT = [72, 101, 108, 108, 111]  # token ids: the byte-level tiny tokenizer's "Hello"
TOKENS = 24


def _reference_greedy(model, prompt: list[int], n: int, freq: float, pres: float) -> list[int]:
    ids, out = list(prompt), []
    with torch.inference_mode():
        for _ in range(n):
            row = model(torch.tensor([ids])).logits[0, -1].tolist()
            row = _reference(row, out, freq, pres)
            tok = max(range(len(row)), key=row.__getitem__)
            out.append(tok)
            ids.append(tok)
    return out


async def _complete(backend: BackendProc, **fields: object) -> str:
    async with httpx.AsyncClient(timeout=60) as client:
        r = await client.post(backend.url + "/v1/completions", json={
            "model": MODEL, "prompt": PROMPT, "max_tokens": TOKENS, "temperature": 0, "ignore_eos": True, **fields})
    assert r.status_code == 200, r.text
    return r.json()["choices"][0]["text"]


def test_server_penalties_change_a_repetitive_greedy_answer(tiny_model, tiny_backend: BackendProc) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model)
    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32).eval()
    settings = [(0.0, 0.0), (0.2, 0.0), (0.0, 1.5), (-0.5, 0.5)]
    ids = [_reference_greedy(model, PROMPT, TOKENS, f, p) for f, p in settings]
    plain = ids[0]
    # Where the plain answer repeats a token, the seed's 0.2 frequency penalty picks another one.
    first_repeat = next(i for i, t in enumerate(plain) if t in plain[:i] and plain[i - 1] != t)
    assert ids[1][:first_repeat] == plain[:first_repeat] and ids[1][first_repeat] != plain[first_repeat]
    assert ids[2] != plain
    expected = [tok.decode(out, skip_special_tokens=True) for out in ids]

    async def together() -> list[str]:
        # Penalised and plain rows share the batch: each row's penalty must stay its own.
        return list(await asyncio.gather(*(_complete(tiny_backend, frequency_penalty=f, presence_penalty=p)
                                           for f, p in settings * 3)))

    alone = [asyncio.run(_complete(tiny_backend, frequency_penalty=f, presence_penalty=p)) for f, p in settings]
    assert alone == expected
    assert asyncio.run(together()) == expected * 3


@pytest.mark.parametrize(("field", "value"), [
    ("frequency_penalty", 3), ("frequency_penalty", "abc"), ("presence_penalty", -2.5),
    ("presence_penalty", True), ("top_k", -2), ("top_k", 1.5), ("logprobs", True), ("top_logprobs", 2),
])
def test_sampling_fields_out_of_range_name_the_field(tiny_backend: BackendProc, field: str, value: object) -> None:
    r = httpx.post(tiny_backend.url + "/v1/chat/completions", timeout=30, json={
        "model": MODEL, "max_tokens": 2, "messages": [{"role": "user", "content": "hi"}], field: value})
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["param"] == field and field in err["message"]
    assert httpx.get(tiny_backend.url + "/healthz").json()["status"] == "ready"


def test_top_k_seed_and_stop_still_work(tiny_backend: BackendProc) -> None:
    def ask(**fields: object) -> dict:
        r = httpx.post(tiny_backend.url + "/v1/completions", timeout=60, json={
            "model": MODEL, "prompt": "seeded", "max_tokens": 12, "temperature": 1.0, **fields})
        assert r.status_code == 200, r.text
        return r.json()["choices"][0]

    first = ask(seed=11, top_k=5, top_p=0.85, frequency_penalty=0.2)
    assert ask(seed=11, top_k=5, top_p=0.85, frequency_penalty=0.2) == first
    assert ask(seed=11, top_k=1)["text"] == ask(temperature=0, max_tokens=12)["text"]  # top_k 1 is greedy
    greedy = ask(temperature=0, max_tokens=12, ignore_eos=True)["text"]
    cut = greedy[3:5]
    stopped = ask(temperature=0, max_tokens=12, ignore_eos=True, stop=[cut], frequency_penalty=0.0)
    assert stopped["finish_reason"] == "stop" and cut not in stopped["text"]
