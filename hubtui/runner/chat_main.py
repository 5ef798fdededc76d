"""Entry point of the standalone `hubtui-chat.pyz` in field bundles (argparse: no click, no hubtui install).

It is a front end like `hubtui chat`: it owns the terminal and hands the streams to the REPL.
"""

from __future__ import annotations

import argparse
import sys

from hubtui.runner.errors import RunnerError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="hubtui-chat", description="Chat with a GGUF model in the terminal."
    )
    parser.add_argument("model", help="the .gguf file")
    parser.add_argument("--system", help="system prompt")
    parser.add_argument(
        "--ctx", type=int, default=None, help="context size (default: the model's, at most 4096)"
    )
    parser.add_argument("--temp", type=float, default=0.7, help="sampling temperature (0 = greedy)")
    parser.add_argument("--max-tokens", type=int, default=512, help="longest reply")
    parser.add_argument(
        "--gpu-layers", default="auto", help="layers to offload to the GPU, -1 for all, or auto"
    )
    parser.add_argument("--lora", help="a LoRA adapter GGUF to apply to the model")
    parser.add_argument("--lora-scale", type=float, default=1.0, help="the adapter's scale (default 1)")
    parser.add_argument(
        "--no-mmap", action="store_true", help="read the weights into RAM instead of mapping the file"
    )
    parser.add_argument("--mlock", action="store_true", help="pin the model in RAM")
    args = parser.parse_args(argv)
    from hubtui.runner.chat import ChatEngine, load_model
    from hubtui.runner.repl import run_repl

    gpu = args.gpu_layers if args.gpu_layers == "auto" else int(args.gpu_layers)
    try:
        llm = load_model(
            args.model,
            n_ctx=args.ctx,
            gpu_layers=gpu,
            lora=args.lora,
            lora_scale=args.lora_scale,
            mmap=False if args.no_mmap else None,
            mlock=args.mlock,
        )
        engine = ChatEngine(
            llm, system=args.system, temperature=args.temp, max_tokens=args.max_tokens, model_path=args.model
        )
    except RunnerError as exc:
        print(f"hubtui-chat: error: {exc}", file=sys.stderr)
        return 1
    try:
        return run_repl(engine, sys.stdin, sys.stdout, sys.stderr, interactive=sys.stdin.isatty())
    finally:
        engine.close()
