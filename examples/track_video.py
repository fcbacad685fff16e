"""Track faces in a video with the SDK: annotated video (with the input's audio) + a CSV of landmarks and
their STAR covariances. A recorded video: each frame is revised with the 8 after it before it is written
(``lookahead``, as ``star-track video`` does; README "Smoothing").

    python examples/track_video.py in.mp4 out.mp4 landmarks.csv
"""
import sys

from star_track import Tracker, VideoSink, VideoSource, open_landmark_writer, process_video


def main(src: str, out: str, csv: str) -> None:
    with VideoSource(src) as video, Tracker(max_faces=2, fps=video.fps, lookahead=8) as tracker, \
            VideoSink(out, video.fps, video.size, overwrite=True, audio_from=video) as sink, \
            open_landmark_writer(csv, tracker.scheme.num_points, tracker.scheme.name, video.fps,
                                 overwrite=True) as writer:
        summary = process_video(video, tracker, sink=sink, landmark_writer=writer, ellipses=True)
    print(f"{summary.frames} frames ({summary.frames_with_faces} with faces) in {summary.seconds:.1f} s")


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit("usage: python examples/track_video.py in.mp4 out.mp4 landmarks.csv")
    main(*sys.argv[1:4])
