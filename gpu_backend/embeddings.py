"""Sentence embeddings from a sentence-transformers layout: transformer, mean pooling, L2 normalisation."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any


class Embedder:
    """Embeds texts with an encoder model; thread-safe (one forward at a time)."""

    def __init__(self, model_dir: str | Path, device: Any, dtype: Any, batch_size: int = 32) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer

        self.dir = Path(model_dir)
        self.tokenizer = AutoTokenizer.from_pretrained(self.dir, local_files_only=True)
        self.model = AutoModel.from_pretrained(self.dir, local_files_only=True, dtype=dtype).to(device).eval()
        self.device = device
        self.batch_size = batch_size
        self.max_length = _max_seq_length(self.dir, self.tokenizer)
        self.dimensions = int(self.model.config.hidden_size)
        self._lock = threading.Lock()
        self._torch = torch

    def embed(self, texts: list[str]) -> tuple[list[list[float]], int]:
        """Unit-length embeddings for `texts`, and the number of tokens they used (after truncation)."""
        torch = self._torch
        vectors: list[list[float]] = []
        tokens = 0
        with self._lock, torch.inference_mode():
            for start in range(0, len(texts), self.batch_size):
                batch = self.tokenizer(texts[start : start + self.batch_size], padding=True, truncation=True,
                                       max_length=self.max_length, return_tensors="pt").to(self.device)
                hidden = self.model(**batch).last_hidden_state.float()
                mask = batch["attention_mask"].unsqueeze(-1).float()
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
                vectors.extend(pooled.cpu().tolist())
                tokens += int(batch["attention_mask"].sum())
        return vectors, tokens


def _max_seq_length(model_dir: Path, tokenizer: Any) -> int:
    cfg = model_dir / "sentence_bert_config.json"
    if cfg.exists():
        value = json.loads(cfg.read_text()).get("max_seq_length")
        if isinstance(value, int):
            return value
    limit = getattr(tokenizer, "model_max_length", 512)
    return limit if isinstance(limit, int) and limit < 100_000 else 512
