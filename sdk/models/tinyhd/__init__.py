"""TinyHD video saliency (Hu et al. 2023): :mod:`.network`, :mod:`.framewise` (export rewrite), :mod:`.zoo`."""
