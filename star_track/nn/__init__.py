"""Torch-only code (the ``train`` extra): the STAR network (:mod:`.network`), checkpoint reading and writing
(:mod:`.checkpoint`), ONNX export (:mod:`.onnx_export`) and ``star-track models import`` (:mod:`.model_import`).

The runtime never imports this package, except the torch engine and the ``models import`` command, lazily. This
``__init__`` imports nothing, so ``star_track.nn.model_import`` can report a missing torch as one clear error.
"""
