"""Model references, resolved the same way everywhere a model is asked for.

A reference is one of: a workspace model name (`demo-tiny`), a local directory, a run id (its `final/`),
`RUN:checkpoint-N` (or `RUN:N`, or `RUN:last`), `last` (the newest finished run), a recipe name (`sft-lora`:
the newest finished run of that recipe), or a hub id. Resolution reads only small files, so it is cheap
enough for the UI.
"""

from __future__ import annotations

import difflib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from tui_ft.errors import NotFoundError
from tui_ft.workspace import Workspace

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*(/[\w.\-]+)?$")


@dataclass(frozen=True)
class ModelRef:
    ref: str
    kind: str  # "workspace" | "directory" | "run" | "checkpoint" | "hub"
    path: str  # what from_pretrained is given: a directory or a hub id
    adapter: bool = False  # the path holds a peft adapter, not a full model
    base: str | None = None  # for an adapter: the base model it was trained on
    run_id: str | None = None

    @property
    def local(self) -> bool:
        return self.kind != "hub"


def _describe_dir(ref: str, kind: str, path: Path, run_id: str | None = None) -> ModelRef:
    if (path / "adapter_config.json").exists():
        return ModelRef(ref, kind, str(path), adapter=True, base=adapter_base(path), run_id=run_id)
    return ModelRef(ref, kind, str(path), run_id=run_id)


def adapter_base(path: str | Path) -> str | None:
    """The base an adapter directory names (`base_model_name_or_path`), or None when `path` holds no
    adapter. A run trained on top of another run's adapter names that adapter as its base."""
    adapter_cfg = Path(path) / "adapter_config.json"
    if not adapter_cfg.is_file():
        return None
    try:
        base = json.loads(adapter_cfg.read_text()).get("base_model_name_or_path")
    except (OSError, ValueError):
        return None
    return base if isinstance(base, str) and base else None


def adapter_chain(path: str | Path) -> tuple[str, list[str]]:
    """Follow adapters down to the full model they stand on: (that model, the adapters from the
    bottom up). A plain model gives (itself, []); DPO trained on an SFT run's adapter gives
    (the base, [SFT adapter, DPO adapter])."""
    adapters: list[str] = []
    current = str(path)
    while (base := adapter_base(current)) is not None:
        if current in adapters or len(adapters) > 16:
            raise NotFoundError(f"the adapters at {path} name each other as their base", field="MODEL")
        adapters.append(current)
        current = base
    return current, adapters[::-1]


def _is_model_dir(path: Path) -> bool:
    return (path / "config.json").exists() or (path / "adapter_config.json").exists()


def checkpoint_dirs(run_dir: Path) -> list[Path]:
    """A run's checkpoint directories, oldest first (by step)."""
    root = run_dir / "checkpoints"
    if not root.is_dir():
        return []
    found = []
    for child in root.iterdir():
        m = re.fullmatch(r"checkpoint-(\d+)", child.name)
        if m and child.is_dir():
            found.append((int(m.group(1)), child))
    return [p for _, p in sorted(found)]


def known_names(ws: Workspace) -> list[str]:
    names: list[str] = []
    for folder in (ws.models, ws.runs):
        if folder.is_dir():
            names.extend(p.name for p in folder.iterdir() if p.is_dir())
    return sorted(names)


_RUN_STAMP = re.compile(r"^\d{8}-\d{6}-(.+?)(?:-\d+)?$")


def run_name(run_id: str) -> str | None:
    """The recipe name in a run id (`20261122-014512-sft-lora-2` -> `sft-lora`)."""
    m = _RUN_STAMP.match(run_id)
    return m.group(1) if m else None


def newest_finished_run(ws: Workspace, name: str) -> Path | None:
    """The newest run of the recipe called `name` that has a final model (`sft-lora` -> its last run)."""
    if not ws.runs.is_dir() or "/" in name:
        return None
    found = [
        p
        for p in ws.runs.iterdir()
        if p.is_dir()
        and (m := _RUN_STAMP.match(p.name))
        and m.group(1) == name
        and _is_model_dir(p / "final")
    ]
    return max(found, default=None, key=lambda p: p.name)


