"""KDSalBox students (Kastrati et al. 2021): :mod:`.network` (the architecture), :mod:`.zoo` (cards)."""
