"""The run machinery on top of the chapters: result files (``results``), the finished steps of unfinished
runs (``checkpoints``), the provenance of committed results (``manifest``), the sweep over chapters, tasks
and seeds (``sweep``), the notebook runner for machines without Jupyter (``notebook_runner``) and the
command line (``cli``)."""
