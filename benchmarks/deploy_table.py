"""The `[deploy]` table: a teacher and its distilled students as they ship, timed and scored in their runtimes.

For each student (one checkpoint per seed) and the teacher: ONNX Runtime fp32, OpenVINO fp32 and OpenVINO int8
artifacts (int8 calibrated on the training split, kept within --max-drop validation mAP@0.5 of fp32 by the export's
fallback ladder), each scored on the test split through the same evaluator as the eager checkpoint. Speed: every
variant of the first student and of the teacher timed in one process, interleaved image by image, warm-up
excluded, one thread (detdistill.models.timing), on --num-images test images; each ratio is against the student
in torch eager fp32, the teacher in torch eager fp32, and the teacher in the same runtime and precision.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/deploy_table.py --teacher runs/bccd/teacher/last.pt \\
        --students runs/deploy-bccd/s0/last.pt runs/deploy-bccd/s1/last.pt runs/deploy-bccd/s2/last.pt \\
        --data ../shared/data/bccd --calib-split train --val-split val --test-split test --input-size 480x640 \\
        --out runs/deploy-bccd/table
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

import torch

from detdistill.data.open import open_dataset
from detdistill.deploy import ArtifactError, load_artifact
from detdistill.deploy.export import export_artifact
from detdistill.eval.inference import evaluate_model
from detdistill.models import load_detector
from detdistill.models.timing import Latency, interleaved_times
from detdistill.utils import atomic_write_text

VARIANTS = (("onnx", "fp32"), ("openvino", "fp32"), ("openvino", "int8"))
RUNTIME_NAME = {"onnx": "onnxruntime", "openvino": "openvino"}


def build_variants(checkpoint: Path, out: Path, args: argparse.Namespace, calibration: Any,
                   validation: Any, max_drop: float | None) -> dict[str, Any]:
    """name -> model: eager fp32 and each exported artifact (kept under ``out`` so a rerun reuses them). An int8
    export the accuracy check refuses is recorded in ``out/refused.json`` and left out."""
    models: dict[str, Any] = {"torch fp32": load_detector(checkpoint).eval()}
    refused_path = out / "refused.json"
    refused = json.loads(refused_path.read_text()) if refused_path.is_file() else {}
    for fmt, precision in VARIANTS:
        folder = out / f"{fmt}-{precision}"
        name = f"{RUNTIME_NAME[fmt]} {precision}"
        if name in refused:
            continue
        if not (folder / "manifest.json").is_file():
            try:
                export_artifact(checkpoint, folder, fmt=fmt, precision=precision, input_size=args.input_size,
                                calibration=calibration, calib_images=args.calib_images, validation=validation,
                                max_drop=max_drop, threads=args.threads, overwrite=True,
                                log=lambda line: print(line, file=sys.stderr))
            except ArtifactError as exc:
                print(f"refused: {exc}", file=sys.stderr)
                refused[name] = str(exc)
                atomic_write_text(json.dumps(refused, indent=1), refused_path)
                continue
        models[name] = load_artifact(folder, threads=args.threads)
    return models


def score(models: dict[str, Any], test: Any, folder: Path) -> dict[str, dict[str, float]]:
    """Test mAP@0.5 / AP of each variant, cached in ``folder/test_scores.json`` (an export is scored once)."""
    path = folder / "test_scores.json"
    out = json.loads(path.read_text()) if path.is_file() else {}
    for name, model in models.items():
        if name in out:
            continue
        metrics = evaluate_model(model, test, batch_size=1).metrics
        out[name] = {"mAP50": float(metrics["mAP50"]), "AP": float(metrics["AP"])}
        atomic_write_text(json.dumps(out, indent=1), path)
        print(f"  {name}: test mAP@0.5 {out[name]['mAP50']:.4f} AP {out[name]['AP']:.4f}", file=sys.stderr)
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--teacher", type=Path, required=True)
    p.add_argument("--students", type=Path, nargs="*", default=[], help="one distilled checkpoint per seed")
    p.add_argument("--teacher-only", action="store_true",
                   help="export and score the teacher's variants, then stop (a later full run reuses them)")
    p.add_argument("--data", required=True)
    p.add_argument("--calib-split", default="train")
    p.add_argument("--val-split", default="val")
    p.add_argument("--test-split", default="test")
    p.add_argument("--input-size", default="480x640")
    p.add_argument("--calib-images", type=int, default=50)
    p.add_argument("--max-drop", type=float, default=0.01)
    p.add_argument("--teacher-max-drop", default=None,
                   help="the teacher's int8 check (default --max-drop); 'none' exports it unchecked, for its speed, "
                        "and the table shows what it costs on test")
    p.add_argument("--num-images", type=int, default=30, help="test images timed")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    calibration = open_dataset(args.data, args.calib_split, on_bad_box="skip")
    validation = open_dataset(args.data, args.val_split, on_bad_box="skip")
    test = open_dataset(args.data, args.test_split, on_bad_box="skip")

    print("teacher", file=sys.stderr)
    teacher_drop = (args.max_drop if args.teacher_max_drop is None
                    else None if args.teacher_max_drop == "none" else float(args.teacher_max_drop))
    teacher = build_variants(args.teacher, args.out / "teacher", args, calibration, validation, teacher_drop)
    scores = {"teacher": score(teacher, test, args.out / "teacher")}
    if args.teacher_only:
        return 0
    if not args.students:
        p.error("--students: give one distilled checkpoint per seed (or --teacher-only)")
    students = []
    for k, path in enumerate(args.students):
        print(f"student {k}: {path}", file=sys.stderr)
        models = build_variants(path, args.out / f"student{k}", args, calibration, validation, args.max_drop)
        scores[f"student{k}"] = score(models, test, args.out / f"student{k}")
        students.append(models)

    images = [test.load_image(i) for i in range(min(args.num_images, len(test)))]
    timed = {f"teacher {n}": m for n, m in teacher.items()} | {f"student {n}": m for n, m in students[0].items()}
    print(f"timing {len(timed)} variants on {len(images)} test images, interleaved, {args.threads} thread(s)",
          file=sys.stderr)
    latency = {n: Latency.from_seconds(s) for n, s in interleaved_times(timed, images, args.threads).items()}

    rows = []
    for name in students[0]:
        s_ms = latency[f"student {name}"].median_ms
        t_ms = latency[f"teacher {name}"].median_ms if f"teacher {name}" in latency else float("nan")
        student_scores = [scores[f"student{k}"][name] for k in range(len(students)) if name in scores[f"student{k}"]]
        rows.append({
            "variant": name, "student_ms": s_ms, "teacher_ms": t_ms,
            "x_student_eager": latency["student torch fp32"].median_ms / s_ms,
            "x_teacher_eager": latency["teacher torch fp32"].median_ms / s_ms,
            "x_teacher_same_runtime": t_ms / s_ms,
            "teacher_x_own_eager": latency["teacher torch fp32"].median_ms / t_ms,
            "student_mAP50": statistics.mean(s["mAP50"] for s in student_scores),
            "student_mAP50_sd": statistics.stdev(s["mAP50"] for s in student_scores) if len(students) > 1 else 0.0,
            "student_AP": statistics.mean(s["AP"] for s in student_scores),
            "student_mAP50_minus_eager": statistics.mean(
                scores[f"student{k}"][name]["mAP50"] - scores[f"student{k}"]["torch fp32"]["mAP50"]
                for k in range(len(students)) if name in scores[f"student{k}"]),
            "teacher_mAP50": scores["teacher"].get(name, {}).get("mAP50", float("nan")),
            "teacher_AP": scores["teacher"].get(name, {}).get("AP", float("nan")),
        })
    manifests = {}
    for who in [f"student{k}" for k in range(len(students))] + ["teacher"]:
        path = args.out / who / "openvino-int8" / "manifest.json"
        refused = args.out / who / "refused.json"
        manifests[who] = (json.loads(path.read_text())["quantization"] if path.is_file()
                          else {"refused": json.loads(refused.read_text()).get("openvino int8", "not exported")})
    lines = [f"{len(students)} student seed(s), {len(images)} timed test images, {args.threads} thread(s), "
             f"input {args.input_size}, torch {torch.__version__}",
             "", "| variant | student ms | × student eager | × teacher eager | × teacher same runtime | teacher × own "
             "eager | student test mAP@0.5 (± sd) | Δ vs eager | student AP | teacher mAP@0.5 / AP |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['variant']} | {r['student_ms']:.1f} | {r['x_student_eager']:.2f}x | "
                     f"{r['x_teacher_eager']:.2f}x | {r['x_teacher_same_runtime']:.2f}x | {r['teacher_x_own_eager']:.2f}x"
                     f" | {r['student_mAP50']:.3f} ± {r['student_mAP50_sd']:.3f} | {r['student_mAP50_minus_eager']:+.4f}"
                     f" | {r['student_AP']:.3f} | {r['teacher_mAP50']:.3f} / {r['teacher_AP']:.3f} |")
    lines += ["", "int8 (validation mAP@0.5, fp32 → int8, what stayed in fp32):"]
    for who, qrec in manifests.items():
        if "refused" in qrec:
            lines.append(f"- {who}: refused by the accuracy check: {qrec['refused']}")
            continue
        if not qrec.get("checked", True):
            lines.append(f"- {who}: exported without the accuracy check (--teacher-max-drop none; whole model)")
            continue
        lines.append(f"- {who}: {qrec['val_mAP50_fp32']:.4f} → {qrec['val_mAP50_int8']:.4f} ({qrec['chosen']}; "
                     f"fp32: {', '.join(qrec['fp32_layers']) or 'nothing'})")
    text = "\n".join(lines)
    print(text)
    atomic_write_text(text + "\n", args.out / "table.md")
    atomic_write_text(json.dumps({"rows": rows, "scores": scores, "int8": manifests}, indent=1), args.out / "table.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
