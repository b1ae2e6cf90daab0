"""Close-match suggestions for unknown names (difflib, as sklearn/argparse do)."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def suggest(name: str, known: Iterable[str], n: int = 5) -> str:
    """' Did you mean: a, b?' or '' when nothing is close."""
    matches = difflib.get_close_matches(name, list(known), n=n, cutoff=0.6)
    return f" Did you mean: {', '.join(matches)}?" if matches else ""
