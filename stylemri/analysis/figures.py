"""Shared figure conventions: print-readable class colours and markers, and atomic PNG saving.

Figures are built with matplotlib's object API (`Figure`), never pyplot, so nothing touches global
backend state and plots work headless.
"""

from __future__ import annotations

from stylemri.io import save_figure

# Okabe & Ito (2008): distinguishable with colour-vision deficiency; markers keep classes apart in grey print.
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


__all__ = ["PALETTE", "MARKERS", "save_figure"]
