"""One module per ``star-track`` command group; :mod:`star_track.cli.app` registers them. The SDK is imported
inside each command, so ``--help`` and usage errors stay fast."""
