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
    from rich.text import Text

    # One row per recipe, its description whole (piped: each row one line). A terminal too narrow for
    # that gets two lines per recipe: its method, adapter and data, then the description, wrapped at
    # the terminal's width and never cut.
    console = output_console()
    table = Table("recipe", "method", "adapter", "data", "description", box=None, header_style="bold")
    compact = Table("recipe", "method · adapter · data / what it does", box=None, header_style="bold")
    for r in rows:
        adapter = r["adapter"] + (f" ({r['quantization']})" if r["quantization"] != "none" else "")
        description = " ".join(str(r["description"]).split())
        table.add_row(r["name"], r["method"], adapter, r["data"] or "-", description)
        what = Text(f"{r['method']} · {adapter} · {r['data'] or '-'}\n")
        what.append(description, style="dim")
        compact.add_row(r["name"], what)
    for column in table.columns:
        column.no_wrap = True
    compact.columns[0].no_wrap = True
    from rich.measure import Measurement

    from tui_ft.commands import PIPED_WIDTH

    unbounded = console.options.update_width(PIPED_WIDTH)
    fits = Measurement.get(console, unbounded, table).maximum <= console.width
    console.print(table if fits else compact)
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
