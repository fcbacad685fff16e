"""Issue 12: video on PyAV (H.264 with the input's audio, exact timestamps, codecs, odd sizes, streams), landmark
files with unique column names and parquet, strict JSON, stdout modes. Real talking-head clips with AAC audio."""
from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import threading
from fractions import Fraction

import av
import cv2
import numpy as np
import pytest

from conftest import DATA, disk_full_at, signal_mid_run
from star_track import Face, VideoError, VideoSink, VideoSource
from star_track.io.landmarks import ANALYSIS_COLUMNS, csv_header, open_landmark_writer, read_landmarks_csv
from test_cli import _cli_cmd, assert_one_line_error, face_video, run  # noqa: F401 (fixture)

CLIP = DATA / "videos" / "RD_Radio2_000.mp4"
FRAME = 0.04  # the clips are 25 fps


def _ffmpeg():
    return pytest.importorskip("imageio_ffmpeg").get_ffmpeg_exe()


@pytest.fixture(scope="module")
def talk(tmp_path_factory):
    """The first 20 frames (0.8 s) of a real 512x512 talking-head clip with its AAC audio, stream-copied."""
    if not CLIP.exists():
        pytest.skip("real clips not available")
    out = tmp_path_factory.mktemp("talk") / "talk.mp4"
    subprocess.run([_ffmpeg(), "-y", "-loglevel", "error", "-i", str(CLIP), "-t", "0.8", "-c", "copy", str(out)],
                   check=True)
    return out


def probe(path):
    """(video codec, frame times, audio codec or None, audio duration in s)."""
    with av.open(str(path)) as c:
        vcodec = c.streams.video[0].codec_context.name
        times = [f.time for f in c.decode(video=0)]
    with av.open(str(path)) as c:
        if not c.streams.audio:
            return vcodec, times, None, 0.0
        a = c.streams.audio[0]
        pk = [p for p in c.demux(a) if p.size]
        end = max(float((p.pts + p.duration) * a.time_base) for p in pk)
        start = min(float(p.pts * a.time_base) for p in pk)
        return vcodec, times, a.codec_context.name, end - max(start, 0.0)


def test_video_output_is_h264_with_the_audio_and_the_same_timestamps(tmp_path, talk, model_path):
    out = tmp_path / "o.mp4"
    r = run("video", talk, "-o", out, "-m", model_path, "--no-progress")
    assert r.exit_code == 0, r.stderr
    codec, times, acodec, adur = probe(out)
    _, in_times, in_acodec, in_adur = probe(talk)
    assert codec == "h264" and len(times) == len(in_times) == 20
    np.testing.assert_allclose(times, in_times, atol=1e-3)
    assert acodec == in_acodec == "aac" and abs(adur - in_adur) < FRAME, (adur, in_adur)
    assert "odd-sized" not in r.stderr
    r = run("video", talk, "-o", tmp_path / "silent.mp4", "-m", model_path, "--no-audio")
    assert r.exit_code == 0 and probe(tmp_path / "silent.mp4")[2] is None


def test_sdk_sink_copies_audio_from_a_source(tmp_path, talk):
    with VideoSource(talk) as src:
        assert src.has_audio and src.size == (512, 512)
        with VideoSink(tmp_path / "o.mkv", src.fps, src.size, audio_from=src, crf=30, preset="ultrafast") as sink:
            assert sink.has_audio
            for vf in src:
                sink.write(vf.image, vf.time)
    codec, times, acodec, adur = probe(tmp_path / "o.mkv")
    assert codec == "h264" and len(times) == 20 and acodec == "aac" and abs(adur - probe(talk)[3]) < FRAME


@pytest.mark.parametrize("codec,name,ext", [("hevc", "hevc", ".mp4"), ("vp9", "vp9", ".mkv"),
                                            ("av1", "av1", ".mkv"), ("mpeg4", "mpeg4", ".mp4")])
def test_codec_choice(tmp_path, codec, name, ext):
    out = tmp_path / f"o{ext}"
    with VideoSink(out, 25, (64, 48), codec=codec) as sink:
        for i in range(5):
            sink.write(np.full((48, 64, 3), 40 * i, np.uint8))
    c, times, _, _ = probe(out)
    assert (c == name or c.startswith(name) or name in c) and len(times) == 5, c


