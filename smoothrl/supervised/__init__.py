"""Supervised learning on the smoothrl stack (thesis Chapters 3 and 8): data sets (`data`, numpy and scikit-learn
only), haiku models with Spectral Normalisation on any chosen layers (`models`), losses and accuracy (`losses`), and
the training step built on them. Import the submodules directly; this package imports nothing heavy."""
