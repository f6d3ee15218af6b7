"""Low-rank students (Tucker-2 / SVD) of a trained teacher: accuracy lost by compression and recovered by
fine-tuning without a teacher vs distillation from the original (the paper's claim: distillation recovers
most of what compression lost).

For each ratio: compress the teacher (``compress_checkpoint``), score mAP@0.5 on the test images right
away; fine-tune the compressed model ``--steps`` steps without a teacher (``train_detector``, model.name =
the compressed checkpoint); distil into it from the original teacher for the same steps
(``distill_student``, paper defaults); score both. CPU images/s at batch 1 from ``describe``.

    .venv/bin/python benchmarks/lowrank_recovery.py --teacher /tmp/lowrank/teacher.pt --ratios 2 3 4

Data settings (source, training images, seed, batch size) come from the teacher checkpoint's config, so
students train on what the teacher trained on. Results accumulate in ``<out>/results.json``; a rerun skips
finished stages (delete the file to start over). The Markdown table is printed last.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from detdistill.config import load_config
from detdistill.data import SyntheticShapes
from detdistill.engine.run import distill_student, train_detector
from detdistill.eval.inference import evaluate_model
from detdistill.models import load_detector, read_checkpoint
from detdistill.models.describe import describe
from detdistill.models.lowrank import compress_checkpoint
from detdistill.utils import atomic_write_text


def measure(path: Path, test: Any, image_size: tuple[int, int], runs: int) -> dict[str, Any]:
    model = load_detector(path)
    metrics = evaluate_model(model, test, batch_size=8).metrics
    d = describe(model, image_size, threads=2, runs=runs, warmup=2)
    return {"checkpoint": str(path), "mAP50": float(metrics["mAP50"]), "AP": float(metrics.get("AP", float("nan"))),
            "params": d.params, "gflops": d.gflops, "images_per_s": 1000.0 / d.latency_ms_median}


def run_overrides(teacher: Path, steps: int, lr: float, out_dir: Path, extra: list[str]) -> list[str]:
    cfg = read_checkpoint(teacher)["metadata"].get("config", {})
    data, train = cfg.get("data", {}), cfg.get("train", {})
    inherited = [f"data.{k}={data[k]}" for k in ("source", "num_train_images", "dataset_seed") if k in data]
    inherited += [f"train.batch_size={train['batch_size']}"] if "batch_size" in train else []
    return [*inherited, f"train.max_steps={steps}", f"optim.lr={lr}", "train.eval_every=0",
            "data.num_eval_images=100", "data.test_split=null", f"optim.warmup_steps={min(50, steps // 5)}",
            f"train.checkpoint_every={max(50, steps // 2)}", "train.progress=false", f"train.out_dir={out_dir}",
            *extra]


def recovered(teacher: float, compressed: float, after: float) -> str:
    lost = teacher - compressed
    return f"{(after - compressed) / lost:.0%}" if lost > 1e-9 else "n/a"


def table(results: dict[str, Any]) -> str:
    t = results["teacher"]
    speed = results.get("speed", {})
    kd = ["distilled", *[f"distilled_{v}" for v in results.get("variants", {})]]
    heads = ["fine-tuned", *[k.replace("_", " ") for k in kd]]
    lines = ["| model | ratio (params) | params | GFLOPs | CPU images/s | mAP@0.5 compressed | " + " | ".join(heads)
             + " | recovered: " + " / ".join(heads) + " |",
             "| --- " + "| ---: " * (6 + len(heads)) + "|",
             f"| teacher | 1.00× | {t['params'] / 1e6:.2f} M | {t['gflops']:.2f} | "
             f"{speed.get('teacher', t['images_per_s']):.1f} | {t['mAP50']:.3f} |" + " |" * (len(heads) + 1)]
    for key, r in results["ratios"].items():
        c = r.get("compressed")
        if c is None:
            continue
        after = [r.get(k) for k in ("finetuned", *kd)]
        cells = " | ".join(f"{m['mAP50']:.3f}" if m else "–" for m in after)
        rec = " / ".join(recovered(t["mAP50"], c["mAP50"], m["mAP50"]) if m else "–" for m in after)
        lines.append(f"| Tucker student {key}× | {t['params'] / c['params']:.2f}× | {c['params'] / 1e6:.2f} M | "
                     f"{c['gflops']:.2f} | {speed.get(key, c['images_per_s']):.1f} | {c['mAP50']:.3f} | {cells} | "
                     f"{rec} |")
    variants = "; ".join(f"distilled {k}: {' '.join(v)}" for k, v in results.get("variants", {}).items())
    lines.append(f"\n{results['test']}; recovered = (after − compressed) / (teacher − compressed); "
                 f"{results['steps']} steps each, lr {results['lr']}; distilled = paper defaults"
                 f"{'; ' + variants if variants else ''}; images/s: batch 1, 2 threads, random "
                 f"{results.get('size', '160×160')} image, median over rounds of the median of {results['runs']} runs "
                 "(compressed architecture; fine-tuning and distillation keep it)")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--teacher", type=Path, required=True, help="trained teacher checkpoint")
    ap.add_argument("--ratios", type=float, nargs="+", default=[2.0, 3.0, 4.0], help="whole-model ratios")
    ap.add_argument("--steps", type=int, default=300, help="fine-tune / distil steps")
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument("--test-images", type=int, default=200, help="SyntheticShapes('test') images scored")
    ap.add_argument("--runs", type=int, default=20, help="timed forwards for images/s")
    ap.add_argument("--out", type=Path, default=Path("/tmp/lowrank/runs"))
    ap.add_argument("--set", nargs="*", default=[], metavar="key=value", help="more config overrides")
    ap.add_argument("--kd-variant", nargs="+", action="append", default=[], metavar="NAME key=value",
                    help="an extra distillation run per ratio with these distill overrides, e.g. "
                         "--kd-variant noadapt distill.adaptation=false")
    args = ap.parse_args()

    args.out.mkdir(parents=True, exist_ok=True)
    res_path = args.out / "results.json"
    results: dict[str, Any] = json.loads(res_path.read_text()) if res_path.is_file() else {}
    results.update({"steps": args.steps, "lr": args.lr, "runs": args.runs,
                    "test": f"SyntheticShapes('test', num_images={args.test_images})"})
    results.setdefault("ratios", {})
    results["variants"] = {v[0]: v[1:] for v in args.kd_variant}

    def save() -> None:
        atomic_write_text(json.dumps(results, indent=2), res_path)

    test = SyntheticShapes("test", num_images=args.test_images)
    side = int(read_checkpoint(args.teacher)["metadata"].get("input", {}).get("min_size", [160])[-1])
    size = (side, side)
    if "teacher" not in results:
        results["teacher"] = measure(args.teacher, test, size, args.runs)
        save()
    print(f"teacher mAP@0.5 {results['teacher']['mAP50']:.3f}", flush=True)

    for ratio in args.ratios:
        key = f"{ratio:g}"
        r = results["ratios"].setdefault(key, {})
        ckpt = args.out / f"tucker{key}x.pt"
        t0 = time.perf_counter()
        if "compressed" not in r:
            report = compress_checkpoint(args.teacher, ckpt, ratio=ratio)
            print(report.format_table(), flush=True)
            r["compressed"] = measure(ckpt, test, size, args.runs) | {
                "model_ratio": report.model_ratio, "layers_ratio": report.layers_ratio,
                "gflops_report_before": report.model_flops_before / 1e9,
                "gflops_report_after": report.model_flops_after / 1e9}
            save()
        print(f"{key}x compressed: mAP@0.5 {r['compressed']['mAP50']:.3f}", flush=True)
        if "finetuned" not in r:
            t0 = time.perf_counter()
            folder = args.out / f"finetune{key}x"
            # A run cut short before it was recorded is started afresh (its folder is this script's own).
            train_detector(load_config(None, [f"model.name={ckpt}",
                                              *run_overrides(args.teacher, args.steps, args.lr, folder, args.set)]),
                           overwrite=True)
            r["finetuned"] = measure(folder / "last.pt", test, size, args.runs) | {"seconds": time.perf_counter() - t0}
            save()
        print(f"{key}x fine-tuned: mAP@0.5 {r['finetuned']['mAP50']:.3f}", flush=True)
        for name, extra in [("distilled", []), *[(f"distilled_{k}", v) for k, v in results["variants"].items()]]:
            if name not in r:
                t0 = time.perf_counter()
                folder = args.out / f"{name}{key}x"
                overrides = run_overrides(args.teacher, args.steps, args.lr, folder, [*args.set, *extra])
                distill_student(load_config(None, [f"model.name={ckpt}", f"teacher={args.teacher}", *overrides]),
                                overwrite=True)
                r[name] = measure(folder / "last.pt", test, size, args.runs) | {"seconds": time.perf_counter() - t0}
                save()
            print(f"{key}x {name}: mAP@0.5 {r[name]['mAP50']:.3f}", flush=True)
    results["speed"] = speed_pass(args.teacher, args.out, args.ratios, size, args.runs, rounds=3)
    save()
    print(table(results))


def speed_pass(teacher: Path, out: Path, ratios: list[float], size: tuple[int, int], runs: int,
               rounds: int) -> dict[str, float]:
    """images/s per architecture, measured after all training with the models interleaved round by round
    (the median over rounds), so that a busy moment during one stage does not skew one row."""
    models = {"teacher": load_detector(teacher)}
    models |= {f"{r:g}": load_detector(out / f"tucker{r:g}x.pt") for r in ratios}
    times: dict[str, list[float]] = {k: [] for k in models}
    for _ in range(rounds):
        for key, model in models.items():
            times[key].append(describe(model, size, threads=2, runs=runs, warmup=2).latency_ms_median)
    return {k: 1000.0 / statistics.median(v) for k, v in times.items()}


if __name__ == "__main__":
    torch.set_num_threads(2)
    main()
