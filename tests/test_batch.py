"""Batch processing (issue 13): real clips plus a corrupt file and a face-less clip, 2 local workers, resume
and redo, interrupted batches (SIGINT, SIGKILL) that finish identically on rerun, and the same batch on Ray."""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import DATA
from star_track.run.batch import MANIFEST, check_ray_address, find_videos, plan, read_manifest, run_batch
from star_track.io.landmarks import read_landmarks_csv

VIDEOS = DATA / "videos"
ENTRY = [sys.executable, "-c", "from star_track.cli.entry import main; main()"]


def cut(src: Path, dst: Path, frames: int) -> Path:
    """The first ``frames`` frames of ``src`` as H.264 (no audio)."""
    import av

    with av.open(str(src)) as i, av.open(str(dst), "w") as o:
        s = o.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = 512, 512, "yuv420p"
        for k, fr in enumerate(i.decode(video=0)):
            if k >= frames:
                break
            for p in s.encode(fr.reformat(format="yuv420p")):
                o.mux(p)
        for p in s.encode():
            o.mux(p)
    return dst


def flat(dst: Path, frames: int) -> Path:
    """A flat grey clip: no face anywhere."""
    import av

    with av.open(str(dst), "w") as o:
        s = o.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = 128, 128, "yuv420p"
        for _ in range(frames):
            img = av.VideoFrame.from_ndarray(np.full((128, 128, 3), 90, np.uint8), format="bgr24")
            for p in s.encode(img.reformat(format="yuv420p")):
                o.mux(p)
        for p in s.encode():
            o.mux(p)
    return dst


def make_inputs(root: Path, frames: int, copies: int = 1) -> Path:
    """``root/in``: real clips (one in a subfolder), a corrupt file and a flat clip."""
    srcs = sorted(VIDEOS.glob("*.mp4"))
    if len(srcs) < 3:
        pytest.skip(f"real clips not found in {VIDEOS}")
    inp = root / "in"
    (inp / "sub").mkdir(parents=True)
    for c in range(copies):
        for k, src in enumerate(srcs[:3]):
            folder = inp / "sub" if k == 0 else inp
            cut(src, folder / f"{src.stem}_{c}.mp4", frames)
    (inp / "corrupt.mp4").write_bytes((inp / "sub" / f"{srcs[0].stem}_0.mp4").read_bytes()[:3000])
    flat(inp / "flat.mp4", frames)
    return inp


def outputs(out: Path) -> dict[str, bytes]:
    """Every file under ``out`` except the manifest and lock, relative path -> bytes."""
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*"))
            if p.is_file() and p.name not in (MANIFEST, ".batch.lock")}


def hidden(out: Path) -> list[str]:
    return [str(p) for p in out.rglob(".*") if p.name != ".batch.lock"]


@pytest.fixture(scope="module")
def batch(tmp_path_factory, model_path):
    """Short clips, processed once by 2 local workers: (inputs, out_dir, rows, outputs)."""
    root = tmp_path_factory.mktemp("batch")
    inp = make_inputs(root, frames=15)
    out = root / "out"
    rows = run_batch([inp], out, workers=2, tracker_kwargs={"model": str(model_path)})
    return inp, out, rows, outputs(out)


def by_name(rows) -> dict[str, dict]:
    return {Path(r["input"]).name: r for r in rows}


def test_two_workers_track_real_clips_and_isolate_failures(batch):
    inp, out, rows, files = batch
    r = by_name(rows)
    assert len(rows) == 5
    assert r["corrupt.mp4"]["status"] == "failed" and str(inp / "corrupt.mp4") in r["corrupt.mp4"]["error"]
    assert "\n" not in r["corrupt.mp4"]["error"] and r["corrupt.mp4"]["outputs"] == {}
    assert r["flat.mp4"]["status"] == "ok" and r["flat.mp4"]["frames"] == 15
    assert r["flat.mp4"]["frames_with_faces"] == 0
    real = [v for k, v in r.items() if k not in ("corrupt.mp4", "flat.mp4")]
    assert all(v["status"] == "ok" and v["frames"] == 15 and v["frames_with_faces"] == 15 for v in real)
    assert len({v["worker"] for v in r.values() if v["worker"]}) == 2  # both workers took videos
    # Outputs mirror the input tree; the flat clip has a header-only CSV; nothing hidden is left behind.
    assert set(files) == {"sub/RD_Radio2_000_0.csv", "RD_Radio34_000_0.csv", "WDA_BobMenendez_000_0.csv",
                          "flat.csv"}
    assert read_landmarks_csv(out / "flat.csv")["frame"].size == 0
    assert read_landmarks_csv(out / "RD_Radio34_000_0.csv")["frame"].size >= 15
    assert hidden(out) == []
    manifest = [json.loads(ln) for ln in (out / MANIFEST).read_text().splitlines()]
    assert {m["input"] for m in manifest} == {v["input"] for v in rows}
    assert {m["settings"] for m in manifest} == {rows[0]["settings"]}
    ok = by_name(manifest)["RD_Radio34_000_0.mp4"]["outputs"]["landmarks"]
    assert ok["path"] == str(out / "RD_Radio34_000_0.csv") and ok["bytes"] == len(files["RD_Radio34_000_0.csv"])


