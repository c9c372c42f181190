"""CLI subcommands for inference, optimization, reports and the demo (registered by cli.build_parser)."""

from __future__ import annotations


def register(sub, add_backend) -> None:
    pass
