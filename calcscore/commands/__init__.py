"""One module per `calcscore` subcommand.

Each module defines ``register(subparsers)``, which adds its parser and sets ``func`` to a
``run(args) -> int`` function. ``run`` is a thin wrapper around one typed library function and
imports heavy dependencies (torch, SimpleITK) inside, so that ``calcscore --help`` stays fast.
"""
