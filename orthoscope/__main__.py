"""Command line: ``python -m orthoscope <command> [options]``.

Each command lives in its own module and is imported only when called (``import orthoscope`` stays light).
"""
from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "demo": ("orthoscope.demo", "train modular addition until it groks; write DIR/report.html"),
    "reproduce": ("orthoscope.zoo.reproduce", "re-run one toy-model reproduction (see REPRODUCTIONS.md)"),
    "train": ("orthoscope.config.train", "train a run config into runs/NAME/ (resumable; see docs/scale.md)"),
    "plan": ("orthoscope.config.plan", "a run config's per-rank peak memory, itemised (--world-size N, --json)"),
    "tokenize": ("orthoscope.tasks.tokenfile", "turn a text file into a token .bin for the TokenFile task"),
    "methods": ("orthoscope.config.method_settings",
                "every method's settings and defaults (--markdown: docs/methods.md)"),
    "course": ("orthoscope.course.cli", "course build OUT: student notebooks + answer key; course nbgrader DIR: "
               "an nbgrader course"),
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        lines = [f"  {name:<10} {help_}" for name, (_, help_) in COMMANDS.items()]
        print("usage: python -m orthoscope <command> [options]\n\ncommands:\n" + "\n".join(lines))
        if argv and argv[0] not in ("-h", "--help"):
            print(f"\nunknown command {argv[0]!r}", file=sys.stderr)
            return 2
        return 0
    module = importlib.import_module(COMMANDS[argv[0]][0])
    return module.main(argv[1:]) or 0


if __name__ == "__main__":
    sys.exit(main())
