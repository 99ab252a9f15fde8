"""A tiny Llama with random weights and a byte-level tokenizer, built entirely offline.

Used by the tests (fast, deterministic) and, with larger size options, for GPU benchmarks. The tokenizer
is byte-level BPE with no merges: 256 byte tokens plus ChatML special tokens, so it needs no downloaded
vocabulary and can encode any text.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|pad|>"]
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


@dataclass(frozen=True)
class TinySpec:
    """Size options for `make_tiny_model`. Defaults give a ~0.1M-parameter model for tests;
    e.g. layers=12, hidden=768, heads=12, intermediate=2048, vocab=32000 gives ~110M parameters."""

    layers: int = 2
    hidden: int = 64
    heads: int = 4
    kv_heads: int | None = None
    intermediate: int | None = None
    vocab: int | None = None  # model vocabulary; at least the tokenizer's 260 tokens
    context: int = 512
    seed: int = 0
    init_range: float = 0.5  # wide init: peaked logits keep greedy decoding far from argmax ties


def build_tokenizer():  # -> transformers.PreTrainedTokenizerFast
    """A byte-level tokenizer (no merges) with ChatML special tokens and a chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {ch: i for i, ch in enumerate(sorted(alphabet))}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(SPECIAL_TOKENS)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|endoftext|>", eos_token="<|im_end|>",
                                   pad_token="<|pad|>", unk_token=None, model_max_length=10**6)
    fast.chat_template = CHAT_TEMPLATE
    return fast


def make_tiny_model(out_dir: str | Path, spec: TinySpec = TinySpec()) -> Path:
    """Write a random-weight LlamaForCausalLM and its tokenizer to `out_dir` (safetensors)."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer()
    vocab = max(spec.vocab or 0, len(tokenizer))
    config = LlamaConfig(
        vocab_size=vocab, hidden_size=spec.hidden, num_hidden_layers=spec.layers,
        num_attention_heads=spec.heads, num_key_value_heads=spec.kv_heads or spec.heads,
        intermediate_size=spec.intermediate or spec.hidden * 4, max_position_embeddings=spec.context,
        initializer_range=spec.init_range, tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(spec.seed)
    model = LlamaForCausalLM(config).eval()
    model.generation_config = GenerationConfig(bos_token_id=tokenizer.bos_token_id,
                                               eos_token_id=tokenizer.eos_token_id,
                                               pad_token_id=tokenizer.pad_token_id)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def parameter_count(spec: TinySpec) -> int:
    """Parameters of the model `spec` describes (for the CLI's summary line)."""
    kv = spec.kv_heads or spec.heads
    head_dim = spec.hidden // spec.heads
    inter = spec.intermediate or spec.hidden * 4
    vocab = max(spec.vocab or 0, 256 + len(SPECIAL_TOKENS))
    attn = spec.hidden * spec.hidden * 2 + 2 * spec.hidden * kv * head_dim
    per_layer = attn + 3 * spec.hidden * inter + 2 * spec.hidden
    return spec.layers * per_layer + 2 * vocab * spec.hidden + spec.hidden
