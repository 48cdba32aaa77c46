"""Supervised warm start: trains a fresh model on a task's demonstrations until its sampled
accuracy on held-out prompts reaches a level (used for the embedded default)."""

from __future__ import annotations

import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from transformers import PreTrainedModel, PreTrainedTokenizerFast

from entropic_rl.models.sampling import generate
from entropic_rl.tasks import get_reward, score_responses

WARM_START_BATCH = 64
WARM_START_LR = 1e-3  # AdamW, linear warm-up over 50 steps, then constant
WARM_START_WARMUP = 50
WARM_START_EVAL_EVERY = 25  # steps between held-out accuracy checks


def warm_start(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerFast, task, held_out: list, max_steps: int, accuracy: float
) -> dict:
    """Supervised training of ``model`` on ``task`` demonstrations (loss on the response and <eos>
    only), stopped once the sampled accuracy on held-out prompts reaches ``accuracy`` (or after
    ``max_steps``); draws from the caller's RNG. Returns ``{"steps_run": ..., "held_out_accuracy": ...}``."""
    reward_fn = get_reward(task.default_reward)
    optimizer = torch.optim.AdamW(model.parameters(), lr=WARM_START_LR, betas=(0.9, 0.98), weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda i: min(1.0, (i + 1) / WARM_START_WARMUP))
    model.train()
    columns = (
        TextColumn("warm start of the embedded model: {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, transient=True) as progress:
        bar = progress.add_task(f"until sampled accuracy >= {accuracy:.0%}", total=max_steps)
        step, reached = 0, None
        for step in range(1, max_steps + 1):
            examples = task.examples(step * WARM_START_BATCH, WARM_START_BATCH)
            input_ids, labels = supervised_batch(tokenizer, examples)
            loss = model(
                input_ids=input_ids, attention_mask=(input_ids != tokenizer.pad_token_id).long(), labels=labels
            ).loss
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            progress.advance(bar)
            if step % WARM_START_EVAL_EVERY == 0:
                reached = sampled_accuracy(model, tokenizer, held_out, reward_fn)
                progress.update(bar, description=f"sampled accuracy {reached:.0%} (stops at {accuracy:.0%})")
                if reached >= accuracy:
                    break
    model.eval()
    return {"steps_run": step, "held_out_accuracy": reached}


@torch.no_grad()
def sampled_accuracy(model, tokenizer, examples, reward_fn) -> float:
    """Fraction of examples answered right by one sample at temperature 1."""
    answers = max(len(tokenizer(e.demonstration, add_special_tokens=False).input_ids) for e in examples)
    rollout = generate(
        model,
        tokenizer,
        [e.prompt for e in examples],
        temperature=1.0,
        top_p=1.0,
        max_new_tokens=answers + 1,
        chat_template="never",
    )
    scores, _ = score_responses(reward_fn, rollout.responses, examples)
    return sum(scores) / len(examples)


def supervised_batch(tokenizer: PreTrainedTokenizerFast, examples) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ``<bos> prompt demonstration <eos>`` ids, and labels masking all but the response and <eos>."""
    rows, label_rows = [], []
    for example in examples:
        prompt = tokenizer(example.prompt).input_ids
        answer = [*tokenizer(example.demonstration, add_special_tokens=False).input_ids, tokenizer.eos_token_id]
        rows.append(prompt + answer)
        label_rows.append([-100] * len(prompt) + answer)
    width = max(map(len, rows))
    pad = tokenizer.pad_token_id
    input_ids = torch.tensor([r + [pad] * (width - len(r)) for r in rows])
    labels = torch.tensor([r + [-100] * (width - len(r)) for r in label_rows])
    return input_ids, labels
