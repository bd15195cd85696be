"""`tui-ft annotate`: the Annotate screen on a session of pairs; `tui-ft prefs stats|export`: what a
store holds, how annotators agree, and TRL's training files from it (docs/annotations.md)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from tui_ft.commands import CommandParser, print_json, require_run_status
from tui_ft.display import format_count
from tui_ft.errors import UserError
from tui_ft.workspace import Workspace


def register(sub: argparse._SubParsersAction) -> None:
    ann = sub.add_parser(
        "annotate",
        help="label preference pairs from the keyboard (candidates from two models, two samples, or a pairs file)",
    )
    ann.add_argument(
        "prompts",
        metavar="PROMPTS",
        help="prompts (prompt-only, chat, prompt/completion) or pairs (preference, ranking) to review",
    )
    ann.add_argument("--a", metavar="MODEL", default=None, help="the first source of candidates")
    ann.add_argument(
        "--b", metavar="MODEL", default=None, help="the second model (default: a second sample of --a)"
    )
    ann.add_argument(
        "--out", metavar="NAME", default=None, help="the session and its store annotations/NAME.jsonl"
    )
    ann.add_argument("--annotator", default=None, help="your name on every decision (remembered)")
    ann.add_argument("--temperature", type=float, default=None, help="sampling temperature of --a (0.8)")
    ann.add_argument("--b-temperature", type=float, default=None, help="of the second source (as --a)")
    ann.add_argument("--max-new-tokens", type=int, default=None, help="the length of a candidate (64)")
    ann.add_argument("--buffer", type=int, default=None, help="pairs generated ahead of you (4)")
    ann.set_defaults(func=cmd_annotate)

    prefs = sub.add_parser("prefs", help="annotation stores: agreement, export to TRL's formats")
    psub = prefs.add_subparsers(
        dest="prefs_command", metavar="ACTION", parser_class=CommandParser, required=True
    )
    stats = psub.add_parser("stats", help="decisions, labels and agreement (percent, Cohen's kappa)")
    stats.add_argument("name", metavar="NAME", help="a store in annotations/ (or a path to one)")
    stats.add_argument("--json", action="store_true")
    stats.set_defaults(func=cmd_stats)
    export = psub.add_parser("export", help="write TRL's dpo, kto or reward rows")
    export.add_argument("name", metavar="NAME")
    export.add_argument("--to", choices=("dpo", "kto", "reward"), required=True)
    export.add_argument("--out", metavar="FILE", required=True)
    export.add_argument("--json", action="store_true")
    export.set_defaults(func=cmd_export)


def session_name(args, prompts: Path) -> str:
    from tui_ft.prefs.session import session_name_ok

    name = (args.out or prompts.stem).removesuffix(".jsonl")
    if not session_name_ok(name):
        raise UserError(
            f"{name!r} cannot name a session", field="--out", hint="letters, digits, - _ and . only"
        )
    return name


def cmd_annotate(args, ws: Workspace) -> int:
    from tui_ft.data.prompts import read_prompts
    from tui_ft.modelref import resolve_model
    from tui_ft.prefs.session import (
        DEFAULT_BUFFER,
        DEFAULT_MAX_NEW_TOKENS,
        DEFAULT_TEMPERATURE,
        SessionSpec,
        default_settings,
        load_spec,
        remember_annotator,
        save_spec,
    )

    ws = ws.ensure()
    prompts = read_prompts(args.prompts, base_dir=ws.data)
    name = session_name(args, Path(args.prompts))
    existing = load_spec(ws, name)
    if existing is not None:
        if (
            Path(existing.prompts) != prompts.path
            or (args.a and args.a != existing.a)
            or (args.b and args.b != existing.b)
        ):
            raise UserError(
                f"session {name} was started on {existing.prompts} with {existing.sources()}",
                field="--out",
                hint=f"give the same prompts to continue it, or another --out NAME (`tui-ft annotate "
                f"{existing.prompts} --out {name}` continues it)",
            )
        spec = existing
    else:
        if args.a is None and not prompts.has_pairs:
            raise UserError(
                "candidates need a model: --a MODEL (and --b MODEL2, or a second sample of --a)",
                field="--a",
                hint="or give a pairs file (prompt/chosen/rejected, or ranked responses) to review",
            )
        if args.b is not None and args.a is None:
            raise UserError("--b needs --a", field="--b")
        temperature = DEFAULT_TEMPERATURE if args.temperature is None else args.temperature
        b_temperature = temperature if args.b_temperature is None else args.b_temperature
        tokens = args.max_new_tokens or DEFAULT_MAX_NEW_TOKENS
        if tokens < 1 or (args.buffer is not None and args.buffer < 1):
            raise UserError("expected a count of at least 1", field="--max-new-tokens / --buffer")
        spec = SessionSpec(
            name=name,
            prompts=str(prompts.path),
            kind="generate" if args.a else "review",
            a=args.a,
            b=args.b,
            settings_a=default_settings(temperature, tokens, seed=1) if args.a else {},
            # a second sample of one model: its own seeds (and temperature, if one was given)
            settings_b=default_settings(b_temperature, tokens, seed=1 if args.b else 100_003)
            if args.a
            else {},
            buffer=args.buffer or DEFAULT_BUFFER,
        )
    for ref in (spec.a, spec.b):
        if ref:
            require_run_status(ws, ref)
            resolve_model(ref, ws, field="--a" if ref == spec.a else "--b", reachable=True)
    if not prompts.items:
        first = prompts.problems[0]
        raise UserError(
            f"no usable prompts: {first.message}",
            path=prompts.path,
            line=first.line,
            field=first.field,
            hint=f"{len(prompts.problems)} bad row(s); `tui-ft data check {prompts.path}` lists them",
        )
    save_spec(ws, spec)
    if args.annotator:
        remember_annotator(ws, args.annotator.strip())
    from tui_ft.ui.app import run_app

    return run_app(ws, start_mode="annotate", annotate_session=name)


def _store(ws: Workspace, name: str):
    from tui_ft.prefs.store import PreferenceStore, store_path

    path = store_path(ws.annotations, name)
    if not path.exists():
        known = sorted(p.stem for p in ws.annotations.glob("*.jsonl"))
        raise UserError(
            f"no annotation store {name}",
            path=path,
            hint=f"stores here: {', '.join(known)}"
            if known
            else "`tui-ft annotate PROMPTS --a MODEL` starts one",
        )
    return PreferenceStore(path)


def cmd_stats(args, ws: Workspace) -> int:
    from tui_ft.prefs.export import agreements, label_counts, outcomes

    store = _store(ws, args.name)
    contents = store.read()
    decisions = contents.decisions
    results = outcomes(decisions)
    per_annotator = label_counts(decisions)
    shared = sum(1 for o in results if len(o.votes) > 1)
    agree = agreements(decisions)
    if args.json:
        print_json(
            {
                "store": str(store.path),
                "decisions": len(decisions),
                "retracted": contents.retracted,
                "torn_lines": contents.torn_lines,
                "pairs": len(results),
                "pairs_with_several_annotators": shared,
                "annotators": {who: dict(c) for who, c in per_annotator.items()},
                "outcomes": {o.pair: o.label for o in results},
                "agreement": [
                    {
                        "annotators": [a.first, a.second],
                        "shared": a.shared,
                        "percent": a.percent,
                        "kappa": a.kappa,
                    }
                    for a in agree
                ],
            }
        )
        return 0
    print(
        f"{store.path}: {format_count(len(decisions), 'decision')} on {format_count(len(results), 'pair')} "
        f"({contents.retracted} retracted)"
    )
    if contents.torn_lines:
        print(f"  torn lines skipped (a crash mid-write): {', '.join(map(str, contents.torn_lines))}")
    for who, counts in sorted(per_annotator.items()):
        total = sum(counts.values())
        shares = "  ".join(
            f"{label} {counts.get(label, 0) / total:.0%}" for label in ("A", "B", "tie", "both_bad", "skip")
        )
        print(f"  {who or '(no name)'}: {format_count(total, 'pair')}  {shares}")
    if not agree:
        print("agreement: needs two annotators on the same pairs")
    for a in agree:
        kappa = f"{a.kappa:.2f}" if a.kappa is not None else "undefined (one label only)"
        print(
            f"agreement {a.first} / {a.second}: {format_count(a.shared, 'shared pair')}, {a.percent:.0f}% agree, "
            f"Cohen's kappa {kappa}"
        )
    return 0


def cmd_export(args, ws: Workspace) -> int:
    from tui_ft.prefs.export import training_rows

    store = _store(ws, args.name)
    result = training_rows(store.read().decisions, args.to)
    out = Path(args.out).expanduser()
    if not result.rows:
        dropped = ", ".join(f"{n} {label}" for label, n in result.dropped.items()) or "no decisions"
        raise UserError(f"nothing to export for {args.to} ({dropped})", path=store.path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        for row in result.rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    tmp.replace(out)
    if args.json:
        print_json(
            {"out": str(out), "rows": len(result.rows), "pairs": result.kept, "dropped": dict(result.dropped)}
        )
    else:
        dropped = ", ".join(f"{n} {label}" for label, n in sorted(result.dropped.items()))
        print(
            f"{out}: {format_count(len(result.rows), f'{args.to} row')} from {format_count(result.kept, 'pair')}"
            + (f" (dropped: {dropped})" if dropped else "")
        )
    return 0
