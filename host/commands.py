"""Subcommands of `sentei` that belong to sentei.host (registered by sentei.cli)."""


def register(sub):
    pass
