"""Teacher cache integrity: the manifest records every data file's size and blake2b hash, and opening the cache
(every run, a resumed one included) or `cache-teacher --verify` refuses a damaged file, naming it and the
command that rebuilds the cache."""

import json
import shutil

import numpy as np
import pytest
import torch

from detdistill.cli import main
from detdistill.config import load_config
from detdistill.data import SYNTHETIC_CLASS_NAMES, SyntheticConfig, SyntheticShapes
from detdistill.distill.teacher_cache import (
    MANIFEST,
    TeacherCache,
    TeacherCacheError,
    build_teacher_cache,
    file_record,
    verify_teacher_cache,
)
from detdistill.models import build_detector, save_detector

SIZE = 64


def _data(n=2):
    return SyntheticShapes("train", num_images=n, config=SyntheticConfig(image_size=SIZE, min_size=12, max_size=30))


@pytest.fixture
def cache_dir(tmp_path):
    torch.manual_seed(0)
    teacher = build_detector("cpu_tiny", 7, min_size=SIZE, max_size=SIZE)
    out = tmp_path / "cache"
    build_teacher_cache(teacher, _data(), out, teacher_sha256="t" * 64, progress=False,
                        teacher_path=tmp_path / "teacher.pt")
    return out


def _refused(cache_dir, *needles):
    with pytest.raises(TeacherCacheError) as info:
        TeacherCache(cache_dir)
    message = str(info.value)
    assert "\n" not in message
    assert f"rm -r {cache_dir} && detdistill cache-teacher --teacher" in message  # how to rebuild, exactly
    for needle in needles:
        assert needle in message, message
    return message


def test_the_manifest_records_each_data_files_size_and_blake2b_hash(cache_dir):
    manifest = json.loads((cache_dir / MANIFEST).read_text())
    names = [*manifest["files"], "index.npz", "fill.npz"]
    assert sorted(manifest["data_files"]) == sorted(names)
    for name in names:  # recorded while writing, checked here against an independent read of the file
        assert manifest["data_files"][name] == file_record(cache_dir / name)
        assert manifest["data_files"][name]["bytes"] == (cache_dir / name).stat().st_size
    assert sum(manifest["data_files"][n]["bytes"] for n in manifest["files"]) == manifest["bytes"]
    assert TeacherCache(cache_dir).verified["files"] == len(names)


def test_a_zero_filled_level_file_of_the_right_size_is_refused(cache_dir):
    target = cache_dir / "feat_0.bin"
    target.write_bytes(bytes(target.stat().st_size))
    _refused(cache_dir, f"{target}: content differs from the manifest's blake2b hash")


