"""Sweep configs, the Ray Tune driver, the results store and the ``genzoo`` CLI."""
