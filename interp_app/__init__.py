"""interp_app: the application floor of the toolkit — the ``interp`` command, run directories,
figures and the HTML report.

Floors (imports point down only; ``tests/test_layering.py`` checks it):

* ``interp`` — the library: models and the model adapter, tasks, prompts, scoring, hooked runs
  and the activation cache, patching / ablation primitives, training;
* ``analyses`` — pure functions from (model, prompts or cache, options) to typed results holding
  tidy DataFrames: no files, no figures, no argparse, no printing;
* ``interp_app`` — this package: :mod:`interp_app.cli` (the command line, one module per command
  under :mod:`interp_app.commands`), :mod:`interp_app.options` (option groups),
  :mod:`interp_app.runs` (run directories), :mod:`interp_app.figures` (every plot),
  :mod:`interp_app.report` and :mod:`interp_app.render` (the offline HTML report).
"""
