"""`tui-ft generate`: a reply from a model, run or checkpoint, streamed or as JSON."""

from __future__ import annotations

import argparse
import time

from tui_ft.commands import print_json, require_run_status
from tui_ft.workspace import Workspace


def register(sub: argparse._SubParsersAction) -> None:
    gen = sub.add_parser("generate", help="generate a reply from a model, run or checkpoint")
    gen.add_argument("model")
    gen.add_argument("--prompt", required=True)
    gen.add_argument("--system", default=None)
    gen.add_argument("--max-new-tokens", type=int, default=64)
    gen.add_argument("--temperature", type=float, default=0.0)
    gen.add_argument("--json", action="store_true")
    gen.set_defaults(func=cmd_generate)


def cmd_generate(args, ws: Workspace) -> int:
    from tui_ft.inference.generate import load_for_generation, stream

    require_run_status(ws, args.model)
    loaded = load_for_generation(args.model, ws)
    options = {
        "system": args.system,
        "max_new_tokens": args.max_new_tokens,
        "temperature": args.temperature,
    }
    start = time.perf_counter()
    pieces = []
    for piece in stream(loaded, args.prompt, **options):
        pieces.append(piece)
        if not args.json:
            print(piece, end="", flush=True)
    text = "".join(pieces)
    seconds = time.perf_counter() - start
    if args.json:
        new_tokens = len(loaded.tokenizer(text, add_special_tokens=False)["input_ids"]) if text else 0
        print_json(
            {
                "model": args.model,
                "resolved": loaded.ref.path,
                "adapter": loaded.ref.adapter,
                "prompt": args.prompt,
                "text": text,
                "new_tokens": new_tokens,
                "seconds": round(seconds, 3),
            }
        )
    else:
        print()
    return 0
