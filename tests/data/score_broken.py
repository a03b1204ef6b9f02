"""A model file that fails to import (the ``score`` command must say so)."""

raise ImportError("this module needs a package that is not installed")
