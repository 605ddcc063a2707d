"""Subcommands of `sentei` that belong to sentei.overlay (registered by sentei.cli)."""


def register(sub):
    pass