def test_an_overwritten_byte_in_the_middle_of_a_file_is_refused(cache_dir):
    target = cache_dir / "obj_1.bin"
    raw = bytearray(target.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    target.write_bytes(bytes(raw))
    _refused(cache_dir, f"{target}: content differs")


def test_a_truncated_level_file_is_refused_by_size_without_a_numpy_reshape_error(cache_dir):
    target = cache_dir / "del_0.bin"
    size = target.stat().st_size
    with open(target, "r+b") as fh:
        fh.truncate(size - 10)
    _refused(cache_dir, f"{target}: {size - 10:,} bytes, the manifest records {size:,} (truncated)")


def test_a_missing_or_wrong_kind_of_data_file_is_named(cache_dir):
    (cache_dir / "index.npz").unlink()
    _refused(cache_dir, f"{cache_dir / 'index.npz'}: data file missing")
    (cache_dir / "index.npz").mkdir()
    _refused(cache_dir, f"{cache_dir / 'index.npz'}: not a regular file")


@pytest.mark.parametrize("field", ["levels", "files", "data_files", "dtype"])
def test_a_manifest_missing_a_field_names_the_field(cache_dir, field):
    path = cache_dir / MANIFEST
    manifest = json.loads(path.read_text())
    del manifest[field]
    path.write_text(json.dumps(manifest))
    _refused(cache_dir, f"{path}: manifest has no field '{field}'")


def test_a_data_file_the_manifest_does_not_hash_is_named(cache_dir):
    path = cache_dir / MANIFEST
    manifest = json.loads(path.read_text())
    del manifest["data_files"]["feat_0.bin"]["blake2b"]
    path.write_text(json.dumps(manifest))
    _refused(cache_dir, "field 'data_files.feat_0.bin' is missing or lacks 'bytes'/'blake2b'")


def test_an_older_cache_without_hashes_must_be_rebuilt(cache_dir):
    path = cache_dir / MANIFEST
    manifest = json.loads(path.read_text())
    manifest["format"] = 1
    del manifest["data_files"], manifest["built_with"]  # what format 1 wrote
    path.write_text(json.dumps(manifest))
    message = _refused(cache_dir, f"{path}: field 'format' has value 1", "no content hashes")
    assert "--teacher TEACHER.pt" in message  # format 1 did not record the teacher: a placeholder


def _edit_manifest(cache_dir, **fields):
    path = cache_dir / MANIFEST
    manifest = json.loads(path.read_text())
    manifest.update(fields)
    path.write_text(json.dumps(manifest))
    return path, manifest


@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_a_hand_edited_dtype_is_refused_by_the_files_sizes_at_verify_and_at_open(tmp_path, dtype, capsys):
    torch.manual_seed(0)
    teacher = build_detector("cpu_tiny", 7, min_size=SIZE, max_size=SIZE)
    build_teacher_cache(teacher, _data(), tmp_path / "c", teacher_sha256="t" * 64, dtype=dtype, progress=False)
    other = "float32" if dtype == "float16" else "float16"
    path, manifest = _edit_manifest(tmp_path / "c", dtype=other)
    item = {"float16": 2, "float32": 4}
    first = manifest["files"][0]
    want = manifest["data_files"][first]["bytes"] // item[dtype] * item[other]  # what the edited dtype claims
    message = _refused(tmp_path / "c", f"{path}: fields 'dtype' ({other}", f"{want:,} bytes of {first}",
                       f"the file holds {manifest['data_files'][first]['bytes']:,}")
    assert main(["cache-teacher", "--verify", str(tmp_path / "c")]) != 0
    err = capsys.readouterr().err
    assert message in err and "OK" not in err


def test_a_hand_edited_entry_count_is_refused_by_the_index(cache_dir, capsys):
    path, manifest = _edit_manifest(cache_dir, entries=1)
    _refused(cache_dir, f"{path}: field 'entries' has value 1, the index holds {2 * 1} entries")
    assert main(["cache-teacher", "--verify", str(cache_dir)]) != 0
    assert "field 'entries'" in capsys.readouterr().err


def test_a_hand_edited_level_or_byte_count_is_refused(cache_dir):
    manifest = json.loads((cache_dir / MANIFEST).read_text())
    level = next(iter(manifest["levels"]))
    levels = {**manifest["levels"], level: {**manifest["levels"][level],
                                            "channels": manifest["levels"][level]["channels"] // 2}}
    path, _ = _edit_manifest(cache_dir, levels=levels)
    _refused(cache_dir, f"{path}: fields 'dtype'", f"feat_{level}.bin")
    path, _ = _edit_manifest(cache_dir, levels=manifest["levels"], bytes=manifest["bytes"] + 2)
    _refused(cache_dir, f"{path}: field 'bytes' has value {manifest['bytes'] + 2:,}",
             f"the data files hold {manifest['bytes']:,} bytes")


def test_cache_teacher_verify_prints_one_ok_line_with_counts_and_fails_on_damage(cache_dir, capsys):
    assert main(["cache-teacher", "--verify", str(cache_dir)]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    manifest = json.loads((cache_dir / MANIFEST).read_text())
    files = 3 * len(manifest["levels"]) + 2  # features, objectness, deltas per level; index; fill
    assert len(out) == 1 and out[0].startswith(f"teacher cache {cache_dir}: OK ({manifest['entries']} entries, "
                                                f"{files} files")
    assert verify_teacher_cache(cache_dir)["files"] == files
    target = cache_dir / manifest["files"][-1]
    target.write_bytes(np.random.default_rng(0).bytes(target.stat().st_size))
    assert main(["cache-teacher", "--verify", str(cache_dir)]) != 0
    err = capsys.readouterr().err
    assert f"{target}: content differs" in err and "rm -r" in err


TINY = ["data.num_train_images=4", "data.val_split=null", "data.test_split=null", "train.max_steps=1",
        "train.batch_size=2", "train.eval_every=0", "train.progress=false", "distill.teacher_eval_images=2",
        f"model.overrides={{min_size: {SIZE}, max_size: {SIZE}}}", "model.name=cpu_tiny",
        "distill.allow_weak_teacher=true"]


def test_a_resumed_run_verifies_the_cache_before_its_first_step(tmp_path):
    from detdistill.engine.run import distill_student
    from detdistill.models import read_checkpoint

    teacher = save_detector(tmp_path / "teacher.pt", build_detector("cpu_tiny", 7, min_size=SIZE, max_size=SIZE),
                            list(SYNTHETIC_CLASS_NAMES))
    cache, out = tmp_path / "cache", tmp_path / "run"
    overrides = TINY + [f"teacher={teacher}", f"train.out_dir={out}", f"distill.teacher_cache={cache}"]
    distill_student(load_config(None, overrides), log=lambda m: None)
    assert json.loads((cache / MANIFEST).read_text())["built_with"]["teacher"] == str(teacher)
    target = cache / "feat_1.bin"
    target.write_bytes(bytes(target.stat().st_size))
    with pytest.raises(TeacherCacheError, match=f"{target}: content differs.*--teacher {teacher} "):
        distill_student(load_config(None, overrides + ["train.max_steps=2"]), resume=True, log=lambda m: None)
    assert read_checkpoint(out / "last.pt")["metadata"]["step"] == 1  # no step ran on the damaged cache
    shutil.rmtree(cache)
