"""Reward references in a recipe, checked before a run starts: cheap, without torch.

A reward function is named as `FILE.py:NAME` (a file next to the recipe, or any path) or
`package.module:NAME`; a reward model is a model reference (a `reward` run, or a sequence-classification
model). `check_reward_function` and `check_reward_model` run when a run is prepared, so a typo fails at
once with exit status 2; the engine loads what they checked (`tui_ft.engine.rewards`).
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tui_ft.errors import NotFoundError, RecipeError
from tui_ft.modelref import ModelRef, resolve_model
from tui_ft.workspace import Workspace


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
