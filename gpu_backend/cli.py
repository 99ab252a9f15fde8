"""`edgegw backend` and `edgegw make-tiny-model` (owned by the GPU backend work)."""

from __future__ import annotations

import argparse

# Options forwarded verbatim to each replica by `--replicas N` (everything but --port/--replicas).
_FORWARDED = ("model", "served_model_name", "embedding_model", "embedding_served_model_name", "host", "device",
              "dtype", "max_batch_size", "max_queue", "max_model_len", "prefill_tokens", "max_waiting_steps",
              "default_max_tokens", "threads", "drain_timeout", "log_level", "engine", "limit_mm_per_prompt",
              "max_image_pixels", "allow_remote_images", "remote_image_max_bytes", "remote_image_timeout",
              "mm_processor_kwargs", "prefix_cache_mb")


def register(sub: argparse._SubParsersAction) -> None:
    """Add the backend's subcommands. Imports torch only when a subcommand runs."""
    p = sub.add_parser("backend", help="run the model server (OpenAI API, continuous batching)",
                       description="OpenAI-compatible model server with continuous batching. See docs/backend.md.")
    p.add_argument("--model", required=True,
                   help="model directory (config + safetensors, or a .gguf inside), a .gguf file, "
                        "or 'demo'/'smollm2' for the bundled SmolLM2-135M-Instruct")
    p.add_argument("--served-model-name", default=None, help="name clients use (default: directory name)")
    p.add_argument("--embedding-model", default=None,
                   help="sentence-transformers directory, or 'default' for the bundled all-MiniLM-L6-v2")
    p.add_argument("--embedding-served-model-name", default=None)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=9101)
    p.add_argument("--replicas", type=int, default=1, help="processes on ports PORT..PORT+N-1")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--dtype", default="auto", choices=["auto", "bfloat16", "float16", "float32"])
    p.add_argument("--max-batch-size", type=int, default=32, help="sequences decoded together")
    p.add_argument("--max-queue", type=int, default=256, help="waiting sequences beyond the batch; then 503")
    p.add_argument("--max-model-len", type=int, default=None, help="cap the context length")
    p.add_argument("--prefill-tokens", type=int, default=2048,
                   help="padded prompt tokens prefilled in one step (bounds the stall for running sequences)")
    p.add_argument("--max-waiting-steps", type=int, default=4,
                   help="while a batch runs, gather arrivals for up to N decode steps and prefill them together")
    p.add_argument("--default-max-tokens", type=int, default=16,
                   help="/v1/completions max_tokens when the request gives none (chat: rest of the context)")
    p.add_argument("--prefix-cache-mb", type=float, default=1024.0,
                   help="memory (MiB) for reusing the KV of prompt prefixes across requests, least recently "
                        "used evicted first; 0 turns the prefix cache off")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: available cores)")
    p.add_argument("--drain-timeout", type=float, default=30.0, help="seconds to drain on SIGTERM")
    p.add_argument("--log-level", default="warning")
    p.add_argument("--engine", default="process", choices=["process", "thread"],
                   help="run the model in a child process (default; no GIL contention with HTTP) or a thread")
    images = p.add_argument_group("image-text-to-text models (GLM-4.1V, Qwen2.5-VL, Idefics3/SmolVLM)")
    images.add_argument("--limit-mm-per-prompt", default="image=8",
                        help="images per request, as vLLM's flag: image=N or {\"image\": N} (default image=8)")
    images.add_argument("--mm-processor-kwargs", "--mm_processor_kwargs", default=None,
                        help='as vLLM\'s flag: \'{"max_pixels": 5000000}\' resizes each image to at most that many '
                             "pixels (and min_pixels to at least), for GLM-4.1V and Qwen2.5-VL")
    images.add_argument("--max-image-pixels", type=int, default=12_845_056,
                        help="refuse larger images (width x height; checked before decoding)")
    images.add_argument("--allow-remote-images", action="store_true",
                        help="fetch http(s) image URLs (default: only data: URLs)")
    images.add_argument("--remote-image-max-bytes", type=int, default=10 * 1024 * 1024)
    images.add_argument("--remote-image-timeout", type=float, default=5.0, help="seconds per remote image")
    p.set_defaults(func=_backend)

    p = sub.add_parser("make-tiny-model", help="write a random-weight Llama + byte-level tokenizer (offline)")
    p.add_argument("dir")
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--kv-heads", type=int, default=None)
    p.add_argument("--intermediate", type=int, default=None, help="MLP width (default 4 x hidden)")
    p.add_argument("--vocab", type=int, default=None, help="model vocabulary (>= 260, the tokenizer's)")
    p.add_argument("--context", type=int, default=512, help="max_position_embeddings")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--init-range", type=float, default=0.5)
    p.set_defaults(func=_make_tiny)


