"""Track faces in a video with the SDK: annotated video + a CSV of landmarks and their STAR covariances.

    python examples/track_video.py in.mp4 out.mp4 landmarks.csv
"""
import sys

from star_track import Tracker, VideoSink, VideoSource, draw_faces, open_landmark_writer


def main(src: str, out: str, csv: str) -> None:
    with VideoSource(src) as video, Tracker(smoothing="kalman", max_faces=2, fps=video.fps) as tracker, \
            VideoSink(out, video.fps, video.size, overwrite=True) as sink:
        writer = open_landmark_writer(csv, tracker.scheme.num_points, tracker.scheme.name, video.fps,
                                      overwrite=True)
        try:
            for frame in video:
                faces = tracker.track(frame.image, frame.time)
                writer.write(frame.index, frame.time, faces)
                sink.write(draw_faces(frame.image, faces, tracker.scheme, ellipses=True))
        finally:
            writer.close()


if __name__ == "__main__":
    main(*sys.argv[1:4])
