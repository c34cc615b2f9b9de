"""Sweeps: a grid of models × task sets × mixtures × seeds × analyses, run serially or on Ray.

:mod:`.spec` reads and checks the sweep file, :mod:`.cells` runs one cell (the analysis's
``interp run …`` function on an already-loaded model), :mod:`.engine` keeps every cell's state on
disk, runs the serial executor and merges the rows, :mod:`.ray_executor` runs cells on Ray actors
(imported only for ``--executor ray``). CLI: :mod:`interp_app.commands.sweep`.
"""
