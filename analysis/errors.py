"""The one error type of the analysis package."""

from __future__ import annotations


class AnalysisError(ValueError):
    """Input the analysis cannot use: the message is one line naming the argument or field
    and what is allowed (a too-small zoo, no measures, an unknown target, ...)."""
