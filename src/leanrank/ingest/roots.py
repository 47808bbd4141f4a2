"""Each course's folder: the root its source ids are relative to, so a sub-folder or one file ingested later
gets the ids the whole folder gave it.

A course records the resolved folder of its first folder ingest in `data_dir/courses.json`
(`{"py101": {"root": "/home/t/py101"}}`), kept beside the index on the machine whose paths it names. A
course without one (indexed before it was recorded, or only from single files) names files as the path
given to ingest does, and records its folder at its next folder ingest.
"""

from __future__ import annotations

import json
import os
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from leanrank.errors import ConfigError, InputError
from leanrank.storage import ensure_free

COURSES_FILE = "courses.json"


class CourseRoots:
    """The recorded folder of each course, in the JSON file `path`; read afresh on each call, so a change
    made by another process is seen, and replaced whole on each write (a crash leaves the old file)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def get(self, course: str) -> Path | None:
        root = self._read().get(course, {}).get("root")
        return None if root is None else Path(root)

    def set(self, course: str, root: Path) -> None:
        """Record `root` (absolute, links resolved) as `course`'s folder."""
        courses = self._read()
        courses[course] = {**courses.get(course, {}), "root": str(root)}
        self._write(courses)

    def forget(self, course: str) -> None:
        courses = self._read()
        if courses.pop(course, None) is not None:
            self._write(courses)

    def _read(self) -> dict[str, dict[str, Any]]:
        try:
            found = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ConfigError(f"{self.path}: cannot read it ({exc}); {_REMEDY}") from None
        if not isinstance(found, dict) or not all(isinstance(v, dict) for v in found.values()):
            raise ConfigError(f'{self.path}: expected {{course: {{"root": folder}}}}; {_REMEDY}')
        return found

    def _write(self, courses: dict[str, dict[str, Any]]) -> None:
        text = json.dumps(courses, ensure_ascii=False, indent=1, sort_keys=True)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        ensure_free(self.path.parent, len(text.encode()), f"writing {self.path}")
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, self.path)


_REMEDY = "fix it or delete it (each course then records its folder again at its next folder ingest)"


@dataclass(frozen=True, slots=True)
class Placement:
    """Where one ingest reads and what its ids are relative to.

    `target` is the path to ingest, absolute (a folder with links resolved; a file's folder resolved and
    the file's own name kept, so a link out of the course is still refused). `root` is the folder source
    ids are relative to, with `target` inside it: no id starts with `..`. `record` says whether `root` is
    new for the course and should be recorded.
    """

    target: Path
    root: Path
    record: bool


def place(path: Path, course: str, recorded: Path | None, root: Path | None = None) -> Placement:
    """The placement of an ingest of the existing `path` into `course`, whose recorded folder is `recorded`.

    - `root` given: ids are relative to it (a folder `path` must be in; `InputError` otherwise).
    - else `path` inside `recorded`: relative to `recorded`, the ids the course's first ingest gave.
    - else a folder: the folder itself is the root (the course moved, or has no recorded folder yet).
    - else a file with no recorded folder: its own folder, the file named by its name (as before roots
      were recorded); a file outside the recorded folder is an `InputError` asking for `root`.
    """
    target = path.resolve() if path.is_dir() else path.absolute().parent.resolve() / path.name
    if root is not None:
        base = root.resolve()
        if not base.is_dir():
            raise InputError(f"--root {root}: no such folder")
        if not target.is_relative_to(base):
            raise InputError(f"{path} is not inside --root {root}")
        return Placement(target, base, base != recorded)
    if recorded is not None and target.is_relative_to(recorded):
        return Placement(target, recorded, False)
    if target.is_dir():
        return Placement(target, target, True)
    if recorded is not None:
        raise InputError(
            f"{path} is outside {recorded}, the folder of course {course}: pass --root with the course "
            "folder it is in (files are named relative to it), or ingest that whole folder"
        )
    return Placement(target, target.parent, False)


def check_new_root(
    path: Path, course: str, root: Path, recorded: Path | None, names: set[str], indexed: Collection[str]
) -> None:
    """Refuse to make `root`, the folder `path`, the folder of a course whose `indexed` sources include none
    of the `names` its files would get: it is then a part of the course (a sub-folder of a course indexed
    before folders were recorded, or of one that moved) or another folder, and its files would be indexed
    a second time under new names (and `--prune` would delete the course's others). A folder holding the
    recorded one widens the course and passes: its new names are reported missing, for `--prune`.
    `InputError`.
    """
    if not indexed or names & set(indexed) or (recorded is not None and recorded.is_relative_to(root)):
        return
    home = f" ({recorded})" if recorded is not None else ""
    raise InputError(
        f"{path} holds none of the {len(indexed)} indexed files of course {course} under the names it would "
        f"give them (such as {min(indexed)}), so its files would be indexed twice: ingest the course's own "
        f"folder{home}, or this one with --root COURSE_FOLDER; --root {path} makes it the course's folder"
    )
