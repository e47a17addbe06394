"""telewatch archiver: the archive and everything that writes to it."""

__version__ = "0.1.0"
