"""Synthetic population generator (``trialsieve synth``, issue 5)."""
