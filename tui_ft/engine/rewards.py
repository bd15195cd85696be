"""Rewards for RL methods (GRPO, RLOO): trained reward models and Python reward functions.

A reward function is named in a recipe as `FILE.py:NAME` (a file next to the recipe, or any path) or
`package.module:NAME`. It is called the way TRL calls reward functions,
`NAME(prompts=..., completions=..., completion_ids=..., **dataset_columns)`, and returns one float
(or None) per completion. A function that raises fails the run with its own error, named.

The checks here (`check_reward_function`, `check_reward_model`) are cheap: they run before a run
starts, without torch, so a typo fails at once with exit status 2.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tui_ft.errors import NotFoundError, RecipeError, WorkFailed
from tui_ft.modelref import ModelRef, resolve_model
from tui_ft.workspace import Workspace


class RewardFunctionFailed(WorkFailed):
    """A user's reward function raised or returned something unusable."""

    def __init__(self, name: str, message: str):
        super().__init__(
            f"reward function {name} failed: {message}",
            kind="reward_function",
            hint="fix the function (the traceback is in the run's output.log), then `tui-ft resume RUN`",
        )


def split_function_ref(ref: str) -> tuple[str, str]:
    """`rewards.py:polite` -> ("rewards.py", "polite"); a reference without `:NAME` is refused."""
    where, sep, name = ref.rpartition(":")
    if not sep or not where or not name.isidentifier():
        raise RecipeError(
            f"{ref!r} is not a reward function reference",
            field="rewards.functions",
            hint="write FILE.py:NAME or package.module:NAME",
        )
    return where, name


def resolve_function_ref(ref: str, base_dir: Path | None) -> str:
    """A function reference with its file made absolute (looked up next to the recipe, then the CWD)."""
    where, name = split_function_ref(ref)
    if not where.endswith(".py"):
        return ref
    path = Path(where).expanduser()
    candidates = [path] if path.is_absolute() else [d / path for d in (base_dir, Path.cwd()) if d is not None]
    for candidate in candidates:
        if candidate.is_file():
            return f"{candidate.resolve()}:{name}"
    looked = ", ".join(str(c.parent) for c in candidates)
    raise RecipeError(f"no such file: {where}", field="rewards.functions", hint=f"looked in {looked}")


def import_function(ref: str) -> Callable[..., Any]:
    """Import the function a (resolved) reference names; RecipeError when it is not there."""
    where, name = split_function_ref(ref)
    try:
        if where.endswith(".py"):
            path = Path(where)
            module_name = f"tui_ft_rewards_{path.stem}_{abs(hash(str(path))) % 10**8}"
            module = sys.modules.get(module_name)
            if module is None:
                spec = importlib.util.spec_from_file_location(module_name, path)
                if spec is None or spec.loader is None:
                    raise RecipeError(f"cannot load {where}", field="rewards.functions")
                module = importlib.util.module_from_spec(spec)
                sys.modules[module_name] = module
                spec.loader.exec_module(module)
        else:
            module = importlib.import_module(where)
    except RecipeError:
        raise
    except Exception as exc:  # noqa: BLE001 - any error in the user's module is reported as theirs
        raise RecipeError(
            f"importing {where} failed: {type(exc).__name__}: {exc}", field="rewards.functions"
        ) from None
    func = getattr(module, name, None)
    if not callable(func):
        found = sorted(
            n
            for n, v in vars(module).items()
            if callable(v) and not n.startswith("_") and v.__module__ == module.__name__
        )
        raise RecipeError(
            f"{where} has no function {name}",
            field="rewards.functions",
            hint=f"functions there: {', '.join(found)}" if found else None,
        )
    return func


def check_reward_function(ref: str, base_dir: Path | None) -> str:
    """Resolve and import a reward function reference; returns the resolved reference."""
    resolved = resolve_function_ref(ref, base_dir)
    import_function(resolved)
    return resolved


def load_reward_function(ref: str) -> Callable[..., list[float | None]]:
    """The user's function wrapped so that a failure names it and bad return values are caught early."""
    func = import_function(ref)
    label = ref.rpartition(":")[2]

    @functools.wraps(func)
    def reward(*args: Any, **kwargs: Any) -> list[float | None]:
        completions = kwargs.get("completions")
        try:
            values = func(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - the user's error, reported as theirs
            raise RewardFunctionFailed(label, f"{type(exc).__name__}: {exc}") from exc
        try:
            values = list(values)
        except TypeError:
            raise RewardFunctionFailed(
                label, f"returned {type(values).__name__}; expected a list of floats"
            ) from None
        if completions is not None and len(values) != len(completions):
            raise RewardFunctionFailed(
                label, f"returned {len(values)} rewards for {len(completions)} completions"
            )
        out: list[float | None] = []
        for v in values:
            if v is None:
                out.append(None)
                continue
            try:
                out.append(float(v))
            except (TypeError, ValueError):
                raise RewardFunctionFailed(
                    label, f"returned {v!r}; rewards must be numbers or None"
                ) from None
        return out

    return reward


# --- reward models --------------------------------------------------------------------------------


def _architectures(path: Path) -> list[str]:
    try:
        return list(json.loads((path / "config.json").read_text()).get("architectures") or [])
    except (OSError, ValueError):
        return []


def is_sequence_classifier(ref: ModelRef) -> bool | None:
    """True/False for a local model or adapter; None for a hub id (checked when loaded)."""
    if not ref.local:
        return None
    path = Path(ref.path)
    if ref.adapter:
        try:
            task = json.loads((path / "adapter_config.json").read_text()).get("task_type")
        except (OSError, ValueError):
            task = None
        return task == "SEQ_CLS"
    return any(a.endswith("ForSequenceClassification") for a in _architectures(path))


def check_reward_model(ref: str, ws: Workspace) -> ModelRef:
    """Resolve a reward model reference and check it scores sequences (a `reward` run, or a
    sequence-classification model); RecipeError (exit 2) otherwise."""
    try:
        model = resolve_model(ref, ws, field="rewards.models")
    except NotFoundError as exc:
        raise RecipeError(exc.message, field="rewards.models", hint=exc.hint) from None
    if is_sequence_classifier(model) is False:
        what = "an adapter for text generation" if model.adapter else "a text-generation model"
        arch = ", ".join(_architectures(Path(model.path))) if not model.adapter else ""
        raise RecipeError(
            f"{ref} is {what}{f' ({arch})' if arch else ''}, not a reward model "
            "(a sequence-classification model with one score)",
            field="rewards.models",
            hint="train one with the reward recipe (tui-ft train reward-lora) and name that run",
        )
    return model


def load_reward_model(ref: ModelRef, dtype: Any):
    """Load a reward model (full, or a peft adapter over its base, merged) and its tokenizer, for scoring."""
    import transformers

    source = ref.base if ref.adapter else ref.path
    model = transformers.AutoModelForSequenceClassification.from_pretrained(source, num_labels=1, dtype=dtype)
    if ref.adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, ref.path).merge_and_unload()
    tokenizer = transformers.AutoTokenizer.from_pretrained(ref.path if ref.local else source)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.config.pad_token_id = tokenizer.pad_token_id
    # TRL names a reward model's metrics (rewards/NAME/mean) after this; use the recipe's reference.
    model.config._name_or_path = ref.ref
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model, tokenizer
