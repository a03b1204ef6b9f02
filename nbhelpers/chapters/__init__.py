"""The book's chapters: one module per chapter (``ch1_theory`` ... ``ch6_summary``; chapter 3 has its figures
in ``ch3_figures``), the only place that knows figure and table numbers and the run profiles.

Shared by several chapters: ``profiles`` (the quick and paper sizes), ``task_models`` (a task's fitted and
derived models, cached), ``learned`` (training the CNN and SVMs), ``evaluation`` (attacking models),
``resultset`` (results, the schema every table and figure reads), ``comparison`` (ours beside the paper's),
``paper_values``, ``plotting``, ``display``, ``widgets``, ``steps`` and ``ids``.
"""
