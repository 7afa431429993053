"""trialsieve: find and enrol patients for clinical trials.

Layers (see docs/ARCHITECTURE.md): ``kidney`` (pure clinical rules), ``ingest`` (source formats into
the canonical store), ``store`` (the canonical event store), ``protocols`` (trials as data),
``screen`` (set-based eligibility engine), ``report`` (HTML), ``cli`` (the ``trialsieve`` command).
"""

__version__ = "0.1.0"
