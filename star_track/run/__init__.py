"""Running the tracker over whole videos: :mod:`.signals` (SIGINT/SIGTERM), :mod:`.loop` (the SDK's video loop,
:func:`~star_track.run.loop.process_video`), :mod:`.progress` (the progress bar) and :mod:`.batch` (many videos on
worker processes or Ray).

Nothing is imported here: the console script imports :mod:`.signals` before anything heavy.
"""
