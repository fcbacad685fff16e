"""The ``star-track`` command line, a thin layer over the SDK.

* :mod:`.entry` - the console script: signal handlers first, then everything else;
* :mod:`.app` - the typer application: global options, the commands, usage errors;
* :mod:`.exits` - errors to one stderr line and an exit code (also used by ``python -m train`` / ``export``);
* :mod:`.options` - the options several commands share; :mod:`.outputs` - output checks and notes;
* :mod:`.stderr` - native libraries' log lines off the terminal;
* :mod:`.commands` - one module per command group (video/webcam, batch, image, models/info, bench).

Nothing is imported here: the console script must install its signal handlers before any heavy import.
"""
