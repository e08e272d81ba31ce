"""Operators' verbs of the ``netwatch`` CLI, one module each.

A module here exposes ``register(subparsers)``, which adds its parser and sets
``handler=run`` as a default, and ``run(args) -> int``, the exit code. Keep heavy imports inside
``run`` so that ``netwatch --help`` stays fast. :data:`netwatch.cli.COMMANDS` lists them.
"""
