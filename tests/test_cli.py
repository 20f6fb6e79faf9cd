"""Every `xdetox` command group and subcommand answers --help."""
from __future__ import annotations

import argparse

import pytest

from interp.app.cli import build_parser, main


def _subcommands(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                out.append(prefix + (name,))
                out += _subcommands(sub, prefix + (name,))
    return out


COMMANDS = _subcommands(build_parser())


def test_every_issue_command_exists() -> None:
    names = {" ".join(c) for c in COMMANDS}
    for cmd in ("data check", "model build-default", "model quality", "probe train", "probe eval", "probe show",
                "neurons find", "neurons project", "neurons activations", "neurons intervene", "dpo train",
                "dpo merge", "eval generate", "eval score", "eval metrics", "figures", "run"):
        assert cmd in names, f"missing command: xdetox {cmd}"


@pytest.mark.parametrize("cmd", COMMANDS, ids=lambda c: " ".join(c))
def test_help(cmd: tuple[str, ...], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([*cmd, "--help"])
    assert exit_info.value.code == 0
    assert "usage: xdetox" in capsys.readouterr().out
