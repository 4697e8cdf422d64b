"""UMSI (Fosco et al. 2020): :mod:`.network`, :mod:`.checkpoint` (official Keras .h5), :mod:`.zoo` (card)."""
