"""One module per `adapter-engine` subcommand; each exposes `register(subparsers)`.

Modules here import torch only inside their command functions, so `--help` stays fast.
"""
