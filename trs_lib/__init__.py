"""trs_lib: a reproducible companion to "Characterizing Adversarial Transferability via Gradient
Orthogonality and Smoothness" (TRS ensembles).

Modules: ``data``, ``models``, ``ensemble``, ``trs``, ``methods``, ``train``, ``attacks``,
``evaluate``, ``theory``, ``recipes``, ``results``, ``checkpoint``, ``plots``.
"""
__version__ = "0.1.0"
