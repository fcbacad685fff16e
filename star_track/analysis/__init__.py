"""What apps derive from landmarks: head pose, eye and mouth openness, blinks, and a plot of a run (issue 28).

* :mod:`.mean_face` - the 3D mean face (MediaPipe canonical face model, Apache-2.0) for 68 / 98 points;
* :mod:`.pose` - :func:`~.pose.solve_pose` -> :class:`~.pose.Pose` (yaw, pitch, roll with sd, 4x4 matrix);
* :mod:`.openness` - pose-normalised eye and mouth openness;
* :mod:`.blinks` - per-track blink events;
* :mod:`.plot` - a run report PNG drawn with OpenCV.
"""
