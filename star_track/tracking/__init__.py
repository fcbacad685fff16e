"""Faces followed through a video: :mod:`.tracker` (:class:`~star_track.tracking.tracker.Tracker`, the per-frame
flow), :mod:`.tracks` (association and re-acquisition), :mod:`.landmarker` (the per-face engine path and crop
refinement), :mod:`.face` (:class:`~star_track.tracking.face.Face`, the frame check) and :mod:`.arguments` (the
API's argument checks)."""
