"""Put this folder on PYTHONPATH to make a Python process behave as if Jupyter were not installed."""

import sys

BLOCKED = (
    "IPython",
    "ipykernel",
    "ipywidgets",
    "jupyter_client",
    "matplotlib_inline",
    "nbclient",
    "nbformat",
    "papermill",
)


class _Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, _Blocker())
