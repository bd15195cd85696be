"""`tui-ft sysinfo`, `recipes` and `estimate`: the machine, the shipped recipes, a recipe's memory."""

from __future__ import annotations

import argparse
from pathlib import Path

from tui_ft.commands import output_console, print_command, print_json
from tui_ft.errors import UserError
from tui_ft.workspace import Workspace


def register(sub: argparse._SubParsersAction) -> None:
    sysinfo = sub.add_parser("sysinfo", help="versions, CUDA, GPUs, CPU and memory")
    sysinfo.add_argument("--json", action="store_true")
    sysinfo.set_defaults(func=cmd_sysinfo)

    recipes = sub.add_parser("recipes", help="list the shipped recipes")
    recipes.add_argument("--json", action="store_true")
    recipes.set_defaults(func=cmd_recipes)

    estimate = sub.add_parser("estimate", help="estimate a recipe's GPU memory from the model's config.json")
    estimate.add_argument("recipe")
    estimate.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    estimate.add_argument("--json", action="store_true")
    estimate.set_defaults(func=cmd_estimate)


def cmd_sysinfo(args, ws: Workspace) -> int:  # noqa: ARG001
    from tui_ft.monitor.system import format_sysinfo, sysinfo

    info = sysinfo()
    if args.json:
        print_json(info)
    else:
        output_console().print(format_sysinfo(info))
    return 0


def cmd_recipes(args, ws: Workspace) -> int:  # noqa: ARG001
    import yaml

    from tui_ft.recipe import shipped_recipes

    rows = []
    for path in shipped_recipes():
        data = yaml.safe_load(path.read_text()) or {}
        rows.append(
            {
                "name": path.stem,
                "method": data.get("method"),
                "adapter": (data.get("adapter") or {}).get("type", "lora"),
                "quantization": (data.get("model") or {}).get("quantization", "none"),
                "model": (data.get("model") or {}).get("name"),
                "data": (data.get("data") or {}).get("train"),
                "description": data.get("description", ""),
                "path": str(path),
            }
        )
    if args.json:
        print_json(rows)
        return 0
    from rich.table import Table

    # the description wraps in a terminal (at its width) and is never cut; piped, each row is one line
    table = Table("recipe", "method", "adapter", "data", box=None, header_style="bold")
    table.add_column("description", overflow="fold")
    for r in rows:
        adapter = r["adapter"] + (f" ({r['quantization']})" if r["quantization"] != "none" else "")
        table.add_row(r["name"], r["method"], adapter, r["data"], " ".join(str(r["description"]).split()))
    console = output_console()
    for column in table.columns[:4]:
        column.no_wrap = True  # names and paths stay whole; the description takes the rest
    console.print(table)
    console.print()
    print_command(console, "train one:  tui-ft train sft-lora --set training.max_steps=50")
    if rows:
        print_command(console, f"edit one:   cp {Path(rows[0]['path']).parent}/sft-lora.yaml my-recipe.yaml")
    return 0


def cmd_estimate(args, ws: Workspace) -> int:
    from tui_ft.display import format_params
    from tui_ft.estimate import estimate_memory, format_bytes
    from tui_ft.recipe import load_recipe

    loaded = load_recipe(args.recipe, args.overrides, cache_dir=ws.ensure().cache)
    try:
        estimate = estimate_memory(loaded.recipe, ws)
    except UserError as exc:
        raise loaded.error(("model", "name"), exc.message, exc.hint) from None
    if args.json:
        print_json(estimate.to_json())
        return 0
    from rich.table import Table

    console = output_console()
    console.print(
        f"[bold]{estimate.model}[/] ({estimate.model_source}): {format_params(estimate.total_params)} "
        f"parameters, {format_params(estimate.trainable_params)} trainable; {estimate.dtype}, "
        f"batch {estimate.batch} x {estimate.seq_len} tokens",
        highlight=False,
    )
    table = Table("part", "memory", "why", box=None, header_style="bold")
    for part in estimate.parts:
        table.add_row(part.label, format_bytes(part.bytes), part.explanation)
    table.add_row("[bold]total[/]", f"[bold]{format_bytes(estimate.total_bytes)}[/]", "per device")
    console.print(table)
    for note in estimate.assumptions:
        console.print(f"  note: {note}", highlight=False, markup=False)
    colour = {True: "green", False: "red"}.get(estimate.fits, "yellow")  # type: ignore[arg-type]
    console.print(f"[{colour}]{estimate.verdict()}[/]", highlight=False)
    return 0
