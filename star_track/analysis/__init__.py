"""What apps derive from landmarks: head pose, eye and mouth openness, blinks, and a plot of a run (issue 28).

* :mod:`.analyzer` - :class:`~.analyzer.FrameAnalyzer` / :class:`~.analyzer.FaceAnalyzer`: one call per frame
  gives each face's :class:`~.analyzer.FaceState` (smoothed pose, openness, blink flag and events);
* :mod:`.mean_face` - the 3D mean face (MediaPipe canonical face model, Apache-2.0) for 68 / 98 points;
* :mod:`.pose` - :func:`~.pose.solve_pose` -> :class:`~.pose.Pose` (yaw, pitch, roll with sd, 4x4 matrix), the
  single-face reference solver;
* :mod:`.pose_batch` - :func:`~.pose_batch.solve_poses`: all faces of a frame at once (the fast path);
* :mod:`.pose_angles` - yaw, pitch, roll and their sd from rotations, vectorised over faces;
* :mod:`.pose_filter` - temporal smoothing of poses in video;
* :mod:`.openness` - pose-normalised eye and mouth openness;
* :mod:`.blinks` - per-track blink events;
* :mod:`.plot` - a run report PNG drawn with OpenCV.
"""