def test_batch_output_equals_the_video_command(batch, model_path, tmp_path):
    """Each worker reuses one Tracker (reset per video): the results equal a fresh `star-track video` run."""
    inp, out, _, files = batch
    from test_cli import run

    single = tmp_path / "one.csv"
    r = run("video", inp / "WDA_BobMenendez_000_0.mp4", "-l", single, "-m", model_path, "--threads", "1",
            "--no-progress")
    assert r.exit_code == 0, r.stderr
    assert single.read_bytes() == files["WDA_BobMenendez_000_0.csv"]


def test_rerun_skips_done_videos_and_redoes_exactly_a_deleted_or_damaged_output(batch, model_path):
    inp, out, _, files = batch
    kw = {"workers": 2, "tracker_kwargs": {"model": str(model_path)}}
    again = by_name(run_batch([inp], out, **kw))
    assert {k: v["status"] for k, v in again.items()} == {
        "RD_Radio2_000_0.mp4": "skipped", "RD_Radio34_000_0.mp4": "skipped", "WDA_BobMenendez_000_0.mp4": "skipped",
        "flat.mp4": "skipped", "corrupt.mp4": "failed"}  # failures are retried, and fail again
    (out / "RD_Radio34_000_0.csv").unlink()
    with open(out / "sub" / "RD_Radio2_000_0.csv", "r+b") as f:  # same name, damaged content
        f.seek(100)
        f.write(b"9")
    again = by_name(run_batch([inp], out, **kw))
    redone = sorted(k for k, v in again.items() if v["status"] == "ok")
    assert redone == ["RD_Radio2_000_0.mp4", "RD_Radio34_000_0.mp4"]
    assert outputs(out) == files
    assert hidden(out) == []
    # Other settings: nothing is skipped (never a mix of settings), the manifest holds one row per input.
    changed = run_batch([inp], out, workers=2, tracker_kwargs={"model": str(model_path), "detect_every": 3})
    assert sorted(r["status"] for r in changed) == ["failed", "ok", "ok", "ok", "ok"]
    manifest = read_manifest(out)
    assert len(manifest) == 5 and {m["settings"] for m in manifest.values()} == {changed[0]["settings"]}
    assert len((out / MANIFEST).read_text().splitlines()) >= 5


