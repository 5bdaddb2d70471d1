"""The data settings' valid choices, in a module that imports nothing.

bench/config.py checks a command line against these before anything heavy loads (`launch.py
--status` and the sweeper's validation never import numpy, PIL or torch); the modules that act on
a choice (transforms.py, cache.py, errors.py) read the same names from here.
"""
INTERPOLATIONS = ("bicubic", "bilinear")  # dataset.interpolation: torchvision's InterpolationMode of that name
# dataset.<key> -> its choices, for the pixel pipelines of transforms.py
VALID = {"resize": ("squash", "crop", "squash_crop"), "train_aug": ("none", "simple", "crop_flip", "timm"),
         "interpolation": INTERPOLATIONS, "train_interpolation": ("random", *INTERPOLATIONS)}
CACHE_MODES = ("none", "memory", "disk")  # dataset.cache
BAD_IMAGE_MODES = ("error", "skip")  # dataset.on_bad_image: stop at an unreadable image, or skip, warn and count it

__all__ = ["BAD_IMAGE_MODES", "CACHE_MODES", "INTERPOLATIONS", "VALID"]
