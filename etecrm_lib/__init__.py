"""etecrm_lib: the library behind the book on end-to-end ROI-wise visual encoding (ETECRM).

The pipeline, one module per step: ``data`` -> ``features`` -> ``regression`` / ``two_step`` and
``models`` + ``losses`` -> ``training`` -> ``evaluation`` -> ``plots`` / ``widgets``.
"""

__version__ = "0.1.0"