def resolve_model(ref: str, ws: Workspace, *, field: str | None = None, reachable: bool = False) -> ModelRef:
    """Resolve `ref` to something `from_pretrained` can load; NotFoundError (exit 2) with near names.

    With `reachable`, a hub id that is not in the local hub cache must be reachable now: offline
    (HF_HUB_OFFLINE) or with the hub unreachable it fails at once (`require_hub_reachable`), rather than
    after the loader's retries. Off by default: the UI resolves on its event loop, with no network."""
    ref = ref.strip()
    if not ref:
        raise NotFoundError("no model given", field=field)
    if ref == "last" or ref.startswith("last:"):
        # the newest run that has a final model (or, with `last:CKPT`, the newest run)
        runs = sorted(p for p in ws.runs.iterdir() if p.is_dir()) if ws.runs.is_dir() else []
        if ref == "last":
            runs = [p for p in runs if _is_model_dir(p / "final")]
        if not runs:
            raise NotFoundError("no finished run yet", field=field, hint="train one: tui-ft train sft-lora")
        return resolve_model(runs[-1].name + ref.removeprefix("last"), ws, field=field)
    run_part, sep, ckpt = ref.partition(":")
    plain = "/" not in ref and "\\" not in ref  # a path is never a run id (ws.runs / "/abs" is "/abs")
    if plain and sep and (ws.runs / run_part).is_dir():
        run_dir = ws.runs / run_part
        ckpts = checkpoint_dirs(run_dir)
        if ckpt == "last" and ckpts:
            target = ckpts[-1]
        else:
            number = ckpt.removeprefix("checkpoint-")
            target = run_dir / "checkpoints" / f"checkpoint-{number}"
        if not _is_model_dir(target):
            have = ", ".join(p.name for p in ckpts) or "none yet"
            raise NotFoundError(
                f"run {run_part} has no checkpoint {ckpt!r} (checkpoints: {have})", field=field
            )
        return _describe_dir(ref, "checkpoint", target, run_id=run_part)
    if plain and (ws.runs / ref).is_dir():
        final = ws.runs / ref / "final"
        if not _is_model_dir(final):
            raise NotFoundError(
                f"run {ref} has no final model yet",
                field=field,
                hint=f"use a checkpoint, e.g. {ref}:last, or wait for the run to finish",
            )
        return _describe_dir(ref, "run", final, run_id=ref)
    if plain and (ws.models / ref).is_dir() and _is_model_dir(ws.models / ref):
        return _describe_dir(ref, "workspace", ws.models / ref)
    named = newest_finished_run(ws, ref)
    if named is not None:
        return _describe_dir(ref, "run", named / "final", run_id=named.name)
    local = Path(ref).expanduser()
    if local.is_dir():
        if not _is_model_dir(local):
            raise NotFoundError(
                f"{ref} is a directory but holds no model (no config.json or adapter_config.json)",
                field=field,
            )
        return _describe_dir(ref, "directory", local.resolve())
    looks_local = ref.startswith((".", "/", "~")) or ref.count("/") > 1 or local.suffix in (".json", ".yaml")
    near = difflib.get_close_matches(ref, known_names(ws), n=3, cutoff=0.75)
    if looks_local or (near and "/" not in ref):
        hint = (
            f"did you mean {', '.join(near)}?"
            if near
            else "give a workspace model, a directory, a run id or a hub id"
        )
        raise NotFoundError(f"no model {ref!r} here", field=field, hint=hint)
    if not _HUB_ID.match(ref):
        raise NotFoundError(f"{ref!r} is neither a local model nor a hub id", field=field)
    found = ModelRef(ref, "hub", ref)
    if reachable:
        require_hub_reachable(found, field=field)
    return found


_TRUE = ("1", "true", "yes", "on")
HUB_PROBE_TIMEOUT_S = 3.0


def hub_offline_reason() -> str | None:
    """Why the hub cannot be used now without asking it: the offline switches that are set."""
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(name, "").strip().lower() in _TRUE:
            return f"{name} is set"
    return None


