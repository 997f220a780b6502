"""negscale: negative-count scaling studies for contrastive representation learning.

The public, stable API lives in :mod:`negscale.losses`, :mod:`negscale.metrics`,
:mod:`negscale.results` and :mod:`negscale.fit` (see docs/design.md).
"""

__version__ = "0.3.0"

__all__ = ["__version__"]
