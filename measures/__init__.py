"""Generalization measures: one pure function per measure family and a registry of them.

Nothing here imports Ray or touches the results store: the measures job that maps the
families over a zoo lives in :mod:`sweep.measure_job`.
"""
