"""CLI group (placeholder until its issue lands)."""
from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("neurons", help="(in development)")
    p.set_defaults(func=lambda args: print("not implemented yet") or 1)
