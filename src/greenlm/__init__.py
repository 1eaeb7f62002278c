"""greenlm: cheaper transformer text models, with an honest price tag on every result."""

__version__ = "0.1.0"
