"""Runs with data.unlabeled: the summary and the dry-run report them, the cache covers them, bad sets refused."""

import json

import pytest
import torch

from detdistill.config import ConfigError, load_config
from detdistill.data import SYNTHETIC_CLASS_NAMES
from detdistill.data.base import DatasetError
from detdistill.engine.run import cache_teacher, distill_student, dry_run_report, train_detector
from detdistill.models import build_detector, save_detector

TINY = ["data.num_train_images=8", "data.num_eval_images=4", "data.test_split=null", "train.max_steps=2",
        "train.batch_size=2", "train.eval_every=0", "train.progress=false", "distill.teacher_eval_images=4",
        "model.overrides={min_size: 96, max_size: 96}", "model.name=cpu_tiny", "distill.allow_weak_teacher=true"]


@pytest.fixture
def teacher_file(tmp_path):
    torch.manual_seed(0)
    model = build_detector("cpu_small", 7, min_size=96, max_size=96)
    return save_detector(tmp_path / "teacher.pt", model, list(SYNTHETIC_CLASS_NAMES))


def _cfg(overrides, unlabeled, ratio=0.5, pseudo=None):
    return load_config(None, overrides + [f"data.unlabeled={unlabeled}", f"data.unlabeled_ratio={ratio}",
                                          f"distill.pseudo_label_score={'null' if pseudo is None else pseudo}"])


def test_distill_with_unlabelled_images_records_them_in_the_summary(tmp_path, teacher_file):
    out = tmp_path / "kd"
    lines = []
    cfg = _cfg(TINY + [f"teacher={teacher_file}", f"train.out_dir={out}", "distill.recipe=chen2017",
                       f"distill.teacher_cache={tmp_path / 'cache'}", "data.hflip_prob=0"], "synthetic:test")
    distill_student(cfg, log=lines.append)
    summary = json.loads((out / "summary.json").read_text())
    info = summary["extra"]["unlabeled"]
    assert info["images"] == 4 and info["per_batch"] == 1 and info["labelled_per_batch"] == 1
    assert info["terms"] == ["rpn_soft", "rcn_soft", "hint"]
    assert any(line.startswith("unlabelled images: 4 from synthetic:test") for line in lines)
    ids = [json.loads(r)["image_ids"] for r in (out / "metrics.jsonl").read_text().splitlines()
           if '"image_ids"' in r]
    assert ids and all(sum(i >= 8 for i in batch) == 1 for batch in ids)  # unlabelled ids follow the labelled
    # The teacher cache was built over labelled and unlabelled images alike (8 + 4 entries, one flip state).
    assert json.loads((tmp_path / "cache" / "manifest.json").read_text())["entries"] == 12
    # cache-teacher builds the same cache (same dataset fingerprint), so a prebuilt one is accepted.
    cache_teacher(cfg, out=tmp_path / "cache", log=lambda m: None)


def test_dry_run_says_how_many_unlabelled_images_and_which_terms_see_them(teacher_file):
    report = dry_run_report(_cfg(TINY + [f"teacher={teacher_file}", "distill.recipe=chen2017"], "synthetic:test",
                                 pseudo=0.7), log=lambda m: None)
    assert "unlabelled images: 4" in report
    assert "terms on unlabelled images: rpn_soft, rcn_soft, hint" in report
    assert "labelled images only: the student's supervised losses, rpn_bounded, rcn_bounded" in report
    assert "score >= 0.7 as hard targets" in report


def test_an_unlabelled_set_that_overlaps_the_validation_split_is_refused(teacher_file, tmp_path):
    cfg = _cfg(TINY + [f"teacher={teacher_file}", f"train.out_dir={tmp_path / 'kd'}"], "synthetic:val")
    with pytest.raises(DatasetError, match="4 of 4 unlabelled images .*data.val_split=synthetic-val"):
        distill_student(cfg, log=lambda m: None)


def test_plain_training_refuses_unlabelled_images(tmp_path):
    with pytest.raises(ConfigError, match="data.unlabeled: value 'synthetic:test' needs a teacher"):
        train_detector(_cfg(TINY + [f"train.out_dir={tmp_path / 'run'}"], "synthetic:test"), log=lambda m: None)
