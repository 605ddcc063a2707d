"""Subcommands of `sentei` that belong to sentei.training (registered by sentei.cli)."""


def register(sub):
    pass
