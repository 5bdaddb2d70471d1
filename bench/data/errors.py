"""The error a broken dataset raises, and where its message points the reader.

Every message about a dataset on disk names the file (and line), says what was expected and ends
with `see {README}`, so the fix is one read away.
"""
from bench.data.choices import BAD_IMAGE_MODES

README = "docs/datasets.md, section 'Preparing the datasets'"


class DataError(ValueError):
    """A dataset on disk is missing or malformed. The message names the file (and line)."""


__all__ = ["BAD_IMAGE_MODES", "README", "DataError"]
