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


# ---------------------------------------------------------------- data (stats, convert)
def _add_data_source_args(p: argparse.ArgumentParser, on_bad_box: str) -> None:
    p.add_argument("--format", choices=["coco", "voc", "yolo", "kitti", "synthetic"], default=None,
                   help="dataset format (default: detected from the folder)")
    p.add_argument("--split", default=None, help="split to read (default: every image; train for synthetic)")
    p.add_argument("--on-bad-box", choices=["error", "skip"], default=on_bad_box,
                   help="zero-area, inverted or NaN boxes and unknown classes: stop, or skip and count")
    p.add_argument("--num-images", type=int, default=None, help="images (synthetic source only)")
    p.add_argument("--seed", type=int, default=0, help="seed (synthetic source only)")


def _add_data(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="dataset statistics and format conversion")
    data_sub = p.add_subparsers(dest="data_command", required=True, metavar="SUBCOMMAND")
    s = data_sub.add_parser("stats", help="per-class counts, box sizes, problems; a histogram PNG",
                            formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    s.add_argument("path", help="dataset folder, COCO json, or synthetic[:preset]")
    _add_data_source_args(s, on_bad_box="skip")
    s.add_argument("--check-images", action="store_true", help="decode every image (missing, corrupt, size)")
    s.add_argument("--out", type=Path, default=Path("data_stats.png"), help="histogram PNG")
    s.add_argument("--json", type=Path, default=None, help="also write the statistics as JSON")
    s.set_defaults(func=cmd_data_stats)
    c = data_sub.add_parser("convert", help="write a dataset as COCO, VOC or YOLO",
                            formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    c.add_argument("path", help="dataset folder, COCO json, or synthetic[:preset]")
    _add_data_source_args(c, on_bad_box="error")
    c.add_argument("--to", required=True, choices=["coco", "voc", "yolo"], help="output format")
    c.add_argument("--out", type=Path, required=True, help="output folder")
    c.set_defaults(func=cmd_data_convert)


def _open_from_args(args: argparse.Namespace):  # noqa: ANN202 - a DetectionDataset
    from .data.open import open_dataset

    extra = {"num_images": args.num_images, "seed": args.seed}
    return open_dataset(args.path, args.split, args.format, on_bad_box=args.on_bad_box, **extra)


def _print_skips(dataset) -> None:  # noqa: ANN001
    skips = getattr(dataset, "skips", None)
    if skips:
        print(f"{skips.total} box problems handled:")
        for line in skips.lines():
            print(f"  {line}")


def cmd_data_stats(args: argparse.Namespace) -> int:
    from .data.stats import dataset_stats, format_stats, plot_stats, write_stats_json

    stats = dataset_stats(_open_from_args(args), check=args.check_images)
    print(format_stats(stats))
    print(f"wrote {plot_stats(stats, args.out)}")
    if args.json is not None:
        print(f"wrote {write_stats_json(stats, args.json)}")
    return 0


def cmd_data_convert(args: argparse.Namespace) -> int:
    from .data.convert import convert_dataset

    dataset = _open_from_args(args)
    written = convert_dataset(dataset, args.to, args.out, args.split)
    print(f"converted {len(dataset)} images, {sum(r.num_boxes for r in dataset.records)} boxes to {args.to}: "
          f"{written}")
    _print_skips(dataset)
    return 0


COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    _add_demo,
    _add_data,
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
