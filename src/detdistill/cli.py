"""``detdistill <command>``: argument parsing only; every command calls the library.

Each command is one ``cmd_*`` function plus one ``_add_*`` parser function registered in ``COMMANDS``.
Errors a user can fix (bad file, field, value) print one line and exit 2; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable

from . import __version__


class UsageError(Exception):
    """An error the user can fix; printed as one line without a traceback."""


# ---------------------------------------------------------------- demo
def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="end-to-end demo on the embedded synthetic data",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("reports/demo"), help="report folder")
    p.add_argument("--seed", type=int, default=0, help="dataset seed")
    p.set_defaults(func=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    from .reports.samples import synthetic_preview

    summary, picture = synthetic_preview(args.out, seed=args.seed)
    for split, info in summary.items():
        classes = ", ".join(f"{k} {v}" for k, v in info["classes"].items())
        print(f"{split:5s}: {info['images']} images, {info['boxes']} boxes ({classes})")
    print(f"wrote {picture}")
    return 0


COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    _add_demo,
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="detdistill", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"detdistill {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in COMMANDS:
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (UsageError, ValueError, FileNotFoundError, KeyError) as exc:
        if args.debug:
            raise
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"detdistill {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
