"""The prefix cache on image-text-to-text engines, for the phone agent's shape of prompt: the same long
system prompt and text history, then one fresh screenshot. The text before the first image is reused,
every image is computed fresh, and greedy output stays token for token transformers' own `generate`
(tiny random GLM-4.1V, Qwen2.5-VL and Idefics3 models made here, served by real `edgegw backend`
processes with the cache on, its default)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from testkit.media_files import photo
from tests.backend.conftest import BackendProc, start_backend
from tests.backend.test_vlm import Reference, chat, image_part

ARCHS = ["glm4v", "qwen2_5_vl", "idefics3"]
BLOCK = 16  # gpu_backend.prefix_cache.BLOCK_TOKENS
SYSTEM = "You operate a phone for the user. Look at the screenshot and answer with one action. " * 4
HISTORY = [{"role": "user", "content": "Open the settings app."},
           {"role": "assistant", "content": "do(action=\"Launch\", app=\"Settings\")"}]


@pytest.fixture(scope="module", params=ARCHS)
def vlm(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[BackendProc, Any]]:
    from gpu_backend.tiny_vlm import make_tiny_vlm

    model_dir = make_tiny_vlm(tmp_path_factory.mktemp("vlmcache") / f"tiny-{request.param}", request.param)
    backend = start_backend(model_dir, "--served-model-name", "tiny-vlm", "--engine", "thread",
                            name=f"vlmcache-{request.param}")
    yield backend, Reference(model_dir)
    backend.stop()


def step(seed: int, history: list[dict[str, Any]] = HISTORY) -> list[dict[str, Any]]:
    """One agent step: the shared system prompt and text history, then a fresh screenshot and a question."""
    return [{"role": "system", "content": SYSTEM}, *history,
            {"role": "user", "content": [image_part(photo(seed, 64, 48)), {"type": "text", "text": "Next action?"}]}]


def first_image(ref: Reference, messages: list[dict[str, Any]]) -> int:
    """Index of the first image placeholder in the prompt transformers' processor makes of `messages`."""
    from PIL import Image

    msgs = [{**m, "content": [{"type": "image", "image": Image.new("RGB", (64, 48))} if p["type"] == "image_url"
                              else p for p in m["content"]]} if isinstance(m["content"], list) else m
            for m in messages]
    ids = ref.processor.apply_chat_template(msgs, add_generation_prompt=True, tokenize=True, return_dict=True,
                                            return_tensors="pt")["input_ids"][0].tolist()
    return int(ids.index(ref.model.config.image_token_id))


def answer(out: dict[str, Any]) -> tuple[str, int, int]:
    usage = out["usage"]
    return out["choices"][0]["message"]["content"], usage["prompt_tokens"], usage["prompt_tokens_details"]["cached_tokens"]


def test_text_before_the_first_image_is_reused_and_output_unchanged(vlm: tuple[BackendProc, Reference]) -> None:
    backend, ref = vlm
    longer = [*HISTORY, {"role": "user", "content": "Now turn on wifi."},
              {"role": "assistant", "content": "do(action=\"Tap\", element=[500, 120])"}]
    steps = [step(1), step(2), step(3, longer)]
    expected = [ref.answer(m) for m in steps]
    got = [answer(asyncio.run(chat(backend, m))) for m in steps]
    assert [(text, prompt) for text, prompt, _ in got] == expected
    limit = first_image(ref, steps[0])
    assert limit > 3 * BLOCK  # the shared text is several blocks long
    # The first step computed everything; later ones reused the text blocks before their image, never more.
    assert got[0][2] == 0
    assert limit - BLOCK < got[1][2] <= limit and got[1][2] % BLOCK == 0
    # The longer history parts from step 1's text a few tokens before its image marker.
    assert limit - 2 * BLOCK < got[2][2] <= first_image(ref, steps[2])

    async def together() -> list[dict[str, Any]]:
        # Hits of different lengths, fresh images and a text-only chat prefilled in one group.
        plain = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "no screenshot"}]
        return list(await asyncio.gather(*(chat(backend, m) for m in [step(4), step(5, longer), plain, step(1)])))

    batched = [answer(out) for out in asyncio.run(together())]
    assert [t for t, _, _ in batched] == [expected_text for expected_text, _ in
                                          [ref.answer(step(4)), ref.answer(step(5, longer)),
                                           ref.answer([{"role": "system", "content": SYSTEM},
                                                       {"role": "user", "content": "no screenshot"}]), expected[0]]]
    # A row computes the group's widest uncached suffix, so a short row may reuse less than its hit.
    assert batched[0][2] > 0 and batched[1][2] > 0
    # The same screenshot again still reuses only the text: images are always computed fresh.
    assert batched[3][2] <= limit


