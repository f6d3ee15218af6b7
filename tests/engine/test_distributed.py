import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from detdistill.engine.distributed import free_local_port

SCRIPT = Path(__file__).parent / "run_ddp.py"


def _launch(args: list[str]) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_two_gloo_ranks_match_one_process_with_twice_the_batch(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir(), two.mkdir()
    _launch([sys.executable, str(SCRIPT), str(one), "4"])
    _launch([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
             str(SCRIPT), str(two), "2"])
    single = torch.load(one / "rank0.pt", weights_only=True)
    ranks = [torch.load(two / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert all(r["world_size"] == 2 for r in ranks) and single["world_size"] == 1
    # Shards: disjoint apart from the one wrap-around pad, together covering all 11 images.
    seen0, seen1 = set(ranks[0]["seen"]), set(ranks[1]["seen"])
    assert seen0 | seen1 == set(range(11))
    assert len(ranks[0]["seen"]) == len(ranks[1]["seen"]) == 6 and len(seen0 & seen1) == 1
    # One step of 2 ranks x batch 2 (gradients averaged by DDP) equals one process with batch 4.
    for key, value in single["params"].items():
        assert torch.allclose(ranks[0]["params"][key], value, atol=1e-6), key
        assert torch.equal(ranks[0]["params"][key], ranks[1]["params"][key])


@pytest.mark.slow
def test_a_whole_run_under_two_ranks_scores_its_test_split_without_waiting_forever(tmp_path):
    """The final test evaluation gathers detections from every rank: all ranks must enter it (not only the
    one that writes), or rank 0 waits for ever. Only rank 0 keeps the scores and writes summary.json."""
    import json

    _launch([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
             str(Path(__file__).parent / "run_ddp_run.py"), str(tmp_path)])
    main, other = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    stored = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert set(main["extra"]["test"]) == {"model"} and 0 <= main["extra"]["test"]["model"]["mAP50"] <= 1
    assert stored["extra"]["test"] == main["extra"]["test"] and "test" not in other["extra"]


@pytest.mark.slow
def test_two_nodes_by_c10d_rendezvous_match_one_process_with_twice_the_batch(tmp_path):
    """Two torchrun launches (one process each) playing two nodes, as the README's multi-node command runs."""
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir(), two.mkdir()
    _launch([sys.executable, str(SCRIPT), str(one), "4"])
    endpoint = f"127.0.0.1:{free_local_port()}"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    nodes = [subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--nproc_per_node=1",
                               "--rdzv_backend=c10d", f"--rdzv_endpoint={endpoint}", "--rdzv_id=detdistill-test",
                               "--max_restarts=0", str(SCRIPT), str(two), "2"],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    try:
        for node in nodes:
            _, err = node.communicate(timeout=50)
            assert node.returncode == 0, err[-3000:]
    finally:
        for node in nodes:
            if node.poll() is None:
                node.kill()
    single = torch.load(one / "rank0.pt", weights_only=True)
    ranks = [torch.load(two / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert all(r["world_size"] == 2 for r in ranks)
    for key, value in single["params"].items():
        assert torch.allclose(ranks[0]["params"][key], value, atol=1e-6), key
        assert torch.equal(ranks[0]["params"][key], ranks[1]["params"][key])
