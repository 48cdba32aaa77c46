"""The policy a training run starts from: a checkpoint, a local model, or the embedded default."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerFast

from entropic_rl.models.config import ModelConfig
from entropic_rl.models.embedded import CHARACTERS, warm_started_default
from entropic_rl.models.loading import load_model, resolve_model_path
from entropic_rl.tasks import TaskConfig


def load_policy(
    model_cfg: ModelConfig, task_cfg: TaskConfig, device: torch.device, folder: Path | None = None
) -> tuple[PreTrainedModel, PreTrainedTokenizerFast]:
    """The model to train and its tokenizer (left padding, with a pad token): from ``folder``
    (a checkpoint) if given, else from ``model.path``, else the embedded default warm-started on
    the task."""
    if folder is None and model_cfg.path is None:
        if task_cfg.name == "file":
            raise ValueError(
                "model.path: the embedded default model only knows the characters "
                f"{CHARACTERS!r}; give a Hugging Face model folder for task.name=file"
            )
        folder = warm_started_default(model_cfg, task_cfg.name, task_cfg.difficulty)
    elif folder is None:
        folder = resolve_model_path(model_cfg.path, "model.path")
    return load_model(folder, model_cfg.dtype, device)
