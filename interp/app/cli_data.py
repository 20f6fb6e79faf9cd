"""``xdetox data check``: validate every data set under the data root and print counts."""
from __future__ import annotations

import argparse
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from interp.app.cli_common import add_data_root_arg
from interp.data.languages import LANGUAGES
from interp.data.sources import GETTEXT_DIR


@dataclass
class DataCheck:
    """Counts of every data set (no text), and the errors met while loading them."""

    root: Path
    per_language: dict[str, dict[str, int | str]] = field(default_factory=dict)
    totals: dict[str, str] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


COLUMNS = ("rtplx", "eval", "train", "t200", "lexicon", "gettext")


def check_data(root: str | Path | None = None, *, locale_dir: str = GETTEXT_DIR) -> DataCheck:
    """Return a :class:`DataCheck` after loading every data set under ``root``."""
    from interp.data import rtplx as rtplx_mod
    from interp.data import sources
    from interp.data import split
    from interp.core.paths import data_root

    base = data_root(root)
    report = DataCheck(root=base)
    rows = {lang: {c: "-" for c in COLUMNS} for lang in LANGUAGES}

    def attempt(name: str, fn: Callable[[], None]) -> None:
        try:
            fn()
        except (ValueError, OSError) as e:  # DataFormatError is a ValueError
            report.errors[name] = str(e)

    def rtplx() -> None:
        from interp.data.coverage import rtplx_languages

        # Locales beyond the paper's 17 (later RTP-LX releases) get rows too, after the 17.
        extra = [lang for lang in rtplx_languages(base) if lang not in LANGUAGES]
        for lang in extra:
            rows[lang] = {c: "-" for c in COLUMNS}
        if extra:
            report.notes.append(f"RTP-LX locales beyond the paper's 17: {', '.join(extra)} "
                                "(name them with --set languages=[...])")
        prompts = rtplx_mod.load_rtplx(base, [*LANGUAGES, *extra])
        n = Counter(p.lang for p in prompts)
        ev = Counter(p.lang for p in split.rtplx_split(prompts, "eval", root=base))
        for lang in [*LANGUAGES, *extra]:
            rows[lang].update(rtplx=n[lang], eval=ev[lang], train=n[lang] - ev[lang])
        _, rep = rtplx_mod.align_by_index(prompts)
        report.totals["RTP-LX alignment"] = rep.summary()

    def t200() -> None:
        for lang, ps in rtplx_mod.load_translated_200(base).items():
            rows[lang]["t200"] = len(ps)

    def lexicons() -> None:
        for lang, words in sources.load_lexicons(base).items():
            rows[lang]["lexicon"] = len(words)

    def paradetox() -> None:
        pd = sources.load_paradetox(base)
        report.totals["ParaDetox"] = f"{len(pd)} rows, {sum(len(r.neutrals) for r in pd)} neutral paraphrases"

    def davidson() -> None:
        dv = sources.load_davidson(base)
        c = Counter(t.source.rsplit("class", 1)[-1] for t in dv)
        report.totals["Davidson"] = (f"{len(dv)} tweets (hate {c['0']}, offensive {c['1']}, neither {c['2']}; "
                                     f"toxic {sum(t.label for t in dv)})")

    def jigsaw() -> None:
        jg = sources.load_jigsaw_sample(base)
        report.totals["Jigsaw sample"] = f"{len(jg)} comments ({sum(t.label for t in jg)} toxic)"

    def gettext() -> None:
        g = sources.gettext_parallel(locale_dir=locale_dir)
        if not any(g.values()):
            report.notes.append(f"no gettext catalogs translated into all 17 languages under {locale_dir}")
        for lang, strings in g.items():
            rows[lang]["gettext"] = len(strings)

    for name, fn in (("RTP-LX", rtplx), ("translated-200", t200), ("LDNOOBW", lexicons),
                     ("ParaDetox", paradetox), ("Davidson", davidson), ("Jigsaw sample", jigsaw)):
        attempt(name, fn)
    try:
        gettext()
    except (ValueError, OSError) as e:  # optional data: a note, not a failure
        report.notes.append(f"gettext: {e}")
    report.per_language = rows
    return report


def format_check(report: DataCheck) -> str:
    """Return the check as a plain-text table plus totals, notes and errors."""
    lines = [f"data root: {report.root}", "", f"{'lang':<8}" + "".join(f"{c:>9}" for c in COLUMNS)]
    for lang, row in report.per_language.items():
        lines.append(f"{lang:<8}" + "".join(f"{row[c]!s:>9}" for c in COLUMNS))
    lines.append("")
    lines.extend(f"{k}: {v}" for k, v in report.totals.items())
    lines.extend(f"note: {n}" for n in report.notes)
    lines.extend(f"ERROR {k}: {v}" for k, v in report.errors.items())
    return "\n".join(lines)


def _run_check(args: argparse.Namespace) -> int:
    from interp.core.paths import data_root

    data_root(args.data_root)  # a missing root is a usage error (exit 2), not a malformed data set
    report = check_data(args.data_root, locale_dir=args.locale_dir)
    print(format_check(report))
    if report.errors:
        for name, err in report.errors.items():
            print(f"xdetox data check: {name}: {err}", file=sys.stderr)
        print(f"xdetox data check: {len(report.errors)} data set(s) malformed or missing", file=sys.stderr)
        return 1
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``xdetox data check``."""
    p = sub.add_parser("data", help="inspect and validate the offline data sets")
    dsub = p.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    c = dsub.add_parser("check", help="validate every data set under the data root and print a per-language "
                                      "table of counts (RTP-LX rows and eval/train split, translated-200, "
                                      "lexicon sizes, gettext strings) plus English totals")
    add_data_root_arg(c)
    c.add_argument("--locale-dir", default=GETTEXT_DIR,
                   help=f"gettext catalog folder for the parallel-sentence count (default: {GETTEXT_DIR})")
    c.set_defaults(func=_run_check)
