"""Subcommands of ``logarchive``; each module here registers one or more."""
