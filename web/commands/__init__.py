"""Subcommands that run the web service (``serve``, ``demo``); composed by :mod:`web.cli`."""
