"""Plumbing every layer may use: devices, progress bars, atomic file writes, the project's folders and
the version stamps of the package's sources. Nothing here knows the paper, a chapter or a run.

The package has three layers above this one, and imports point downwards only (``lint-imports`` checks it):

- ``nbhelpers.science``: the paper's mathematics and models (MFA, Bayes-optimal classifier, bounds, exact
  boundary distances, attacks, learned classifiers, real data and the synthetic datasets);
- ``nbhelpers.chapters``: one module per chapter, with the figures, tables and run profiles;
- ``nbhelpers.runs``: result files, checkpoints, provenance, the sweep and the command line.
"""
