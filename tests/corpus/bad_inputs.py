"""The bad-input corpus (gathered in issue 21): each case is what a user did, and what must come of it.

A case function gets an empty folder, runs the CLI (or the library) and returns quietly when the outcome is
right: a one-line error naming the key/file (``expect_error``) or a correct result. It raises
:class:`Wrong` for a silently wrong or unclear outcome; any other exception escaping is a traceback.

``tests/test_bad_input_corpus.py`` runs every case in-process. The driver below runs each in its own
process with a timeout, against any source tree, and prints the counts::

    python tests/corpus/bad_inputs.py --src src          # this tree
    python tests/corpus/bad_inputs.py --src /work/main/src  # the integration tree, for "before" counts
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Callable

import numpy as np

CASES: dict[str, tuple[str, Callable[[Path], None]]] = {}
TINY = ["data.num_train_images=8", "data.num_eval_images=2", "data.test_split=null", "train.max_steps=2",
        "train.batch_size=2", "train.eval_every=0", "train.progress=false", "model.name=cpu_tiny",
        "model.overrides={min_size: 64, max_size: 64}"]


class Wrong(AssertionError):
    """The command ran to a wrong or unclear outcome."""


def case(category: str) -> Callable:
    def register(fn: Callable[[Path], None]) -> Callable[[Path], None]:
        CASES[fn.__name__] = (category, fn)
        return fn
    return register


def cli(argv: list[str]) -> tuple[int, str, str]:
    from detdistill.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main([str(a) for a in argv])
        except SystemExit as exc:  # argparse
            rc = exc.code if isinstance(exc.code, int) else 2
    return rc, out.getvalue(), err.getvalue()


def expect_error(argv: list[str], *needles: str) -> str:
    rc, out, err = cli(argv)
    if rc == 0:
        raise Wrong(f"exit 0 (no error) for {argv}: {out[-300:]}")
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    if len(lines) != 1 or "error" not in lines[0]:
        raise Wrong(f"expected a one-line error, got {len(lines)} lines: {err[-500:]}")
    missing = [n for n in needles if n not in lines[0]]
    if missing:
        raise Wrong(f"error does not name {missing}: {lines[0]}")
    return lines[0]


def expect_ok(argv: list[str]) -> tuple[str, str]:
    rc, out, err = cli(argv)
    if rc != 0:
        raise Wrong(f"exit {rc} for {argv}: {err[-500:]}")
    return out, err


# ------------------------------------------------------------------------------------------- builders
def teacher(tmp: Path, name: str = "t.pt", **edit: object) -> Path:
    import torch

    from detdistill.data import SYNTHETIC_CLASS_NAMES
    from detdistill.models import build_detector, checkpoint_payload

    torch.manual_seed(0)
    payload = checkpoint_payload(build_detector("cpu_tiny", 7, min_size=64, max_size=64), list(SYNTHETIC_CLASS_NAMES))
    for dotted, value in edit.items():
        node = payload
        *parents, leaf = dotted.split("__")
        for p in parents:
            node = node[p]
        node[leaf] = value
    torch.save(payload, tmp / name)
    return tmp / name


def converted(tmp: Path, to: str, n: int = 4, split: str = "train") -> Path:
    out = tmp / f"{to}_data"
    expect_ok(["data", "convert", "synthetic", "--split", split, "--num-images", n, "--to", to, "--out", out])
    return out


def train_args(tmp: Path, *extra: str, out: str = "run") -> list[str]:
    return ["train", *TINY, f"train.out_dir={tmp / out}", *extra]


def write_png16(path: Path, value: int = 20000) -> Path:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((32, 32), value, np.uint16)).save(path)
    return path


# -------------------------------------------------------------------------------------------- hangs
@case("hang")
def batch_larger_than_synthetic_train_set(tmp: Path) -> None:
    expect_error(train_args(tmp, "train.batch_size=9"), "train.batch_size", "9", "8 images")


@case("hang")
def batch_larger_than_coco_train_set(tmp: Path) -> None:
    data = converted(tmp, "coco", n=3)
    expect_error(train_args(tmp, f"data.source={data}", "data.val_split=null", "train.batch_size=4"),
                 "train.batch_size", "3 images")


# ------------------------------------------------------------------------------------ silently wrong
@case("silent")
def predict_on_a_dataset_uses_its_image_ids(tmp: Path) -> None:
    data = converted(tmp, "coco", n=3)
    ckpt = teacher(tmp)
    expect_ok(["predict", "--checkpoint", ckpt, "--data", data, "--split", "train", "--out", tmp / "pred",
               "--score-threshold", "0"])
    doc = json.loads((tmp / "pred" / "detections.json").read_text())
    gt = json.loads((data / "annotations" / "train.json").read_text())
    by_id = {img["id"]: Path(img["file_name"]).name for img in gt["images"]}
    got = {img["id"]: Path(img["file_name"]).name for img in doc["images"]}
    if got != by_id:
        raise Wrong(f"predict ids {got} != ground truth ids {by_id}")
    expect_ok(["evaluate", "--gt", data / "annotations" / "train.json", "--detections", tmp / "pred" / "detections.json"])


def _pixels(path: Path) -> "np.ndarray":
    from detdistill.data.base import load_rgb_image

    return np.asarray(load_rgb_image(path))


@case("silent")
def gray16_png_is_scaled_by_its_range(tmp: Path) -> None:
    px = _pixels(write_png16(tmp / "g.png", 32768))
    if not abs(int(px.mean()) - 128) <= 1:
        raise Wrong(f"16-bit value 32768 decoded to {px.mean():.0f}, expected ~128")


@case("silent")
def float32_tiff_is_refused_naming_file_and_mode(tmp: Path) -> None:
    from PIL import Image

    from detdistill.data.base import DatasetError

    Image.fromarray(np.full((8, 8), 0.5, np.float32)).save(tmp / "f.tif")
    try:
        _pixels(tmp / "f.tif")
    except DatasetError as exc:
        if "f.tif" in str(exc) and "'F'" in str(exc):
            return
        raise Wrong(str(exc)) from exc
    raise Wrong("float32 TIFF decoded silently")


@case("silent")
def int32_tiff_is_refused_naming_file_and_mode(tmp: Path) -> None:
    from PIL import Image

    from detdistill.data.base import DatasetError

    Image.fromarray(np.full((8, 8), 40000, np.int32)).save(tmp / "i.tif")
    try:
        _pixels(tmp / "i.tif")
    except DatasetError as exc:
        if "i.tif" in str(exc) and "'I'" in str(exc):
            return
        raise Wrong(str(exc)) from exc
    raise Wrong("int32 TIFF decoded silently")


@case("silent")
def check_images_notices_a_float_tiff(tmp: Path) -> None:
    from PIL import Image

    data = converted(tmp, "yolo", n=2)
    first = sorted((data / "images" / "train").iterdir())[0]
    w, h = Image.open(first).size
    first.unlink()
    Image.fromarray(np.full((h, w), 0.5, np.float32)).save(first.with_suffix(".tif"))
    rc, out, _ = cli(["data", "stats", data, "--check-images", "--out", tmp / "s.png"])
    if rc == 0 or "image check: 1 problems" not in out:
        raise Wrong(f"exit {rc}; {out[-400:]}")


@case("silent")
def negative_warmup_factor(tmp: Path) -> None:
    expect_error(train_args(tmp, "optim.warmup_factor=-0.5"), "optim.warmup_factor", "-0.5")


@case("silent")
def lr_nan_is_refused(tmp: Path) -> None:
    expect_error(train_args(tmp, "optim.lr=nan"), "optim.lr")


@case("silent")
def nan_weights_are_never_a_good_checkpoint(tmp: Path) -> None:
    import torch

    from detdistill.config import OptimConfig, TrainConfig
    from detdistill.data import SyntheticShapes
    from detdistill.engine import NonFiniteLossError, Trainer
    from detdistill.models import build_detector

    model = build_detector("cpu_tiny", 7, min_size=64, max_size=64)
    trainer = Trainer(model, SyntheticShapes("train", num_images=4), OptimConfig(lr=float("nan"), warmup_steps=0),
                      TrainConfig(max_steps=3, batch_size=2, checkpoint_every=1, eval_every=0, progress=False,
                                  out_dir=str(tmp / "run")))
    try:
        trainer.fit()
    except NonFiniteLossError as exc:
        last = tmp / "run" / "last.pt"
        if last.is_file():
            state = torch.load(last, weights_only=True)["state_dict"]
            if not all(bool(torch.isfinite(t).all()) for t in state.values() if t.is_floating_point()):
                raise Wrong("last.pt holds NaN weights") from exc
        if "good checkpoint" in str(exc) and "none written yet" not in str(exc) and not last.is_file():
            raise Wrong(str(exc)) from exc
        return
    raise Wrong("a NaN learning rate trained to the end")


@case("silent")
def max_steps_zero(tmp: Path) -> None:
    expect_error(train_args(tmp, "train.max_steps=0"), "train.max_steps")


@case("silent")
def negative_grad_clip_norm(tmp: Path) -> None:
    expect_error(train_args(tmp, "optim.grad_clip_norm=-1"), "optim.grad_clip_norm")


@case("silent")
def negative_lr_names_the_key(tmp: Path) -> None:
    expect_error(train_args(tmp, "optim.lr=-0.01"), "optim.lr", "-0.01")


@case("silent")
def scheduler_typo_at_build_time(tmp: Path) -> None:
    line = expect_error(train_args(tmp, "optim.scheduler=cosin"), "optim.scheduler", "cosine")
    if (tmp / "run").exists():
        raise Wrong(f"run folder written before the error: {line}")


@case("silent")
def resume_with_a_changed_lr(tmp: Path) -> None:
    expect_ok(train_args(tmp))
    before = (tmp / "run" / "config.yaml").read_text()
    expect_error(train_args(tmp, "optim.lr=0.5", "train.max_steps=3", "--resume"), "optim.lr", "0.5")
    if (tmp / "run" / "config.yaml").read_text() != before:
        raise Wrong("config.yaml rewritten with a config that did not run")


@case("silent")
def evaluate_refuses_duplicate_annotation_ids(tmp: Path) -> None:
    data = converted(tmp, "coco", n=2)
    gt_path = data / "annotations" / "train.json"
    gt = json.loads(gt_path.read_text())
    for ann in gt["annotations"]:
        ann["id"] = 1
    gt_path.write_text(json.dumps(gt))
    dets = [dict(a, score=1.0) for a in gt["annotations"]]
    (tmp / "d.json").write_text(json.dumps(dets))
    expect_error(["evaluate", "--gt", gt_path, "--detections", tmp / "d.json"], "repeats id 1")


@case("silent")
def gif_among_jpgs_is_reported(tmp: Path) -> None:
    from PIL import Image

    data = converted(tmp, "yolo", n=3)
    first = sorted((data / "images" / "train").iterdir())[0]
    Image.open(first).save(first.with_suffix(".gif"))
    first.unlink()
    out, _ = expect_ok(["data", "stats", data, "--out", tmp / "s.png"])
    if "unsupported_image: 1" not in out or ".gif" not in out:
        raise Wrong(out[-500:])


@case("silent")
def label_files_without_images_are_reported(tmp: Path) -> None:
    data = converted(tmp, "yolo", n=3)
    sorted((data / "images" / "train").iterdir())[0].unlink()
    out, _ = expect_ok(["data", "stats", data, "--out", tmp / "s.png"])
    if "label_without_image: 1" not in out:
        raise Wrong(out[-500:])


@case("silent")
def yolo_classes_txt_with_bom(tmp: Path) -> None:
    from detdistill.data import open_dataset

    data = converted(tmp, "yolo", n=2)
    (data / "data.yaml").unlink()
    names = ["cat", "dog", "c", "d", "e", "f"]
    (data / "classes.txt").write_bytes("\ufeff".encode() + "\n".join(names).encode())
    ds = open_dataset(data, "train", "yolo")
    if ds.class_names != names:
        raise Wrong(f"class names {ds.class_names}")


# ---------------------------------------------------------------------------------------- tracebacks
@case("traceback")
def yolo_data_yaml_path_is_a_number(tmp: Path) -> None:
    data = converted(tmp, "yolo", n=2)
    text = (data / "data.yaml").read_text()
    (data / "data.yaml").write_text("path: 5\n" + text)
    expect_error(["data", "stats", data, "--out", tmp / "s.png"], "data.yaml", "'path'", "5")


@case("traceback")
def yolo_names_with_mixed_keys(tmp: Path) -> None:
    data = converted(tmp, "yolo", n=2)
    (data / "data.yaml").write_text("train: images/train\nnames: {0: a, '1': b}\n")
    expect_error(["data", "stats", data, "--out", tmp / "s.png"], "data.yaml", "'names'")


def _bomb(path: Path) -> Path:
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", 15000, 15000, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))
    return path


@case("traceback")
def png_bomb_in_check_images(tmp: Path) -> None:
    data = converted(tmp, "yolo", n=2)
    first = sorted((data / "images" / "train").iterdir())[0]
    first.unlink()
    _bomb(first.with_suffix(".png"))
    expect_error(["data", "stats", data, "--check-images", "--out", tmp / "s.png"], "15000x15000",
                 "--max-image-pixels")


@case("traceback")
def png_bomb_in_predict(tmp: Path) -> None:
    expect_error(["predict", "--checkpoint", teacher(tmp), "--images", _bomb(tmp / "big.png"), "--out", tmp / "p"],
                 "big.png", "--max-image-pixels")


@case("traceback")
def checkpoint_num_classes_is_a_string(tmp: Path) -> None:
    ckpt = teacher(tmp, model_spec__num_classes="7")
    expect_error(["predict", "--checkpoint", ckpt, "--images", write_png16(tmp / "a.png"), "--out", tmp / "p"],
                 "t.pt", "num_classes")


@case("traceback")
def checkpoint_min_size_negative(tmp: Path) -> None:
    ckpt = teacher(tmp, model_spec__kwargs={"min_size": -5})
    expect_error(["predict", "--checkpoint", ckpt, "--images", write_png16(tmp / "a.png"), "--out", tmp / "p"],
                 "t.pt", "min_size", "-5")


@case("traceback")
def device_gpu(tmp: Path) -> None:
    expect_error(train_args(tmp, "train.device=gpu"), "train.device", "gpu")


@case("traceback")
def device_tpu(tmp: Path) -> None:
    expect_error(train_args(tmp, "train.device=tpu"), "train.device", "tpu")


@case("traceback")
def threads_negative(tmp: Path) -> None:
    expect_error(train_args(tmp, "train.threads=-1"), "train.threads")


@case("traceback")
def out_dir_is_a_file(tmp: Path) -> None:
    (tmp / "f").write_text("x")
    expect_error(["train", *TINY, f"train.out_dir={tmp / 'f'}"], "train.out_dir", "file")


@case("traceback")
def min_size_override_negative(tmp: Path) -> None:
    expect_error(train_args(tmp, "model.overrides={min_size: -5}"), "min_size", "-5")


@case("traceback")
def resume_with_a_different_model(tmp: Path) -> None:
    expect_ok(train_args(tmp))
    expect_error(train_args(tmp, "model.name=cpu_small", "--resume"), "model.name", "cpu_small")


@case("traceback")
def convert_out_is_a_file(tmp: Path) -> None:
    (tmp / "f").write_text("x")
    expect_error(["data", "convert", "synthetic", "--num-images", "2", "--to", "coco", "--out", tmp / "f"],
                 "--out", "file")


@case("traceback")
def error_in_a_dataloader_worker_is_one_line(tmp: Path) -> None:
    data = converted(tmp, "yolo", n=4)
    from PIL import Image

    for img in sorted((data / "images" / "train").iterdir()):
        jpg = img.with_suffix(".jpg")
        Image.open(img).convert("RGB").save(jpg, quality=95)
        img.unlink()
        raw = jpg.read_bytes()
        jpg.write_bytes(raw[:len(raw) // 2])  # truncated: the header reads, the pixels do not
    # The pre-flight image check (data.on_bad_image, issue #38) now finds truncated files before any worker
    # starts: under the default, repair, this run trains; under error it stops before step 1, in one line.
    expect_error(train_args(tmp, f"data.source={data}", "data.val_split=null", "data.num_workers=1",
                            "data.on_bad_image=error"), "cannot decode image")


@case("traceback")
def broken_pipe_on_head(tmp: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    cmd = (f"{sys.executable} -m detdistill.cli data stats synthetic --num-images 3 --out {tmp / 's.png'} "
           "| true")  # the reader is gone before the first write, as with `| head -1` on a long output
    proc = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, env=env, timeout=120)
    if "Traceback" in proc.stderr or "BrokenPipe" in proc.stderr:
        raise Wrong(proc.stderr[-400:])


# ----------------------------------------------------------------------------------- unclear messages
def _latin1(path: Path, text: str) -> Path:
    path.write_bytes(text.encode("latin-1"))
    return path


@case("unclear")
def non_utf8_voc_split_file(tmp: Path) -> None:
    data = converted(tmp, "voc", n=2)
    _latin1(data / "ImageSets" / "Main" / "train.txt", "caf\xe9\n")
    expect_error(["data", "stats", data, "--split", "train", "--out", tmp / "s.png"], "train.txt", "UTF-8")


@case("unclear")
def non_utf8_yolo_names_file(tmp: Path) -> None:
    data = converted(tmp, "yolo", n=2)
    (data / "data.yaml").unlink()
    _latin1(data / "classes.txt", "caf\xe9\n")
    expect_error(["data", "stats", data, "--split", "train", "--format", "yolo", "--out", tmp / "s.png"],
                 "classes.txt", "UTF-8")


@case("unclear")
def non_utf8_yolo_list_file(tmp: Path) -> None:
    data = converted(tmp, "yolo", n=2)
    _latin1(data / "train.txt", "images/train/caf\xe9.png\n")
    (data / "data.yaml").write_text("train: train.txt\nnames: [a, b, c, d, e, f]\n")
    expect_error(["data", "stats", data, "--split", "train", "--out", tmp / "s.png"], "train.txt", "UTF-8")


@case("unclear")
def non_utf8_kitti_label(tmp: Path) -> None:
    from PIL import Image

    (tmp / "k" / "label_2").mkdir(parents=True)
    (tmp / "k" / "image_2").mkdir()
    Image.new("RGB", (20, 10)).save(tmp / "k" / "image_2" / "000000.png")
    _latin1(tmp / "k" / "label_2" / "000000.txt", "Caf\xe9 0 0 0 1 1 5 5 1 1 1 1 1 1 0\n")
    expect_error(["data", "stats", tmp / "k", "--out", tmp / "s.png"], "000000.txt", "UTF-8")


@case("unclear")
def non_utf8_config_file(tmp: Path) -> None:
    _latin1(tmp / "c.yaml", "train:\n  out_dir: caf\xe9\n")
    expect_error(["train", "--config", tmp / "c.yaml"], "c.yaml", "UTF-8")


@case("unclear")
def gt_annotation_without_id(tmp: Path) -> None:
    data = converted(tmp, "coco", n=2)
    gt_path = data / "annotations" / "train.json"
    gt = json.loads(gt_path.read_text())
    del gt["annotations"][0]["id"]
    gt_path.write_text(json.dumps(gt))
    (tmp / "d.json").write_text("[]")
    expect_error(["evaluate", "--gt", gt_path, "--detections", tmp / "d.json"], "annotations[0]", "'id'")


@case("unclear")
def empty_checkpoint_file(tmp: Path) -> None:
    (tmp / "e.pt").write_bytes(b"")
    expect_error(["predict", "--checkpoint", tmp / "e.pt", "--images", write_png16(tmp / "a.png"), "--out",
                  tmp / "p"], "e.pt", "empty")


@case("unclear")
def random_bytes_as_checkpoint(tmp: Path) -> None:
    (tmp / "r.pt").write_bytes(os.urandom(256))
    line = expect_error(["predict", "--checkpoint", tmp / "r.pt", "--images", write_png16(tmp / "a.png"), "--out",
                         tmp / "p"], "r.pt")
    if "weights_only=False" in line:
        raise Wrong(line)


@case("unclear")
def onnx_file_as_checkpoint(tmp: Path) -> None:
    (tmp / "m.onnx").write_bytes(b"\x08\x07\x12\x07pytorch" + os.urandom(64))
    line = expect_error(["predict", "--checkpoint", tmp / "m.onnx", "--images", write_png16(tmp / "a.png"),
                         "--out", tmp / "p"], "m.onnx", "ONNX")
    if "weights_only=False" in line:
        raise Wrong(line)


@case("unclear")
def val_split_none_spelled_like_python(tmp: Path) -> None:
    from detdistill.config import load_config

    for spelling in ("None", "none", "null"):
        if load_config(None, [f"data.val_split={spelling}"]).data.val_split is not None:
            raise Wrong(f"data.val_split={spelling} is not None")


@case("unclear")
def missing_val_split_names_the_key(tmp: Path) -> None:
    data = converted(tmp, "voc", n=8)
    expect_error(train_args(tmp, f"data.source={data}"), "data.val_split")


# ---------------------------------------------------------------------------------------- Unix habits
@case("habit")
def second_run_into_the_same_folder_is_refused(tmp: Path) -> None:
    expect_ok(train_args(tmp))
    expect_error(train_args(tmp), "--resume", "--overwrite")
    expect_ok(train_args(tmp, "--overwrite"))


@case("habit")
def resume_without_last_pt_says_so(tmp: Path) -> None:
    out, err = expect_ok(train_args(tmp, "--resume"))
    if "no last.pt" not in out + err:
        raise Wrong(out[-300:])


@case("habit")
def stale_temp_checkpoints_are_removed(tmp: Path) -> None:
    (tmp / "run").mkdir()
    (tmp / "run" / ".last.pt.abc123.tmp").write_bytes(b"torn")
    expect_ok(train_args(tmp, "--resume"))
    if list((tmp / "run").glob(".*.tmp")):
        raise Wrong("leftover temp file kept")


@case("habit")
def resuming_a_finished_run_logs_no_duplicate_val_line(tmp: Path) -> None:
    args = [a for a in train_args(tmp) if not a.startswith("data.num_eval")] + ["data.num_eval_images=2"]
    expect_ok(args)
    expect_ok(args + ["--resume"])
    vals = [ln for ln in (tmp / "run" / "metrics.jsonl").read_text().splitlines() if '"val"' in ln]
    if len(vals) != 1:
        raise Wrong(f"{len(vals)} val lines")


@case("habit")
def torn_metrics_line_is_skipped_with_a_note(tmp: Path) -> None:
    expect_ok(train_args(tmp))
    with open(tmp / "run" / "metrics.jsonl", "a") as fh:
        fh.write('{"step": 2, "kind": "tr')
    out, _ = expect_ok(train_args(tmp, "train.max_steps=3", "--resume"))
    if "note:" not in out:
        raise Wrong(out[-300:])


@case("habit")
def outputs_respect_the_umask(tmp: Path) -> None:
    expect_ok(train_args(tmp))
    mask = os.umask(0)
    os.umask(mask)
    for name in ("last.pt", "summary.json", "config.yaml"):
        mode = (tmp / "run" / name).stat().st_mode & 0o777
        if mode != 0o666 & ~mask:
            raise Wrong(f"{name} has mode {oct(mode)}")


@case("habit")
def help_prints_each_default_once(tmp: Path) -> None:
    from detdistill.cli import build_parser

    for argv in (["data", "stats", "--help"], ["evaluate", "--help"], ["predict", "--help"]):
        _, out, _ = cli(argv)
        if "(default: None)" in out or out.count("(default:") != len(set(
                ln for ln in out.splitlines() if "(default:" in ln)):
            raise Wrong(out)
    if "argument parsing only" in build_parser().description:
        raise Wrong(build_parser().description)


@case("habit")
def evaluate_synthetic_defaults_to_the_test_split(tmp: Path) -> None:
    out, _ = expect_ok(["evaluate", "--checkpoint", teacher(tmp), "--data", "synthetic", "--num-images", "2",
                        "--metric", "voc"])
    if "test split" not in out:
        raise Wrong(out[-300:])


@case("habit")
def non_tty_logs_get_lines_not_carriage_returns(tmp: Path) -> None:
    args = [a for a in train_args(tmp) if a != "train.progress=false"]
    out, err = expect_ok(args)
    if "\r" in out + err or "train: step 2/2" not in out:
        raise Wrong((out + err)[-300:])


def run_one(name: str, folder: str) -> None:
    category, fn = CASES[name]
    try:
        fn(Path(folder))
        outcome = "handled"
    except Wrong as exc:
        outcome = f"wrong: {str(exc)[:300]}"
    print("RESULT " + json.dumps({"name": name, "category": category, "outcome": outcome}))


def main() -> int:
    import argparse
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", default="src", help="the source tree to test (PYTHONPATH)")
    parser.add_argument("--timeout", type=float, default=90, help="seconds before a case counts as a hang")
    parser.add_argument("names", nargs="*", help="cases (default: all)")
    args = parser.parse_args()
    counts: dict[str, int] = {}
    here = str(Path(__file__).resolve().parent)
    for name in args.names or list(CASES):
        with tempfile.TemporaryDirectory() as tmp:
            env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(args.src).resolve()), here]),
                   "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
            code = f"from bad_inputs import run_one; run_one({name!r}, {tmp!r})"
            try:
                proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                                      timeout=args.timeout, cwd=tmp)
                lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
                if lines:
                    outcome = json.loads(lines[-1][7:])["outcome"]
                    kind = "handled" if outcome == "handled" else "wrong"
                else:
                    outcome, kind = proc.stderr.strip().splitlines()[-1][:200] if proc.stderr.strip() else "?", \
                        "traceback"
            except subprocess.TimeoutExpired:
                outcome, kind = f"no result in {args.timeout:.0f} s", "hang"
        counts[kind] = counts.get(kind, 0) + 1
        print(f"{kind:9s} {CASES[name][0]:9s} {name}: {outcome if kind != 'handled' else ''}", flush=True)
    print("counts:", ", ".join(f"{k} {v}" for k, v in sorted(counts.items())), f"(of {sum(counts.values())})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