def test_text_only_chats_on_a_vision_engine_use_the_whole_prompt(vlm: tuple[BackendProc, Reference]) -> None:
    backend, ref = vlm
    history = [{"role": "system", "content": "Text chat only. " + SYSTEM}, {"role": "user", "content": "Hello there."}]
    first = answer(asyncio.run(chat(backend, history)))
    follow = [*history, {"role": "assistant", "content": first[0]}, {"role": "user", "content": "And then?"}]
    second = answer(asyncio.run(chat(backend, follow)))
    assert (first[0], first[1]) == ref.answer(history) and (second[0], second[1]) == ref.answer(follow)
    assert first[2] == 0
    # Whole blocks of the first prompt (and of its answer, remembered at the end) are reused.
    assert first[1] - BLOCK < second[2] < second[1]


def test_mrope_positions_after_a_hit_are_those_of_a_full_prefill(tmp_path: Path) -> None:
    """Direct check of VisionBatch.prefill: the positions it gives for a suffix on top of cached columns
    equal the same columns of a prefill of the whole prompt, and so does each row's rope delta."""
    import torch

    from gpu_backend.detok import TextState
    from gpu_backend.sequence import SamplingParams, Sequence
    from gpu_backend.tiny_vlm import make_tiny_vlm
    from gpu_backend.vision_batch import VisionBatch
    from gpu_backend.vlm import load_processor, load_vision_model

    model_dir = make_tiny_vlm(tmp_path / "glm", "glm4v")
    model, tokenizer = load_vision_model(model_dir, torch.device("cpu"), torch.float32)
    processor = load_processor(model_dir)
    from PIL import Image

    msgs = [{"role": "system", "content": SYSTEM},
            {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Next?"}]}]
    text = processor.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
    out = processor(text=[text], images=[Image.new("RGB", (64, 48), "red")], return_tensors="np")
    arrays = {k: v for k, v in out.items() if k not in ("input_ids", "attention_mask")}
    ids = [int(t) for t in out["input_ids"][0]]
    vision = VisionBatch(model)
    cut = vision.cacheable(ids, arrays)
    assert cut is not None and 2 * BLOCK < cut < len(ids) and ids[cut] == model.config.image_token_id

    def positions(past: int) -> tuple[torch.Tensor, int]:
        seq = Sequence(ids, SamplingParams(max_tokens=1, temperature=0.0), TextState(tokenizer, []),
                       asyncio.Queue(), vision=arrays)
        width = len(ids) - past
        mask = torch.ones((1, len(ids)), dtype=torch.long)
        plain = (mask.cumsum(-1) - 1)[:, past:]
        _, pos = vision.prefill([seq], torch.tensor([ids[past:]]), mask, plain)
        assert pos.shape[-1] == width
        return pos, seq.rope_delta

    full, delta = positions(0)
    past = cut // BLOCK * BLOCK
    suffix, suffix_delta = positions(past)
    assert torch.equal(suffix, full[..., past:]) and suffix_delta == delta != 0
    # Before the first image every axis is the plain index: what a cached text block was computed with.
    assert torch.equal(full[:, 0, :cut], torch.arange(cut).expand(3, -1))