def test_codec_settings_are_checked_before_anything_is_written(tmp_path):
    with pytest.raises(VideoError, match="--crf"):
        VideoSink(tmp_path / "o.mp4", 25, (64, 48), crf=99)
    with pytest.raises(VideoError, match="--preset"):
        VideoSink(tmp_path / "o.mp4", 25, (64, 48), preset="warp")
    with pytest.raises(VideoError, match="unknown codec"):
        VideoSink(tmp_path / "o.mp4", 25, (64, 48), codec="theora")
    assert list(tmp_path.iterdir()) == []


def test_odd_sized_input_is_padded_not_cropped(tmp_path, model_path):
    """641x479: the last column and row are white; both survive (plus one repeated column/row of padding)."""
    src = tmp_path / "odd.mkv"
    with av.open(str(src), "w") as c:  # lossless, odd-sized input
        s = c.add_stream("ffv1", rate=25)
        s.width, s.height, s.pix_fmt = 641, 479, "bgr0"
        img = np.full((479, 641, 3), 60, np.uint8)
        img[:, -1] = 255
        img[-1, :] = 255
        for _ in range(3):
            c.mux(s.encode(av.VideoFrame.from_ndarray(img, format="bgr24")))
        c.mux(s.encode(None))
    with VideoSource(src) as vs:
        assert vs.size == (641, 479)
    out = tmp_path / "o.mp4"
    r = run("video", src, "-o", out, "-m", model_path, "--no-draw", "--crf", "0")
    assert r.exit_code == 0, r.stderr
    assert [ln for ln in r.stderr.splitlines() if "padded to 642x480" in ln]  # said once, with the sizes
    with av.open(str(out)) as c:
        frame = next(c.decode(video=0)).to_ndarray(format="bgr24")
    assert frame.shape == (480, 642, 3)
    assert frame[:, 640:].mean() > 240 and frame[478:, :].mean() > 240  # last column/row kept and repeated
    assert abs(frame[:478, :639].mean() - 60) < 3  # the rest unchanged


@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_leaves_playable_h264_with_audio_up_to_the_stop(tmp_path, model_path, sig, code):
    if not CLIP.exists():
        pytest.skip("real clips not available")
    out, lm = tmp_path / "o.mp4", tmp_path / "o.json"
    returncode, stdout, stderr = signal_mid_run(_cli_cmd("video", CLIP, "-o", out, "-l", lm, "-m", model_path),
                                                lm, 30000, sig, 120)
    assert returncode == code, (stdout, stderr)
    n = len(json.loads(lm.read_text())["frames"])
    assert 0 < n < 200
    codec, times, acodec, adur = probe(out)
    assert codec == "h264" and len(times) == n and acodec == "aac"
    assert abs(adur - n * FRAME) < 2 * FRAME + 0.064, (adur, n)  # up to the stop (one AAC packet = 64 ms)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.json", "o.mp4"]


def test_disk_filling_up_keeps_a_playable_h264_file_with_audio(tmp_path, talk, model_path, monkeypatch):
    disk_full_at(monkeypatch, 8)
    out, lm = tmp_path / "o.mp4", tmp_path / "o.csv"
    assert_one_line_error(run("video", talk, "-o", out, "-l", lm, "-m", model_path), "No space left")
    assert len(lm.read_text().splitlines()) == 1 + 8
    codec, times, acodec, adur = probe(out)
    assert codec == "h264" and len(times) == 8 and acodec == "aac" and abs(adur - 8 * FRAME) < 2 * FRAME + 0.064


def test_streams_are_read_through_ffmpeg(talk):
    with VideoSource(f"file://{talk}") as src:  # a URL: the stream path (rtsp/http take the same one)
        assert src.size == (512, 512) and src.has_audio
        assert len(list(src)) == 20


def _face(track_id, n=68, seed=0, nan=False):
    rng = np.random.default_rng(seed)
    pts = rng.uniform(0, 100, (n, 2)).astype(np.float32)
    cov = np.tile(np.array([[4.0, 1.0], [1.0, 2.0]], np.float32), (n, 1, 1))
    if nan:
        pts[3] = np.nan
        cov[5, 0, 0] = np.inf
    return Face(track_id, np.array([*pts.min(0), *pts.max(0)], np.float32), 0.8, pts, pts + 1, cov,
                expected_error=0.05 + seed / 100)


def _strict(token):
    raise AssertionError(f"not strict JSON: {token}")


