"""Generalization measures: one pure function per measure family and a registry of them.

Nothing here imports Ray except ``measures.job``.
"""
