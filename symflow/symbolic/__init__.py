"""Symbolic stage: SymPy expressions only, nothing numeric, nothing on disk.

Submodules import SymPy lazily so that building a spec or loading a cached
module never pays for it.
"""