def test_csv_and_parquet_have_unique_names_and_the_same_numbers(tmp_path):
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    frames = [(0, 0.0, [_face(0, seed=1), _face(3, seed=2)]), (1, 0.04, []), (2, 0.08, [_face(0, seed=3)])]
    for ext in (".csv", ".parquet"):
        w = open_landmark_writer(tmp_path / f"lm{ext}", 68, "300w68", 25.0)
        for f in frames:
            w.write(*f)
        w.close()
    c = pd.read_csv(tmp_path / "lm.csv")
    q = pd.read_parquet(tmp_path / "lm.parquet")
    assert c.columns.is_unique and list(c.columns) == csv_header(68)
    assert list(c.columns[:8]) == ["frame", "time", "track_id", "score", "box_x1", "box_y1", "box_x2", "box_y2"]
    assert q.columns.is_unique and list(q.columns) == ["frame", "time", "track_id", "score", "box", "landmarks",
                                                       "covariance", "expected_error", *ANALYSIS_COLUMNS]
    assert list(c["frame"]) == list(q["frame"]) == [0, 0, 2] and list(c["track_id"]) == list(q["track_id"])
    np.testing.assert_allclose(c[["box_x1", "box_y1", "box_x2", "box_y2"]].to_numpy(), np.stack(q["box"]), atol=2e-3)
    xy = c[[f"{a}{i}" for i in range(68) for a in "xy"]].to_numpy()
    np.testing.assert_allclose(xy, np.stack(q["landmarks"]), atol=2e-3)
    cov = c[[f"{k}{i}" for i in range(68) for k in ("cxx", "cxy", "cyy")]].to_numpy()
    np.testing.assert_allclose(cov, np.stack(q["covariance"]), rtol=1e-4)
    np.testing.assert_allclose(c["expected_error"], q["expected_error"], rtol=1e-4)
    import pyarrow.parquet as pq

    meta = pq.read_schema(tmp_path / "lm.parquet").metadata
    assert json.loads(meta[b"star_track"])["scheme"] == "300w68"
    assert pq.read_metadata(tmp_path / "lm.parquet").metadata[b"frame_count"] == b"3"


def test_nonfinite_values_are_null_in_json_and_empty_in_csv(tmp_path):
    for ext in (".json", ".csv"):
        w = open_landmark_writer(tmp_path / f"lm{ext}", 68, "300w68", 25.0)
        w.write(0, 0.0, [_face(0, nan=True)])
        w.close()
    doc = json.loads((tmp_path / "lm.json").read_text(), parse_constant=_strict)
    face = doc["frames"][0]["faces"][0]
    assert face["landmarks"][3] == [None, None] and face["covariance"][5][0] is None
    text = (tmp_path / "lm.csv").read_text().lower()
    assert "nan" not in text and "inf" not in text
    d = read_landmarks_csv(tmp_path / "lm.csv")
    assert np.isnan(d["landmarks"][0, 3]).all() and np.isfinite(d["landmarks"][0, 4]).all()


def test_video_run_with_a_nan_model_writes_strict_json_and_csv(tmp_path, face_video, model_path, monkeypatch):
    import star_track.tracking.tracker as tracker_mod
    from star_track.engines import create_engine
    from test_sdk_hardening import ScriptedEngine

    engines = []

    def poisoned(model, engine, **kw):
        e = ScriptedEngine(create_engine(model, "onnxruntime"))
        engines.append(e)
        return e

    monkeypatch.setattr(tracker_mod, "create_engine", poisoned)
    for ext in (".json", ".csv"):
        monkeypatch.setattr(ScriptedEngine, "poison", True, raising=False)
        r = run("video", face_video, "-l", tmp_path / f"o{ext}", "-m", model_path, "--no-progress")
        assert r.exit_code == 0, r.stderr
    doc = json.loads((tmp_path / "o.json").read_text(), parse_constant=_strict)
    assert len(doc["frames"]) == 20
    text = (tmp_path / "o.csv").read_text().lower()
    assert "nan" not in text and "inf" not in text


def test_image_without_outputs_prints_json_on_stdout(tmp_path, face_photo, model_path):
    src = tmp_path / "face.png"
    cv2.imwrite(str(src), face_photo[0])
    r = run("image", src, "-m", model_path)
    assert r.exit_code == 0, r.stderr
    doc = json.loads(r.stdout, parse_constant=_strict)  # stdout is only the JSON
    assert doc["scheme"] and len(doc["faces"]) == 1 and len(doc["faces"][0]["landmarks"]) == doc["num_points"]
    assert json.loads(run("image", src, "-m", model_path, "-l", "-").stdout)["faces"] == doc["faces"]


