"""WeakSAM workspace library.

Nothing under ``weaksam/`` reads ``params.yaml``: the thin scripts in ``pipeline/`` turn params
into explicit keyword arguments (STYLE.md item 2).
"""

__version__ = "0.1.0"
