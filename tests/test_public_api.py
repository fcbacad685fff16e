"""The public API (issue 29): ``from star_track import ...`` is what a user needs, documented; importing it loads no
model runtime; the README's error table is the code's."""
from __future__ import annotations

import ast
import inspect
import re
import subprocess
import sys
from pathlib import Path

import star_track
from star_track import errors

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "onnx")


def _loaded_after(code: str) -> list[str]:
    probe = f"{code}\nimport sys\nprint(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    return ast.literal_eval(r.stdout.strip().splitlines()[-1])


def test_import_tracker_and_help_load_neither_torch_nor_onnx():
    assert _loaded_after("import star_track") == []
    assert _loaded_after("from star_track import Tracker") == []
    assert _loaded_after("from star_track.cli.app import run_cli\nrun_cli(['--help'])\n"
                         "run_cli(['video', '--help'])") == []


def test_the_public_names_are_what_a_user_needs_and_are_documented():
    names = set(star_track.__all__)
    for needed in ("Tracker", "Face", "VideoSource", "VideoSink", "process_video", "run_batch", "PhotoSearch",
                   "open_landmark_writer", "read_landmarks_csv", "NonFiniteOutputWarning",
                   "UncalibratedUncertaintyWarning", "BatchWarning", "StarTrackError", "OutputError", "VideoError"):
        assert needed in names, needed
    for internal in ("FlipAveragedEngine", "resolve_model", "StopFlag", "OutputClosed"):
        assert internal not in names, internal
    for name in names - {"__version__"}:
        value = getattr(star_track, name)
        assert inspect.getdoc(value), f"{name} has no docstring"
    assert sorted(dir(star_track)) == sorted(set(dir(star_track)))


def test_the_readme_error_table_is_the_code():
    text = (ROOT / "README.md").read_text()
    table = text[text.index("| exception | bases | raised when |"):]
    table = table[:table.index("\n\n")]
    rows = {}
    for line in table.splitlines()[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0].strip("`")] = re.findall(r"`(\w+)`", cells[1])
    classes = {name: cls for name, cls in vars(errors).items()
               if inspect.isclass(cls) and issubclass(cls, BaseException) and cls.__module__ == errors.__name__}
    assert set(rows) == set(classes)
    for name, cls in classes.items():
        assert rows[name] == [b.__name__ for b in cls.__bases__], name
