"""`python -m tui_ft.evaluation.after_training RUN_DIR [EVENT_FILE]`: the recipe's `eval:` section, evaluated once the
runner has saved the final model. The runner starts it as a process of its own (the evaluation sits above
the engine and loads models of its own, tuned and base), then records its result as an `eval` event with
the fields this process writes to EVENT_FILE (JSON; the runner does not read the result format itself).

Exit status: 0 evaluated (results in runs/<id>/eval/), 1 the evaluation failed, 2 bad input (the message
names the `eval.*` key).
"""

from __future__ import annotations

import json
import sys
import traceback
from pathlib import Path

import yaml

from tui_ft.errors import UserError
from tui_ft.evaluation.suite import EvalRequest
from tui_ft.workspace import Workspace

RECIPE_FIELDS = {
    "model": "run",
    "data": "eval.data",
    "metrics": "eval.metrics",
    "shots": "eval.shots",
    "shots_data": "data.train",
    "forgetting": "eval.forgetting",
    "base": "model.name",
}


def request_from_recipe(run_dir: Path) -> EvalRequest | None:
    """The evaluation a run's recipe asks for (None when it has no `eval:` section)."""
    recipe = yaml.safe_load((run_dir / "recipe.yaml").read_text()) or {}
    spec = recipe.get("eval")
    if not isinstance(spec, dict):
        return None
    data = recipe.get("data") or {}
    forgetting = spec.get("forgetting")
    return EvalRequest(
        model=run_dir.name,
        data=spec.get("data") or data.get("eval"),
        shots=int(spec.get("shots") or 0),
        forgetting=("" if forgetting == "demo" else forgetting) if forgetting else None,
        metrics=list(spec.get("metrics") or []),
        max_new_tokens=int(spec.get("max_new_tokens") or 64),
        limit=spec.get("limit"),
        fields=RECIPE_FIELDS,
    )


def main(argv: list[str] | None = None) -> int:
    from tui_ft.evaluation.store import save_result, summary
    from tui_ft.evaluation.suite import evaluate
    from tui_ft.library_noise import quiet_library_noise

    args = sys.argv[1:] if argv is None else argv
    if len(args) not in (1, 2):
        print("usage: python -m tui_ft.evaluation.after_training RUN_DIR [EVENT_FILE]", file=sys.stderr)
        return 2
    run_dir = Path(args[0]).resolve()
    event_file = Path(args[1]) if len(args) == 2 else None
    quiet_library_noise()
    try:
        request = request_from_recipe(run_dir)
        if request is None:
            return 0
        ws = Workspace(run_dir.parent.parent)
        doc = evaluate(request, ws, report=lambda text: print(f"tui-ft: eval: {text}", flush=True))
        path = save_result(run_dir, doc)
        print(f"tui-ft: eval: results in {path}", flush=True)
        if event_file is not None:
            fields = {"source": "tui-ft eval", "file": f"eval/{path.name}", **summary(doc)}
            event_file.parent.mkdir(parents=True, exist_ok=True)
            event_file.write_text(json.dumps(fields, default=str))
        return 0
    except UserError as exc:
        print(f"tui-ft: {exc}", file=sys.stderr, flush=True)
        return 2
    except Exception as exc:  # noqa: BLE001 - translated here; the traceback goes to the run's log
        traceback.print_exc(file=sys.stderr)
        from tui_ft.engine.errors import translate_exception

        print(f"tui-ft: {translate_exception(exc)}", file=sys.stderr, flush=True)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