def hub_unreachable_reason(timeout: float = HUB_PROBE_TIMEOUT_S) -> str | None:
    """None when the hub answers; else why not (offline switch, or the connection error of one request
    with a short timeout and no retries). Any HTTP answer counts as reachable: the loader reports the
    exact problem (gated, no such repository) itself."""
    offline = hub_offline_reason()
    if offline:
        return offline
    from huggingface_hub import constants
    from huggingface_hub.utils import get_session

    try:
        get_session().head(f"{constants.ENDPOINT}/api/models", timeout=timeout)
    except Exception as exc:  # noqa: BLE001 - any failure to connect (DNS, refused, timeout, proxy) counts
        text = str(exc).strip() or type(exc).__name__
        return f"{constants.ENDPOINT}: {text}"
    return None


def in_hub_cache(repo_id: str) -> bool:
    """The hub model's config (or adapter config) is in the local hub cache: loading needs no network."""
    from huggingface_hub import try_to_load_from_cache

    for name in ("config.json", "adapter_config.json"):
        try:
            if isinstance(try_to_load_from_cache(repo_id, name), str):
                return True
        except Exception:  # noqa: BLE001, S112 - an id the cache cannot hold is simply not cached
            continue
    return False


def hub_model_missing(repo_id: str, timeout: float = HUB_PROBE_TIMEOUT_S) -> int | None:
    """The hub's HTTP status when it says it has no model `repo_id` (404, or 401: private or absent);
    None when it has it, or cannot be asked (the loader then says what is wrong)."""
    from huggingface_hub import constants
    from huggingface_hub.utils import build_hf_headers, get_session

    try:
        answer = get_session().get(
            f"{constants.ENDPOINT}/api/models/{repo_id}", headers=build_hf_headers(), timeout=timeout
        )
    except Exception:  # noqa: BLE001 - could not ask: leave the verdict to the loader
        return None
    return answer.status_code if answer.status_code in (401, 404) else None


def require_hub_reachable(ref: ModelRef, *, field: str | None = None) -> None:
    """NotFoundError (exit 2) at once when `ref` is a hub id that is neither cached nor reachable now,
    or that the hub says it does not have."""
    if ref.kind != "hub" or in_hub_cache(ref.path):
        return
    reason = hub_unreachable_reason()
    if reason is None:
        status = hub_model_missing(ref.path)
        if status is not None:
            raise NotFoundError(
                f"{ref.ref!r} is not a local folder, a workspace model or a run, and the hub has no model "
                f"by that name (HTTP {status})",
                field=field,
                hint="check the name; a private or gated model needs a login (hf auth login)",
            )
        return
    raise NotFoundError(
        f"{ref.ref!r} is not a local folder, a workspace model or a run, and the hub cannot be reached "
        f"({reason})",
        field=field,
        hint="give a workspace model (tui-ft demo --prepare-only builds demo-tiny), a directory or a run id; "
        "a hub model loads offline once it has been downloaded",
    )


def model_choices(ws: Workspace) -> list[tuple[str, str]]:
    """What a model picker offers: (reference, what it is), newest runs first. Workspace models, each
    finished run and each of its checkpoints, recipe names (their newest finished run), and `last`."""
    choices: list[tuple[str, str]] = []
    if ws.models.is_dir():
        choices.extend(
            (p.name, "workspace model")
            for p in sorted(ws.models.iterdir())
            if p.is_dir() and _is_model_dir(p)
        )
    runs = sorted((p for p in ws.runs.iterdir() if p.is_dir()), reverse=True) if ws.runs.is_dir() else []
    recipes: dict[str, str] = {}
    for run in runs:
        finished = _is_model_dir(run / "final")
        if finished:
            choices.append((run.name, "run (final model)"))
            name = run_name(run.name)
            if name and name not in recipes:
                recipes[name] = run.name
        choices.extend(
            (f"{run.name}:{ckpt.name}", "checkpoint")
            for ckpt in reversed(checkpoint_dirs(run))
            if _is_model_dir(ckpt)
        )
    if recipes:
        newest = max(recipes.values())
        choices.insert(0, ("last", f"newest finished run ({newest})"))
    choices.extend((name, f"recipe: newest run {run_id}") for name, run_id in sorted(recipes.items()))
    return choices
