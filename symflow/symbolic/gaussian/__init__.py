"""Gaussian expectations of activations: closed forms by SymPy, quadrature otherwise.

Modules: :mod:`.engine` (the closed-form derivation), :mod:`.pairs` (pair
expectations and derivatives), :mod:`.functions` (SymPy functions Phi2, ...),
:mod:`.families` (which activations have closed forms or kinks; no SymPy, so a
cached GaussianNet is built without importing it).
"""
