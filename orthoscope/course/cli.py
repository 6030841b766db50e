"""``python -m orthoscope course build OUT`` (student notebooks + answer key) and ``python -m orthoscope course nbgrader
DIR`` (an nbgrader course directory); docs/course.md."""
from __future__ import annotations

from pathlib import Path

from .build import SOURCE, build
from .grading import write_nbgrader_course


def main(argv: list[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m orthoscope course",
        description="Write the course's student notebooks and the teacher's answer key, or an nbgrader course.")
    parser.add_argument("action", choices=["build", "nbgrader"],
                        help="build: write OUT/student and OUT/teacher; nbgrader: write an nbgrader course directory "
                             "OUT (source/NN_topic/NN_topic.ipynb per assignment, nbgrader_config.py)")
    parser.add_argument("out", help="output folder")
    parser.add_argument("--source", default=str(SOURCE), help=f"course notebooks (default: {SOURCE})")
    args = parser.parse_args(argv)
    if args.action == "nbgrader":
        assignments, config = write_nbgrader_course(args.out, args.source)
        print(f"wrote {len(assignments)} assignments to {Path(args.out) / 'source'} ({', '.join(assignments)}); "
              f"config: {config}\nnext: cd {args.out} && nbgrader generate_assignment {assignments[0]}")
        return 0
    written = build(args.out, args.source)
    print(f"wrote {len(written) // 2} student notebooks to {Path(args.out) / 'student'} and the answer key to "
          f"{Path(args.out) / 'teacher'}")
    return 0
