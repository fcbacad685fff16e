"""Training loop smoke tests on real WFLW faces: single process with exact resume, and 2-process DDP (gloo)."""
import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from conftest import DATA  # noqa: E402
from train.annotations import write_annotations  # noqa: E402
from train.readers import read_wflw_list  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
WFLW = DATA / "wflw"
pytestmark = pytest.mark.skipif(not WFLW.is_dir(), reason=f"shared data not found at {DATA}")


@pytest.fixture
def small_set(tmp_path):
    faces = read_wflw_list(WFLW / "derived_68pt" / "list_68pt_rect_attr_test.txt", 68)[:8]
    return write_annotations(faces, tmp_path / "small.jsonl")


def _train_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "train", "train", "--preset", "tiny-cpu", "--image-root",
            str(WFLW / "WFLW_images"), "--workers", "0", *args]


def _rows(out: Path) -> list[dict]:
    with open(out / "metrics.csv") as f:
        return list(csv.DictReader(f))


def test_train_resume_continues_from_last_epoch(tmp_path, small_set):
    out = tmp_path / "run"
    common = ["--train-annotations", str(small_set), "--val-annotations", str(small_set), "--out", str(out)]
    r = subprocess.run(_train_cmd(*common, "--epochs", "1"), cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert (out / "last.pt").is_file() and (out / "best.pt").is_file()
    first = torch.load(out / "last.pt", weights_only=False)
    assert first["epoch"] == 0
    r = subprocess.run(_train_cmd(*common, "--epochs", "2"), cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "resumed" in r.stdout + r.stderr
    rows = _rows(out)
    assert [int(x["epoch"]) for x in rows] == [0, 1]
    assert all(float(x["val_nme"]) > 0 for x in rows)
    second = torch.load(out / "last.pt", weights_only=False)
    changed = any(not torch.equal(a, b) for a, b in zip(first["model"].values(), second["model"].values())
                  if a.dtype.is_floating_point)
    assert second["epoch"] == 1 and changed


def test_heatmap_distillation_from_a_teacher_checkpoint(tmp_path, small_set):
    teacher = tmp_path / "teacher"
    common = ["--train-annotations", str(small_set), "--epochs", "1", "--max-steps", "2"]
    r = subprocess.run(_train_cmd(*common, "--out", str(teacher)), cwd=REPO, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    out = tmp_path / "student"
    r = subprocess.run(_train_cmd(*common, "--out", str(out), "--teacher", str(teacher / "last.pt")), cwd=REPO,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    distill = float(_rows(out)[0]["distill"])
    assert 0 < distill < 1  # two different random networks' heatmap distributions: apart, not disjoint


def test_ddp_two_processes_on_cpu(tmp_path, small_set):
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "train", *_train_cmd("--train-annotations", str(small_set), "--out", str(out),
                                      "--epochs", "1", "--batch-size", "4")[3:]]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600, env=env)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    state = torch.load(out / "last.pt", weights_only=False)
    assert state["epoch"] == 0
    # 8 faces, total batch 4 over 2 processes -> 2 per process, 2 steps per epoch on each rank
    assert len(_rows(out)) == 1 and float(_rows(out)[0]["loss"]) > 0


def test_prepare_cli_reports_missing_root(tmp_path):
    r = subprocess.run([sys.executable, "-m", "train", "prepare", "300w", str(tmp_path / "nope")], cwd=REPO,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode != 0
    assert "not found" in r.stderr and "Traceback" not in r.stderr


def test_ema_warm_up_follows_the_model_early():
    from star_track.nn.network import NetworkConfig, StarNet
    from train.trainer import EMA

    net = StarNet(NetworkConfig("cofw29", 1, 8, 3, 128))
    ema = EMA(net, batch_size=32)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(1.0)
    ema.update(net)  # first step: decay (1 + 1) / (10 + 1) = 0.18, the average moves most of the way
    w, e = next(net.parameters()), next(ema.model.parameters())
    assert torch.allclose(e, w - 1.0 * (2 / 11), atol=1e-6)
