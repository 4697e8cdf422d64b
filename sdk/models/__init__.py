"""Architectures of the zoo, one module per family.

``kdsalbox`` (MobileNetV2 students), ``tinyhd`` (3D video saliency) and ``umsi`` (design saliency/importance)
hold the networks; ``*_zoo`` modules and ``kdsalbox`` register their variants with :mod:`salsdk.registry`.
"""