def _backend(args: argparse.Namespace) -> int:
    from pathlib import Path

    from gpu_backend.models import DEMO_ALIASES, EMBEDDING_ALIASES

    if args.replicas < 1:
        raise SystemExit("edgegw backend: --replicas must be at least 1")
    if not 0 <= args.prefix_cache_mb < float("inf"):  # also refuses nan
        raise SystemExit("edgegw backend: --prefix-cache-mb must be 0 (off) or more")
    if args.model.lower() not in DEMO_ALIASES and not Path(args.model).expanduser().exists():
        raise SystemExit(f"edgegw backend: --model {args.model}: no such file or directory")
    emb = args.embedding_model
    if emb and emb.lower() not in EMBEDDING_ALIASES and not Path(emb).expanduser().is_dir():
        raise SystemExit(f"edgegw backend: --embedding-model {emb}: no such directory")
    if args.replicas > 1:
        from gpu_backend.pool import run_pool

        child: list[str] = []
        for name in _FORWARDED:
            value = getattr(args, name)
            if value is True:
                child.append("--" + name.replace("_", "-"))
            elif value not in (None, False):
                child += ["--" + name.replace("_", "-"), str(value)]
        return run_pool(child, args.port, args.replicas)

    from gpu_backend.server import serve
    from gpu_backend.state import BackendOptions

    options = BackendOptions(
        model=args.model, served_model_name=args.served_model_name, embedding_model=args.embedding_model,
        embedding_served_model_name=args.embedding_served_model_name, device=args.device, dtype=args.dtype,
        max_batch_size=args.max_batch_size, max_queue=args.max_queue, max_model_len=args.max_model_len,
        prefill_tokens=args.prefill_tokens, max_waiting_steps=args.max_waiting_steps,
        default_max_tokens=args.default_max_tokens, threads=args.threads,
        drain_timeout_s=args.drain_timeout, engine=args.engine, images=_image_limits(args),
        mm_processor_kwargs=_processor_kwargs(args.mm_processor_kwargs), prefix_cache_mb=args.prefix_cache_mb)
    return serve(options, args.host, args.port, args.log_level)


def _image_limits(args: argparse.Namespace):  # -> gpu_backend.images.ImageLimits
    import json

    from gpu_backend.images import ImageLimits

    spec = args.limit_mm_per_prompt.strip()
    try:
        limits = json.loads(spec) if spec.startswith("{") else dict(
            (k.strip(), int(v)) for k, v in (item.split("=", 1) for item in spec.split(",")))
        count = int(limits["image"])
    except (ValueError, KeyError, TypeError):
        raise SystemExit(f"edgegw backend: --limit-mm-per-prompt {spec!r}: expected image=N or '{{\"image\": N}}'") from None
    if count < 0 or args.max_image_pixels < 1:
        raise SystemExit("edgegw backend: image limits must not be negative")
    return ImageLimits(max_images=count, max_pixels=args.max_image_pixels, allow_remote=args.allow_remote_images,
                       remote_max_bytes=args.remote_image_max_bytes, remote_timeout_s=args.remote_image_timeout)


def _processor_kwargs(spec: str | None) -> dict[str, int]:
    import json

    from gpu_backend.vlm import PROCESSOR_KWARGS

    if not spec:
        return {}
    try:
        kwargs = json.loads(spec)
        if not isinstance(kwargs, dict) or not all(isinstance(v, int) and v > 0 for v in kwargs.values()):
            raise ValueError("expected a JSON object of positive integers")
    except ValueError as exc:
        raise SystemExit(f"edgegw backend: --mm-processor-kwargs {spec!r}: {exc}") from None
    unknown = sorted(set(kwargs) - set(PROCESSOR_KWARGS))
    if unknown:
        raise SystemExit(f"edgegw backend: --mm-processor-kwargs: unsupported key(s) {unknown}; "
                         f"supported: {', '.join(PROCESSOR_KWARGS)}")
    return kwargs


def _make_tiny(args: argparse.Namespace) -> int:
    from gpu_backend.tiny import TinySpec, make_tiny_model, parameter_count

    spec = TinySpec(layers=args.layers, hidden=args.hidden, heads=args.heads, kv_heads=args.kv_heads,
                    intermediate=args.intermediate, vocab=args.vocab, context=args.context, seed=args.seed,
                    init_range=args.init_range)
    out = make_tiny_model(args.dir, spec)
    print(f"wrote {out} ({parameter_count(spec) / 1e6:.2f}M parameters)")
    return 0