def test_video_landmarks_to_stdout(tmp_path, face_video, model_path):
    pd = pytest.importorskip("pandas")
    r = run("video", face_video, "-l", "-", "-m", model_path, "--no-progress")
    assert r.exit_code == 0, r.stderr
    assert "wrote 20 frames to stdout" in r.stderr  # the summary leaves stdout to the landmarks
    piped = pd.read_csv(io.StringIO(r.stdout))
    assert run("video", face_video, "-l", tmp_path / "f.csv", "-m", model_path).exit_code == 0
    pd.testing.assert_frame_equal(piped, pd.read_csv(tmp_path / "f.csv"))


def test_audio_the_container_cannot_hold_is_reencoded_to_aac(tmp_path):
    src = tmp_path / "opus.mkv"
    subprocess.run([_ffmpeg(), "-y", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc=size=64x48:rate=25", "-f",
                    "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-t", "0.8", "-c:v", "mpeg4", "-c:a",
                    "libopus", str(src)], check=True)
    out = tmp_path / "o.avi"  # AVI cannot hold Opus
    with VideoSource(src) as vs, VideoSink(out, vs.fps, vs.size, audio_from=vs) as sink:
        for vf in vs:
            sink.write(vf.image, vf.time)
    with av.open(str(out)) as c:
        assert c.streams.audio[0].codec_context.name == "aac" and c.streams.video[0].codec_context.name == "mjpeg"
        seconds = sum(f.samples for f in c.decode(audio=0)) / c.streams.audio[0].codec_context.sample_rate
    assert abs(seconds - 0.8) < 2 * FRAME


def test_variable_frame_rate_output_keeps_the_input_timestamps(tmp_path, face_video, model_path):
    from conftest import to_variable_rate

    vfr, expected = to_variable_rate(face_video, tmp_path / "vfr.mp4", fast=10)
    out = tmp_path / "o.mp4"
    assert run("video", vfr, "-o", out, "-m", model_path, "--no-progress").exit_code == 0
    in_times, out_times = probe(vfr)[1], probe(out)[1]
    assert len(out_times) == 20 and np.diff(out_times)[12:].mean() == pytest.approx(0.1, abs=0.01)
    np.testing.assert_allclose(np.array(out_times) - out_times[0], np.array(in_times) - in_times[0], atol=1e-3)


# --- input geometry (issue 30: phone videos, anamorphic pixels, pipes) ---------------------------------------


def _encode(path, frames, rotation=0, sar=None):
    """H.264 MP4 of BGR ``frames`` with a display matrix turning them by ``rotation`` degrees counter-clockwise
    (as a phone writes it) and/or a sample aspect ratio."""
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=25, options={"crf": "12"})
        s.width, s.height, s.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
        if sar is not None:
            s.codec_context.sample_aspect_ratio = sar
        if rotation:
            s.set_display_rotation(rotation)
        for i, f in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="bgr24")
            vf.pts = i
            c.mux(s.encode(vf))
        c.mux(s.encode(None))
    return path


@pytest.fixture(scope="module")
def portrait():
    """8 frames of a real talking head, cut to a 288x512 portrait (as a phone shows it)."""
    if not CLIP.exists():
        pytest.skip("real clips not available")
    with VideoSource(CLIP) as vs:
        return [vf.image[:, 112:400].copy() for vf, _ in zip(vs, range(8))]


@pytest.mark.parametrize("rotation, coded", [(90, cv2.ROTATE_90_CLOCKWISE), (-90, cv2.ROTATE_90_COUNTERCLOCKWISE)])
def test_phone_video_is_read_upright_and_tracked_in_display_coordinates(tmp_path, portrait, rotation, coded):
    from star_track import Tracker

    clip = _encode(tmp_path / "phone.mp4", [cv2.rotate(f, coded) for f in portrait], rotation=rotation)
    with VideoSource(clip) as vs:
        assert vs.size == (288, 512) and vs.rotation == rotation
        frames = [vf.image for vf in vs]
    assert len(frames) == 8 and frames[0].shape == (512, 288, 3)
    assert np.abs(frames[3].astype(int) - portrait[3]).mean() < 4  # upright, not mirrored
    with Tracker(smoothing="none", detect_every=1) as tr:
        faces = [tr.track(f, i / 25) for i, f in enumerate(frames)]
    assert all(len(f) == 1 for f in faces)
    for f in faces:  # 300W-68: eyes 36-47, mouth 48-67; the face is upright in display coordinates
        pts = f[0].landmarks
        assert pts[36:48, 1].mean() + 40 < pts[48:68, 1].mean()
        assert (pts[:, 0] > 0).all() and (pts[:, 0] < 288).all()


