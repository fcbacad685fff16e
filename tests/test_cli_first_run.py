"""Issue 30's first-run items: --version, help text kept whole, info's engine list, --68 on a 68-point model,
and `image -l X.json` writing the same document as stdout."""
from __future__ import annotations

import json

import cv2
import pytest

from star_track import __version__
from test_cli import run


def test_version_comes_from_the_package_metadata():
    import importlib.metadata

    r = run("--version")
    assert r.exit_code == 0
    assert r.stdout.strip() == f"star-track {__version__}"
    assert __version__ == importlib.metadata.version("star-track")


def test_batch_help_keeps_the_bracketed_extra():
    r = run("batch", "--help")
    assert r.exit_code == 0
    assert "star-track[clu" in r.stdout  # rich markup used to eat "[cluster]"


def test_info_says_which_engines_are_installed(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorrt" else real(name, *a))
    r = run("info")
    assert r.exit_code == 0
    line = next(ln for ln in r.stdout.splitlines() if ln.startswith("engines:"))
    assert "onnxruntime installed" in line
    assert "tensorrt not installed" in line and "star-track[gpu]" in line


@pytest.fixture(scope="module")
def photo_file(tmp_path_factory, face_photo):
    path = tmp_path_factory.mktemp("img") / "face.jpg"
    cv2.imwrite(str(path), face_photo[0])
    return path


def test_68_on_a_68_point_model_says_it_does_nothing(photo_file, model_path):
    r = run("image", photo_file, "--68", "-m", model_path)
    assert r.exit_code == 0, r.stderr
    assert "--68 has no effect" in r.stderr


def test_image_json_file_holds_the_stdout_document(photo_file, model_path, tmp_path):
    printed = run("image", photo_file, "-m", model_path)
    assert printed.exit_code == 0, printed.stderr
    out = tmp_path / "faces.json"
    written = run("image", photo_file, "-m", model_path, "-l", out)
    assert written.exit_code == 0, written.stderr
    doc = json.loads(out.read_text())
    assert doc == json.loads(printed.stdout)
    assert set(doc) == {"image", "scheme", "num_points", "covariance_layout", "faces"} and doc["faces"]


def test_readme_and_model_cards_quote_the_same_ms_per_face():
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    readme = (root / "README.md").read_text()
    models_table = readme[readme.index("| `--model` | network | MMAC / face | ms / face"):]
    pattern = r"^\| `(star\d+-[\w-]+)`[^|]*\|[^|]*\|\s*[\d.]+\s*\|\s*([\d.]+)\s*\|"
    rows = dict(reversed(re.findall(pattern, models_table, re.M)))  # the first row of a model wins
    cards = sorted((root / "star_track" / "model" / "bundled").glob("star*.md"))
    assert cards and set(rows) >= {c.stem for c in cards}
    for card in cards:
        ms = float(re.search(r"\| CPU latency \| ([\d.]+) ms per face", card.read_text()).group(1))
        assert round(ms, 1) == float(rows[card.stem]), card.name
