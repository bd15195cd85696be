"""`tui-ft generate`: a reply from a model, run or checkpoint, streamed or as JSON; `tui-ft chat`:
the Chat screen on a model (or two, side by side)."""

from __future__ import annotations

import argparse

from tui_ft.commands import print_json, require_run_status
from tui_ft.workspace import Workspace


def register(sub: argparse._SubParsersAction) -> None:
    gen = sub.add_parser("generate", help="generate a reply from a model, run or checkpoint")
    gen.add_argument("model")
    gen.add_argument("--prompt", required=True)
    gen.add_argument("--system", default=None)
    gen.add_argument("--max-new-tokens", type=int, default=64)
    gen.add_argument("--temperature", type=float, default=0.0, help="0: greedy (the default)")
    gen.add_argument("--top-p", type=float, default=None)
    gen.add_argument("--top-k", type=int, default=None)
    gen.add_argument("--repetition-penalty", type=float, default=None)
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    gen.add_argument("--quantization", choices=("none", "4bit", "8bit"), default="none")
    gen.add_argument("--json", action="store_true")
    gen.set_defaults(func=cmd_generate)

    chat = sub.add_parser("chat", help="open the Chat screen on a model (and a second one to compare)")
    chat.add_argument("model", help="a workspace model, directory, run, RUN:checkpoint-N, recipe name, last")
    chat.add_argument("--compare", metavar="MODEL2", default=None, help="a second model, side by side")
    chat.set_defaults(func=cmd_chat)


def cmd_generate(args, ws: Workspace) -> int:
    from tui_ft.modelref import resolve_model

    require_run_status(ws, args.model)
    resolve_model(args.model, ws, field="MODEL", reachable=True)  # exit 2 at once, before any loading
    from tui_ft.inference.generate import conversation, load_for_generation, stream_messages

    loaded = load_for_generation(args.model, ws, device=args.device, quantization=args.quantization)
    settings = {
        "max_new_tokens": args.max_new_tokens,
        "temperature": args.temperature,
        "top_p": args.top_p,
        "top_k": args.top_k,
        "repetition_penalty": args.repetition_penalty,
        "seed": args.seed,
    }

    def show(piece: str) -> None:
        if not args.json:
            print(piece, end="", flush=True)

    result = stream_messages(loaded, conversation(args.prompt, args.system), on_piece=show, **settings)
    if args.json:
        print_json(
            {
                "model": args.model,
                "resolved": loaded.ref.path,
                "adapter": loaded.ref.adapter,
                "prompt": args.prompt,
                **result.to_json(),
            }
        )
    else:
        print()
    return 0


def cmd_chat(args, ws: Workspace) -> int:
    from tui_ft.modelref import resolve_model

    models = [args.model, *([args.compare] if args.compare else [])]
    for ref in models:
        require_run_status(ws, ref)
        field = "MODEL" if ref == args.model else "--compare"
        resolve_model(ref, ws, field=field, reachable=True)  # exit 2 with the nearest names before any UI
    from tui_ft.ui.app import run_app

    return run_app(ws, start_mode="chat", chat_models=models)
