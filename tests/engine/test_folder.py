"""RunFolder: the names of a run's files and the one "done" test (summary.json, written once at the end)."""

import json

from detdistill.engine.folder import RunFolder


def test_names_every_file_of_a_run(tmp_path):
    folder = RunFolder(tmp_path / "run")
    assert folder.path == tmp_path / "run"
    names = {p.name for p in (folder.last, folder.best, folder.metrics, folder.summary, folder.config,
                              folder.loss_curves, folder.log, folder.scores, folder.plan)}
    assert names == {"last.pt", "best.pt", "metrics.jsonl", "summary.json", "config.yaml", "loss_curves.png",
                     "run.log", "scores.json", "plan.txt"}
    assert not folder.path.exists()  # naming creates nothing
    assert RunFolder(str(tmp_path / "run")) == folder


def test_a_run_is_done_only_when_its_summary_is_whole_and_reached_the_steps(tmp_path):
    folder = RunFolder(tmp_path)
    assert not folder.is_done() and folder.read_summary() is None
    folder.last.write_bytes(b"x")  # a checkpoint alone: killed before the end
    assert not folder.is_done(4)
    folder.summary.write_text(json.dumps({"steps": 3}))
    assert folder.is_done() and not folder.is_done(4)  # stopped at a smaller max_steps
    folder.summary.write_text(json.dumps({"steps": 4}))
    assert folder.is_done(4)
    folder.summary.write_text('{"steps": 4')  # torn write
    assert not folder.is_done(4)
    folder.summary.write_text("[1, 2]")  # valid JSON, not a summary
    assert not folder.is_done()


def test_clear_outputs_removes_the_runs_files_and_nothing_else(tmp_path):
    folder = RunFolder(tmp_path)
    for name in RunFolder.OUTPUTS:
        (tmp_path / name).write_text("old")
    (tmp_path / "notes.txt").write_text("mine")
    folder.clear_outputs()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
    assert folder.holds_files() and not RunFolder(tmp_path / "none").holds_files()


def test_file_log_appends_lines_to_run_log(tmp_path):
    folder = RunFolder(tmp_path / "new")
    log = folder.file_log()
    log("first")
    folder.file_log()("second")
    assert folder.log.read_text() == "first\nsecond\n"
