"""Command line: `python -m zonkey segment|reconstruct|infill|generate ... [--json]`.

Examples:
  python -m zonkey segment "The zebra is an African equine."
  python -m zonkey reconstruct --level 0 "The zebra is an African equine."
  python -m zonkey infill "The zebra is an ___ equine." --steps 20 --seed 0
  python -m zonkey infill "The zebra is an African equine." --span 16:23 --length keep
  python -m zonkey generate --steps 20 --seed 3 --json
  python -m zonkey generate --temperature 0.7   # more conservative, less varied text
  python -m zonkey generate --refine 0          # one pass: no re-infilling of the least confident words
Text may also come from a file (--file) or stdin ("-"). Errors are printed as one line to stderr
with exit status 2; nothing is printed as a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys

from zonkey.validation import DEFAULT_REFINE, ZonkeyInputError, find_gap_markers


def _span(s: str) -> tuple[int, int]:
    try:
        a, b = s.split(":")
        return int(a), int(b)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"span {s!r} must look like START:END, e.g. 10:15") from exc


def _length(s: str):
    if s in ("auto", "keep"):
        return s
    try:
        return int(s)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"length {s!r} must be auto, keep or an int") from exc


def _level(s: str):
    if s == "auto":
        return s
    try:
        return int(s)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"level {s!r} must be auto or an int") from exc


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m zonkey", description="Zonkey: segment, reconstruct, infill, generate.")
    ap.add_argument("--model", default=None, help="checkpoint directory (default: the shipped checkpoint)")
    ap.add_argument("--json", action="store_true", help="print the full result as JSON")
    sub = ap.add_subparsers(dest="cmd", required=True)

    def add_text(p):
        p.add_argument("text", nargs="?", help='the text ("-" reads stdin)')
        p.add_argument("--file", help="read the text from this file")

    p = sub.add_parser("segment", help="learned segmentation per level")
    add_text(p)
    p.add_argument("--threshold", type=float, default=0.5)
    p = sub.add_parser("reconstruct", help="encode then decode")
    add_text(p)
    p.add_argument("--level", type=int, default=None, help="top level to encode to (default: all)")
    p = sub.add_parser("infill", help="fill spans or gap markers (___, [...])")
    add_text(p)
    p.add_argument("--span", type=_span, action="append", default=[], help="START:END (repeatable)")
    p.add_argument("--level", type=_level, default="auto")
    p.add_argument("--length", type=_length, default="auto")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--temperature", type=float, default=1.0, help="in (0, 2]; lower = more conservative (default 1)")
    p = sub.add_parser("generate", help="unconditional generation from noise")
    p.add_argument("--num-segments", type=int, default=None)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--temperature", type=float, default=1.0, help="in (0, 2]; lower = more conservative (default 1)")
    p.add_argument(
        "--refine", type=float, default=DEFAULT_REFINE, help="share of words re-infilled, [0, 0.9]; 0 = one pass"
    )
    return ap


def _read_text(args) -> str:
    if args.file:
        with open(args.file, encoding="utf-8") as f:
            return f.read()
    if args.text == "-" or args.text is None:
        if args.text is None and sys.stdin.isatty():
            raise ZonkeyInputError("no text given; pass it as an argument, with --file, or on stdin with '-'.")
        return sys.stdin.read()
    return args.text


def run(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from zonkey.checkpoint import CheckpointError
    from zonkey.model import Zonkey

    try:
        model = Zonkey.from_pretrained(args.model)
        if args.cmd == "segment":
            res = model.segment(_read_text(args), threshold=args.threshold)
            print(
                json.dumps(res.to_dict())
                if args.json
                else "\n".join(
                    f"level {i}: " + " | ".join(repr(s)[1:-1] for s in res.segments(i)) for i in range(len(res.levels))
                )
            )
        elif args.cmd == "reconstruct":
            text = model.reconstruct(_read_text(args), level=args.level)
            print(json.dumps({"text": text}) if args.json else text)
        elif args.cmd == "infill":
            text = _read_text(args)
            spans = list(args.span)
            if not spans:
                text, spans = find_gap_markers(text)
                if not spans:
                    raise ZonkeyInputError("no --span given and no gap marker (___ or [...]) in the text.")
            res = model.infill(
                text, spans, args.level, args.length, args.steps, args.seed, temperature=args.temperature
            )
            print(json.dumps(res.to_dict()) if args.json else res.text)
        else:
            res = model.generate(
                args.num_segments, args.steps, args.seed, temperature=args.temperature, refine=args.refine
            )
            print(json.dumps(res.to_dict()) if args.json else res.text)
    except (ZonkeyInputError, CheckpointError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0
