"""What the engine adds for an image-text-to-text model: image inputs at prefill, 3-D rope positions.

Images enter only at prefill: the processor already expanded each image into its placeholder tokens in
the prompt, so the group's pixel tensors are joined in row order and the model scatters the image
features into those placeholders, in the same order, across the whole (left-padded) group. Decode is
as for text, except that multimodal-rope models (GLM-4.1V, Qwen2.5-VL) place each row's next token at
its text position plus the row's rope delta (image tokens advance the position by less than their
count), the delta transformers' own `get_rope_index` computes at prefill.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from gpu_backend.sequence import Sequence

# Per-prompt arrays that are per token (padded like input_ids), not per image.
TOKEN_ARRAYS = ("mm_token_type_ids",)


class VisionBatch:
    """Prefill inputs and decode positions for one image-text-to-text model."""

    def __init__(self, model: Any) -> None:
        core = getattr(model, "model", model)
        self._rope_index = getattr(core, "get_rope_index", None)
        self.device = next(model.parameters()).device
        self.dtype = next(model.parameters()).dtype

    @property
    def mrope(self) -> bool:
        return self._rope_index is not None

    def prefill(self, group: list[Sequence], ids: torch.Tensor, mask: torch.Tensor,
                positions: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Extra forward() arguments for a prefill group, and its position ids (sets each row's delta)."""
        images = [s.vision for s in group if s.vision is not None]
        kwargs = self._join(images) if images else {}
        if not self.mrope:
            return kwargs, positions
        types = torch.zeros_like(ids)
        for row, s in enumerate(group):
            if s.vision is not None and "mm_token_type_ids" in s.vision:
                row_types = torch.from_numpy(s.vision["mm_token_type_ids"]).reshape(-1)
                types[row, ids.shape[1] - row_types.shape[0]:] = row_types.to(ids.device)
        grid = kwargs.get("image_grid_thw")
        pos, deltas = self._rope_index(ids, mm_token_type_ids=types, image_grid_thw=grid, attention_mask=mask)
        for s, d in zip(group, deltas.reshape(-1).tolist(), strict=True):
            s.rope_delta = int(d)
        return kwargs, pos

    def decode_positions(self, positions: torch.Tensor, running: list[Sequence]) -> torch.Tensor:
        """[rows, 1] text positions -> what the model takes for one decode step."""
        if not self.mrope:
            return positions
        deltas = torch.tensor([[s.rope_delta] for s in running], device=positions.device)
        return (positions + deltas)[None].expand(3, -1, -1)

    def _join(self, images: list[dict[str, np.ndarray]]) -> dict[str, torch.Tensor]:
        """One tensor per input name for the group, rows in order. Per-image tensors (pixel_values
        [patches, dim], image_grid_thw [images, 3]) join along dim 0; those with a leading batch-of-one
        axis (Idefics3's [1, images, C, H, W]) along dim 1."""
        out: dict[str, torch.Tensor] = {}
        for name in images[0]:
            if name in TOKEN_ARRAYS:
                continue
            parts = [torch.from_numpy(np.ascontiguousarray(v[name])) for v in images]
            tensor = torch.cat(parts, dim=1 if parts[0].ndim >= 4 else 0).to(self.device)
            out[name] = tensor.to(self.dtype) if tensor.is_floating_point() else tensor
        return out