def test_annotated_phone_video_is_written_upright_without_a_rotation(tmp_path, portrait):
    clip = _encode(tmp_path / "phone.mp4", [cv2.rotate(f, cv2.ROTATE_90_CLOCKWISE) for f in portrait], rotation=90)
    out, lm = tmp_path / "out.mp4", tmp_path / "out.csv"
    r = run("video", clip, "-o", out, "-l", lm, "--no-draw", "--no-progress")
    assert r.exit_code == 0, r.stderr
    with av.open(str(out)) as c:
        first = next(c.decode(video=0))
        assert (first.width, first.height) == (288, 512) and not first.rotation
        assert np.abs(first.to_ndarray(format="bgr24").astype(int) - portrait[0]).mean() < 6
    d = read_landmarks_csv(lm)
    assert sorted(d["frame"]) == list(range(8))  # one face in each frame
    pts = d["landmarks"]  # display coordinates: eyes above the mouth, inside the 288-wide portrait
    assert (pts[:, 36:48, 1].mean(1) + 40 < pts[:, 48:68, 1].mean(1)).all() and (pts[..., 0] < 288).all()


@pytest.mark.parametrize("sar, shape", [(Fraction(4, 3), (48, 85)), (Fraction(3, 4), (64, 64))])
def test_anamorphic_video_is_resampled_to_square_pixels(tmp_path, sar, shape):
    display = np.zeros(shape + (3,), np.uint8)
    cv2.circle(display, (shape[1] // 2, shape[0] // 2), 18, (255, 255, 255), -1)
    coded = cv2.resize(display, (64, 48), interpolation=cv2.INTER_AREA)  # what the anamorphic file stores
    clip = _encode(tmp_path / "anamorphic.mp4", [coded] * 3, sar=sar)
    with VideoSource(clip) as vs:
        assert vs.sample_aspect_ratio == sar and vs.size == (shape[1], shape[0])
        image = next(iter(vs)).image
    assert image.shape == display.shape and np.abs(image.astype(int) - display).mean() < 12
    ys, xs = np.nonzero(image[..., 0] > 128)  # the circle is round again
    assert abs((xs.max() - xs.min()) - (ys.max() - ys.min())) <= 2


def _feed(fifo, data: bytes) -> threading.Thread:
    def write():
        try:
            with open(fifo, "wb") as f:
                f.write(data)
        except BrokenPipeError:  # the reader gave up early
            pass

    t = threading.Thread(target=write, daemon=True)
    t.start()
    return t


def test_fifo_input_is_read_as_a_stream(tmp_path, talk):
    mkv = tmp_path / "talk.mkv"
    subprocess.run([_ffmpeg(), "-y", "-loglevel", "error", "-i", str(talk), "-c", "copy", str(mkv)], check=True)
    fifo = tmp_path / "in.fifo"
    os.mkfifo(fifo)
    t = _feed(fifo, mkv.read_bytes())
    with VideoSource(fifo) as vs:
        times = [vf.time for vf in vs]
        assert vs.has_audio
    t.join(10)
    assert len(times) == 20 and times[-1] == pytest.approx(19 * FRAME, abs=1e-3)
    t = _feed(fifo, talk.read_bytes())  # MP4 with its index at the end: cannot be read from a pipe
    with pytest.raises(VideoError, match="pipe"):
        VideoSource(fifo)
    t.join(10)


def test_opus_audio_into_mov_is_reencoded_to_aac_before_any_frame(tmp_path, face_video, model_path):
    """Issue 30 #14: .mov cannot hold Opus; the real muxer says so when the sink opens (not after the whole
    clip), and the audio is re-encoded to AAC."""
    src = tmp_path / "opus.mkv"
    subprocess.run([_ffmpeg(), "-y", "-loglevel", "error", "-i", str(face_video), "-f", "lavfi", "-i",
                    "sine=frequency=440:duration=0.8", "-c:v", "copy", "-c:a", "libopus", "-shortest", str(src)],
                   check=True)
    with VideoSource(src) as vs, VideoSink(tmp_path / "sdk.mov", vs.fps, vs.size, audio_from=vs) as sink:
        assert sink.has_audio and sink.audio_transcoded  # known before the first frame
        for vf in vs:
            sink.write(vf.image, vf.time)
    out = tmp_path / "o.mov"
    r = run("video", src, "-o", out, "-m", model_path)
    assert r.exit_code == 0, r.stderr
    for path in (tmp_path / "sdk.mov", out):
        codec, times, acodec, adur = probe(path)
        assert codec == "h264" and len(times) == 20 and acodec == "aac" and adur > 0.7
