"""The README's own-loop snippet runs as written (one tiny epoch) and saves a checkpoint the CLI loads."""

import re
from pathlib import Path

from detdistill.data import SYNTHETIC_CLASS_NAMES
from detdistill.models import build_detector, load_detector, read_checkpoint, save_detector

REPO_ROOT = Path(__file__).resolve().parents[1]


def test_own_loop_snippet_is_complete_and_saves_a_loadable_checkpoint(tmp_path, monkeypatch):
    text = (REPO_ROOT / "README.md").read_text()
    code = re.search(r"## Distillation in your own training loop\n\n```python\n(.*?)```", text, re.S).group(1)
    assert 'SyntheticShapes("train")' in code
    code = code.replace('SyntheticShapes("train")', 'SyntheticShapes("train", num_images=4)')
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs" / "synthetic" / "teacher").mkdir(parents=True)
    save_detector("runs/synthetic/teacher/last.pt", build_detector("cpu_small", 7), list(SYNTHETIC_CLASS_NAMES))
    exec(compile(code, "README.md", "exec"), {})  # noqa: S102 - the README's own code
    assert read_checkpoint(tmp_path / "student.pt")["class_names"] == list(SYNTHETIC_CLASS_NAMES)
    assert load_detector(tmp_path / "student.pt").detdistill_spec["name"] == "cpu_tiny"