def test_cli_exit_code_table_and_lists(batch, model_path, tmp_path):
    inp, _, _, files = batch
    listing = tmp_path / "videos.txt"
    listing.write_text(f"{inp / 'flat.mp4'}\n# a comment\n{inp / 'RD_Radio34_000_0.mp4'}\n")
    out = tmp_path / "out"
    r = subprocess.run([*ENTRY, "batch", listing, "--out-dir", out, "-j", "1", "-m", model_path, "--no-progress"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "2 ok" in r.stdout and "no face found" in r.stdout
    assert (out / "RD_Radio34_000_0.csv").read_bytes() == files["RD_Radio34_000_0.csv"]
    r = subprocess.run([*ENTRY, "batch", str(inp / "*.mp4"), "--out-dir", out, "-m", model_path,
                        "--no-progress"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 1, r.stderr  # the corrupt file failed
    assert "2 skipped" in r.stdout and "1 failed" in r.stdout and "corrupt.mp4" in r.stdout


@pytest.fixture(scope="module")
def long_batch(tmp_path_factory, model_path):
    """Longer clips (so a batch can be stopped half-way) and their uninterrupted outputs."""
    root = tmp_path_factory.mktemp("long")
    inp = make_inputs(root, frames=40, copies=2)
    (inp / "corrupt.mp4").unlink()
    ref = root / "ref"
    rows = run_batch([inp], ref, workers=2, tracker_kwargs={"model": str(model_path)})
    assert all(r["status"] == "ok" for r in rows)
    return inp, outputs(ref)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
def test_killed_batch_finishes_identically_on_rerun(long_batch, model_path, tmp_path, sig):
    inp, ref = long_batch
    out = tmp_path / "out"
    cmd = [*ENTRY, "batch", inp, "--out-dir", out, "-j", "2", "-m", model_path, "--no-progress"]
    proc = subprocess.Popen(list(map(str, cmd)), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    manifest = out / MANIFEST
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if manifest.exists() and manifest.read_text().count("\n") >= 1:  # one video done, others running
            break
        time.sleep(0.02)
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=120)
    if sig == signal.SIGINT:
        assert proc.returncode == 130, stderr
        assert "rerun" in stderr
    deadline = time.time() + 30
    while hidden(out) and time.time() < deadline:  # orphaned workers stop at their next frame
        time.sleep(0.1)
    assert hidden(out) == []
    done = outputs(out)
    assert len(done) < len(ref)  # it was stopped part-way
    assert all(ref[k] == v for k, v in done.items())  # whatever has a final name is complete
    r = subprocess.run(list(map(str, cmd)), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert outputs(out) == ref
    rows = read_manifest(out)
    assert len(rows) == len(ref) and all(v["status"] == "ok" for v in rows.values())


def test_ray_gives_the_same_landmarks_as_the_process_pool(batch, model_path, tmp_path):
    ray = pytest.importorskip("ray")
    inp, ref_out, _, files = batch
    out = tmp_path / "ray"
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        check_ray_address(ray.get_runtime_context().gcs_address, 30)  # a real cluster passes the check
        rows = by_name(run_batch([inp], out, ray_address="local", tracker_kwargs={"model": str(model_path)}))
    finally:
        ray.shutdown()
    assert rows["corrupt.mp4"]["status"] == "failed"
    assert all(v["status"] == "ok" for k, v in rows.items() if k != "corrupt.mp4"), rows
    assert set(outputs(out)) == set(files)
    for name, data in files.items():  # the pool's outputs as first written (a later test changes ref_out)
        ref = tmp_path / "pool" / name
        ref.parent.mkdir(parents=True, exist_ok=True)
        ref.write_bytes(data)
        a, b = read_landmarks_csv(out / name), read_landmarks_csv(ref)
        assert a["frame"].tolist() == b["frame"].tolist()
        np.testing.assert_allclose(a["landmarks"], b["landmarks"], atol=1e-3)


def test_no_videos_is_an_error(tmp_path):
    from star_track.errors import VideoError

    (tmp_path / "empty").mkdir()
    with pytest.raises(VideoError, match="no videos found"):
        run_batch([tmp_path / "empty"], tmp_path / "out", workers=1)
    shutil.rmtree(tmp_path / "empty")
    assert not os.path.exists(tmp_path / "out")


# -- red team, round 3 (issue 30) ------------------------------------------------------------------------------
def names(found, root: Path) -> list[str]:
    return sorted(str(v.relative_to(root)) for v, _ in found)


def test_one_str_or_pathlike_input_is_one_input(tmp_path, model_path, monkeypatch):
    """A str was iterated character by character ("/" scanned the filesystem); relative here, so a regression
    gives failed one-letter rows instead of a scan."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "clips").mkdir()
    flat(tmp_path / "clips" / "a.mp4", 3)
    assert find_videos("clips") == find_videos(Path("clips")) == [(tmp_path / "clips" / "a.mp4", tmp_path / "clips")]
    rows = run_batch("clips", "out", workers=1, tracker_kwargs={"model": str(model_path)})
    assert [(Path(r["input"]).name, r["status"]) for r in rows] == [("a.mp4", "ok")]
    assert (tmp_path / "out" / "a.csv").is_file()


def test_folders_and_globs_follow_symlinked_folders_once_and_end_on_loops(tmp_path):
    d, real = tmp_path / "d", tmp_path / "real"
    (d / "sub").mkdir(parents=True)
    real.mkdir()
    for f in (d / "a.mp4", d / "sub" / "b.mkv", real / "c.mp4"):
        f.touch()
    (d / "link").symlink_to(real)  # a symlinked subfolder: followed
    (d / "sub" / "loop").symlink_to(d)  # loops: each real folder is entered once
    (d / "sub" / "up").symlink_to(tmp_path)
    assert names(find_videos(d), tmp_path) == ["d/a.mp4", "d/link/c.mp4", "d/sub/b.mkv"]
    assert names(find_videos(str(d / "**" / "*.mp4")), tmp_path) == ["d/a.mp4", "d/link/c.mp4"]
    assert names(find_videos([d, real]), tmp_path) == ["d/a.mp4", "d/link/c.mp4", "d/sub/b.mkv"]  # c.mp4 once
    # The mirror root of a folder input is the folder: the symlinked subfolder's video lands in out/link/.
    tasks = plan([d], tmp_path / "out")
    assert sorted(Path(t.outputs["landmarks"]).relative_to(tmp_path / "out").as_posix() for t in tasks) == [
        "a.csv", "link/c.csv", "sub/b.csv"]


def test_bad_manifest_lines_are_ignored_with_a_warning_naming_the_file_and_line(tmp_path, model_path):
    (tmp_path / "clips").mkdir()
    flat(tmp_path / "clips" / "a.mp4", 3)
    out = tmp_path / "out"
    out.mkdir()
    manifest = out / MANIFEST
    manifest.write_bytes(b'garbage\n[1, 2]\n{"input": 5, "status": "ok"}\n\xff\xfe\n'
                         b'{"input": "x", "status": "ok", "outputs": 3}\n{"input": "y", "status": "ok", "s": NaN}\n'
                         b'{"input": "/v/z.mp4", "status": "failed", "outputs": {}}\n{"inpu')  # torn last line
    said: list[str] = []
    rows = run_batch(tmp_path / "clips", out, workers=1, tracker_kwargs={"model": str(model_path)},
                     on_warning=said.append)
    assert [r["status"] for r in rows] == ["ok"]
    assert [w.split(": ")[0] for w in said] == [f"{manifest}:{n}" for n in range(1, 6)] + [str(manifest)]
    assert "not JSON" in said[0] and "not UTF-8" in said[3] and "1 more bad line" in said[5]
    # The compaction kept the good row and dropped the garbage; the new rows are appended.
    kept = [(json.loads(ln)["input"], json.loads(ln)["status"]) for ln in manifest.read_text().splitlines()]
    a = str(tmp_path / "clips" / "a.mp4")
    assert kept == [("/v/z.mp4", "failed"), (a, "started"), (a, "ok")]
    with pytest.warns(UserWarning, match=f"{manifest}:1: not JSON"):
        manifest.write_text("garbage\n")
        read_manifest(out)


def test_a_file_the_manifest_does_not_record_is_never_replaced(tmp_path, model_path):
    d = tmp_path / "d"
    d.mkdir()
    flat(d / "talk.mp4", 3)
    flat(d / "other.mp4", 3)
    (d / "talk.csv").write_text("my own notes\n")
    kw = {"workers": 1, "tracker_kwargs": {"model": str(model_path)}}
    r = by_name(run_batch(d, d, **kw))
    assert r["talk.mp4"]["status"] == "failed" and r["other.mp4"]["status"] == "ok"
    assert r["talk.mp4"]["error"].startswith(f"{d / 'talk.csv'}: exists and is not an output recorded in")
    assert (d / "talk.csv").read_text() == "my own notes\n"
    # Its own outputs (recorded) are replaced when the settings change; the user's file still is not.
    kw["tracker_kwargs"]["detect_every"] = 2
    r = by_name(run_batch(d, d, **kw))
    assert r["other.mp4"]["status"] == "ok" and r["talk.mp4"]["status"] == "failed"
    assert (d / "talk.csv").read_text() == "my own notes\n"
    # A batch killed after renaming an output but before writing its row: the output was claimed first (a
    # "started" row), so the rerun knows it as its own.
    (d / "talk.csv").unlink()
    manifest = d / MANIFEST
    manifest.write_text("")
    del kw["tracker_kwargs"]["detect_every"]
    run_batch(d / "talk.mp4", d, **kw)
    started = [json.loads(ln) for ln in manifest.read_text().splitlines()][0]
    assert started["status"] == "started" and started["claimed"] == {"landmarks": str(d / "talk.csv")}
    manifest.write_text(json.dumps(started) + "\n")
    assert [r["status"] for r in run_batch(d / "talk.mp4", d, **kw)] == ["ok"]


@pytest.mark.parametrize("where", ["same", "inside", "glob"])
def test_the_batch_never_takes_its_own_outputs_as_inputs(tmp_path, model_path, where):
    d = tmp_path / "d"
    d.mkdir()
    flat(d / "a.mp4", 3)
    out = d if where == "same" else d / "out"
    inputs = str(d / "**" / "*.mp4") if where == "glob" else d
    for run in range(3):
        rows = run_batch(inputs, out, workers=1, annotated_video=True, tracker_kwargs={"model": str(model_path)})
        assert [(Path(r["input"]).name, r["status"]) for r in rows] == [("a.mp4", "skipped" if run else "ok")]
    assert sorted(p.name for p in out.rglob("*.mp4")) == ["a.annotated.mp4"] + ["a.mp4"] * (where == "same")


def test_output_names_are_unique(tmp_path):
    """a.mp4.mkv and a.mp4 (and a.mkv, A.MP4) each get their own outputs, never an input's name."""
    d = tmp_path / "d"
    d.mkdir()
    for name in ("a.mp4", "a.mkv", "a.mp4.mkv", "A.MP4", "b.mp4", "b.annotated.mp4"):
        (d / name).touch()
    tasks = {Path(t.input).name: t.outputs for t in plan(d, d, annotated_video=True)}
    paths = [p for outs in tasks.values() for p in outs.values()]
    assert len({p.casefold() for p in paths}) == len(paths) == 12
    assert not {p.casefold() for p in paths} & {str(d / n).casefold() for n in tasks}
    assert Path(tasks["b.mp4"]["video"]).name == "b.mp4.annotated.mp4"  # b.annotated.mp4 is an input
    assert Path(tasks["b.annotated.mp4"]["landmarks"]).name == "b.annotated.csv"
    assert {Path(tasks[n]["landmarks"]).name for n in ("a.mp4", "a.mkv", "a.mp4.mkv", "A.MP4")} == {
        "A.csv", "a.mkv.csv", "a.mp4.csv", "a.mp4.mkv.csv"}  # in sorted order: A.MP4, a.mkv, a.mp4, a.mp4.mkv


def test_a_read_only_out_dir_is_one_clear_error(tmp_path, model_path):
    (tmp_path / "clips").mkdir()
    flat(tmp_path / "clips" / "a.mp4", 3)
    out = tmp_path / "ro"
    out.mkdir()
    out.chmod(0o555)
    try:
        if os.access(out, os.W_OK):  # root ignores the mode: /sys refuses new files even to root
            out = Path("/sys")
            if not out.is_dir():
                pytest.skip("no read-only folder to test with")
        r = subprocess.run([*ENTRY, "batch", tmp_path / "clips", "--out-dir", out, "-m", model_path,
                            "--no-progress"], capture_output=True, text=True, timeout=120)
    finally:
        (tmp_path / "ro").chmod(0o755)
    assert r.returncode == 1
    assert r.stderr.strip().splitlines() == [f"star-track: error: {out}: cannot write in the output folder "
                                             "(Permission denied)"], r.stderr


def test_workers_are_capped_at_the_usable_cores_with_a_note(tmp_path, model_path, monkeypatch):
    import star_track.run.batch.runner as runner
    from star_track.tracking.arguments import usable_cores
    from test_cli import run

    (tmp_path / "clips").mkdir()
    flat(tmp_path / "clips" / "a.mp4", 3)
    cores = usable_cores()
    used = []
    monkeypatch.setattr(runner, "run_pool", lambda tasks, workers, record, stop: used.append(workers))
    r = run("batch", tmp_path / "clips", "--out-dir", tmp_path / "out", "-j", "999", "-m", model_path,
            "--no-progress")
    assert used == [cores]
    assert r.stderr.splitlines() == [f"star-track: warning: 999 workers asked for, but {cores} cores are usable: "
                                     f"using {cores}"], r.stderr
    said: list[str] = []
    run_batch(tmp_path / "clips", tmp_path / "out", workers=cores, tracker_kwargs={"model": str(model_path)},
              on_warning=said.append)
    assert used == [cores, cores] and said == []  # no note at the cap
    with pytest.raises(ValueError, match="workers must be an integer >= 1, got 0"):
        run_batch(tmp_path / "clips", tmp_path / "out", workers=0)


@pytest.fixture
def silent_port():
    """A TCP port that accepts connections and never answers (not Ray); on every interface, as Ray connects to
    the host's IP for 127.0.0.1."""
    import socket

    with socket.socket() as srv:
        srv.bind(("0.0.0.0", 0))
        srv.listen(16)
        yield srv.getsockname()[1]


def children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(stat.parent.name))
    return found


def test_an_uncalibrated_model_is_noted_once_for_the_batch(tmp_path, standin_model, model_path):
    """Each worker's Tracker would warn (a Python warning per process, with its source line); the batch says it
    once, through on_warning (the command line's one warning line), and not for a calibrated model."""
    import warnings

    from star_track.uncertainty import UncalibratedUncertaintyWarning

    (tmp_path / "clips").mkdir()
    for name in ("a.mp4", "b.mp4"):
        flat(tmp_path / "clips" / name, 3)
    said: list[str] = []
    with warnings.catch_warnings():
        warnings.simplefilter("error", UncalibratedUncertaintyWarning)
        rows = run_batch(tmp_path / "clips", tmp_path / "out", workers=1, tracker_kwargs={"model": str(standin_model)},
                         on_warning=said.append)
    assert [r["status"] for r in rows] == ["ok", "ok"]
    assert len(said) == 1 and "has no uncertainty calibration" in said[0] and "standin" in said[0]
    said.clear()
    run_batch(tmp_path / "clips", tmp_path / "out2", workers=1, tracker_kwargs={"model": str(model_path)},
              on_warning=said.append)
    assert said == []


def test_batch_on_a_local_ray_runtime_keeps_rays_log_lines_off_stderr(tmp_path, model_path):
    """Issue 30: Ray's start-up notes ("Started a local Ray instance", the token-authentication warning) are
    hidden, as the README says; the summary table is on stdout."""
    pytest.importorskip("ray")
    (tmp_path / "in").mkdir()
    flat(tmp_path / "in" / "a.mp4", 3)
    cmd = [*ENTRY, "batch", tmp_path / "in", "--out-dir", tmp_path / "out", "-m", model_path, "--no-progress",
           "--ray", "local", "-j", "1"]
    r = subprocess.run(list(map(str, cmd)), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stderr == "" and "1 ok" in r.stdout, (r.stderr, r.stdout)


def test_an_unreachable_ray_address_fails_fast_naming_the_address_asked_for(tmp_path, silent_port):
    pytest.importorskip("ray")
    from star_track.errors import ClusterError

    flat(tmp_path / "a.mp4", 3)
    t0 = time.monotonic()
    with pytest.raises(ClusterError, match=r"^ray 127\.0\.0\.1:1 .*cannot connect \(Connection refused\)"):
        run_batch(tmp_path / "a.mp4", tmp_path / "out", ray_address="127.0.0.1:1")
    assert time.monotonic() - t0 < 20  # refused: at once, not Ray's 822 s
    assert not (tmp_path / "out" / MANIFEST).exists() or "started" not in (tmp_path / "out" / MANIFEST).read_text()
    t0 = time.monotonic()
    with pytest.raises(ClusterError, match=rf"^ray 127\.0\.0\.1:{silent_port} .*no Ray cluster answered within 3 s"):
        check_ray_address(f"127.0.0.1:{silent_port}", timeout=3)
    assert time.monotonic() - t0 < 10


def test_ctrl_c_stops_a_batch_waiting_for_its_ray_cluster(tmp_path, model_path, silent_port):
    pytest.importorskip("ray")
    if not Path("/proc/self/stat").is_file():
        pytest.skip("needs /proc to see the connection check")
    flat(tmp_path / "a.mp4", 3)
    cmd = [*ENTRY, "batch", tmp_path / "a.mp4", "--out-dir", tmp_path / "out", "-m", model_path, "--no-progress",
           "--ray", f"127.0.0.1:{silent_port}"]
    proc = subprocess.Popen(list(map(str, cmd)), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while time.time() < deadline and proc.poll() is None and not children(proc.pid):
        time.sleep(0.05)  # until the connection check (a child process) is waiting
    assert proc.poll() is None, proc.communicate()
    time.sleep(0.5)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=20)
    assert time.monotonic() - t0 < 10
    assert proc.returncode == 130, stderr
    assert "interrupted" in stderr and "Traceback" not in stderr
