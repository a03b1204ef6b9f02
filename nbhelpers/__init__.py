"""nbhelpers: the computation behind the book "A Bayes-Optimal View on Adversarial Examples".

Chapters hold narrative, parameters and calls; every figure and number comes from a
function in this package.
"""

from nbhelpers.config import get_device, get_profile

__version__ = "0.1.0"
__all__ = ["get_device", "get_profile", "__version__"]
