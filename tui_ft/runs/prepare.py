"""Turning a validated recipe into a run directory, before any model is loaded (cheap: no torch).

Everything that can be checked without the training stack is checked here, so bad input fails with
exit status 2 at once instead of after a model load.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from tui_ft.errors import DataError, NotFoundError, RecipeError
from tui_ft.modelref import resolve_model
from tui_ft.recipe import LoadedRecipe, Recipe, dump_recipe
from tui_ft.reward_checks import check_reward_function, check_reward_model
from tui_ft.runs.rundir import RunDir, Status, new_run_id
from tui_ft.workspace import Workspace

_HUB_DATASET = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")


def resolve_data_path(
    ref: str, *, field: str, base_dir: Path | None, ws: Workspace, loaded: LoadedRecipe
) -> str:
    """A data reference as an absolute path (looked up next to the recipe, in the workspace's data/,
    in the workspace, then the current directory), or a hub id left as it is."""
    path = Path(ref).expanduser()
    if path.is_absolute():
        if path.exists():
            return str(path)
        raise loaded.error(tuple(field.split(".")), f"no such file: {ref}")
    # the workspace root too: `annotations/NAME.jsonl` names an annotation store
    candidates = [d / path for d in (base_dir, ws.data, ws.root, Path.cwd()) if d is not None]
    for candidate in candidates:
        if candidate.exists():
            return str(candidate.resolve())
    if _HUB_DATASET.match(ref) and not path.suffix:
        return ref
    looked = ", ".join(str(c.parent) for c in candidates)
    raise loaded.error(tuple(field.split(".")), f"no such file: {ref}", hint=f"looked in {looked}")


def check_data_fits_method(path: str, method: str, declared: str, field: str) -> None:
    """Read the first row of a local file and check its format suits the method (cheap: one row)."""
    from tui_ft.data.formats import check_method_format, detect_format
    from tui_ft.data.sources import open_dataset

    if not Path(path).exists():
        return  # a hub id: checked when the runner loads it
    with open_dataset(path) as source:
        first = next(iter(source.head(1)), None)
    if first is None or isinstance(first, DataError):
        return  # empty or broken: the runner's full validation reports it with its line
    fmt = detect_format(first.data)
    if declared != "auto" and fmt is not None and fmt.value != declared:
        raise DataError(
            f"data.format says {declared}, but the file's first row is in format {fmt.value}",
            path=path,
            line=first.line,
            field="data.format",
            hint="set data.format: auto to use the detected format",
        )
    if fmt is not None:
        try:
            check_method_format(method, fmt, path)
        except DataError as exc:
            exc.field = exc.field or field
            raise


def _labels(path: str):
    """(line, label) of every readable classification row of a local file (broken rows are left to the
    runner's full validation, which names them)."""
    from tui_ft.data.sources import open_dataset

    with open_dataset(path) as source:
        for item in source.scan():
            if isinstance(item, DataError):
                continue
            label = item.data.get("label")
            if isinstance(label, (str, int)) and not isinstance(label, bool):
                yield item.line, label


def check_classification_labels(train: str, eval_path: str | None) -> None:
    """A classifier's classes come from its training data: it needs two at least, and an evaluation
    file may hold no label the training data lacks (DataError naming the file, line and label)."""
    from tui_ft.data.formats import class_names, label_name
    from tui_ft.data.training import check_class_count, unseen_label_problem

    if not Path(train).exists():
        return  # a hub id: checked when the runner loads it
    labels = class_names(label for _, label in _labels(train))
    if not labels:
        return  # no readable row: the runner's validation names what is wrong
    check_class_count(labels, train)
    if not eval_path or not Path(eval_path).exists():
        return
    known = set(labels)
    for line, label in _labels(eval_path):
        if label_name(label) not in known:
            problem = unseen_label_problem(line, label_name(label), labels)
            raise DataError(
                problem.message, path=eval_path, line=problem.line, field=problem.field, hint=problem.hint
            )


def resolve_recipe(loaded: LoadedRecipe, ws: Workspace) -> Recipe:
    """A copy of the recipe with data paths made absolute; checks model and data references exist."""
    recipe = loaded.recipe.model_copy(deep=True)
    try:
        resolve_model(recipe.model.name, ws)
    except NotFoundError as exc:
        raise loaded.error(("model", "name"), exc.message, exc.hint) from None
    data = recipe.data
    if data.train:
        data.train = resolve_data_path(
            data.train, field="data.train", base_dir=loaded.base_dir, ws=ws, loaded=loaded
        )
        check_data_fits_method(data.train, recipe.method, data.format, "data.train")
    if data.eval:
        data.eval = resolve_data_path(
            data.eval, field="data.eval", base_dir=loaded.base_dir, ws=ws, loaded=loaded
        )
    if data.eval:
        check_data_fits_method(data.eval, recipe.method, data.format, "data.eval")
    for i, task in enumerate(data.mixture):  # each task with its own format, checked as data.train is
        for key in ("train", "eval"):
            value = getattr(task, key)
            if value:
                field = f"data.mixture[{i}].{key}"
                path = resolve_data_path(value, field=field, base_dir=loaded.base_dir, ws=ws, loaded=loaded)
                setattr(task, key, path)
                check_data_fits_method(path, recipe.method, "auto", field)
    if recipe.method == "classify" and data.train:
        check_classification_labels(data.train, data.eval)
    if recipe.rewards is not None:
        resolve_rewards(loaded, recipe, ws)
    if recipe.eval is not None:
        resolve_eval(loaded, recipe, ws)
    has_eval = bool(data.eval) or data.eval_split > 0 or any(t.eval or t.eval_split for t in data.mixture)
    strategy = str(recipe.training.get("eval_strategy", "no"))
    if strategy != "no" and not has_eval:
        raise loaded.error(
            ("training", "eval_strategy"),
            f"{strategy} evaluation needs evaluation data",
            hint="set data.eval to a file or data.eval_split to a fraction such as 0.1",
        )
    return recipe


def resolve_rewards(loaded: LoadedRecipe, recipe: Recipe, ws: Workspace) -> None:
    """Check every reward model is a reward model and every reward function imports; function files
    are made absolute so the run finds them wherever it starts. Imports the user's reward modules."""
    assert recipe.rewards is not None
    for i, ref in enumerate(recipe.rewards.models):
        try:
            check_reward_model(ref, ws)
        except RecipeError as exc:
            raise loaded.error(("rewards", "models"), f"[{i}] {exc.message}", exc.hint) from None
    resolved = []
    for i, ref in enumerate(recipe.rewards.functions):
        try:
            resolved.append(check_reward_function(ref, loaded.base_dir))
        except RecipeError as exc:
            raise loaded.error(("rewards", "functions"), f"[{i}] {ref}: {exc.message}", exc.hint) from None
    recipe.rewards.functions = resolved


def resolve_eval(loaded: LoadedRecipe, recipe: Recipe, ws: Workspace) -> None:
    """The `eval:` section's files made absolute (its data, general text and metric functions, each
    checked to import), so the evaluation after training finds them wherever the run starts."""
    spec = recipe.eval
    assert spec is not None
    for key in ("data", "forgetting"):
        value = getattr(spec, key)
        if value and not (key == "forgetting" and value == "demo"):
            path = resolve_data_path(
                value, field=f"eval.{key}", base_dir=loaded.base_dir, ws=ws, loaded=loaded
            )
            setattr(spec, key, path)
    resolved = []
    for i, ref in enumerate(spec.metrics):
        try:
            resolved.append(check_reward_function(ref, loaded.base_dir))
        except RecipeError as exc:
            raise loaded.error(("eval", "metrics"), f"[{i}] {ref}: {exc.message}", exc.hint) from None
    spec.metrics = resolved


def create_run(
    loaded: LoadedRecipe, ws: Workspace, *, state: str = "starting", sweep: str | None = None
) -> RunDir:
    """Create runs/<id>/ with the resolved recipe and an initial status; returns it."""
    ws.ensure()
    recipe = resolve_recipe(loaded, ws)
    name = recipe.name or recipe.method
    run_id = new_run_id(name, ws.runs)
    run = RunDir(ws.runs / run_id)
    run.path.mkdir(parents=True)
    run.recipe_file.write_text(dump_recipe(recipe))
    max_steps = recipe.training.get("max_steps")
    status = Status(
        id=run_id,
        name=name,
        method=recipe.method,
        state=state,
        max_steps=max_steps if isinstance(max_steps, int) and max_steps > 0 else None,
        output_dir=str(run.final),
        model=recipe.model.name,
        adapter=recipe.adapter.type,
        sweep=sweep,
    )
    run.write_status(status)
    return run


def read_run_recipe(run: RunDir) -> dict:
    return yaml.safe_load(run.recipe_file.read_text())
