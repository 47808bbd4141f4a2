"""Errors that carry fields survive a copy or a pickle (a process pool's results) whole."""

from __future__ import annotations

import copy
import pickle

from leanrank.errors import EmptyDocumentError, UnknownCourseError


def test_an_unknown_course_survives_a_pickle_and_a_copy() -> None:
    error = UnknownCourseError("algo", ["b", "a"])
    for again in (pickle.loads(pickle.dumps(error)), copy.copy(error)):
        assert (type(again), again.course, again.known) == (UnknownCourseError, "algo", ("a", "b"))
        assert str(again) == "unknown course 'algo'; indexed courses: a, b"


def test_a_document_error_keeps_its_kind_path_and_reason() -> None:
    again = pickle.loads(pickle.dumps(EmptyDocumentError("week1/a.md", "no text")))
    assert (type(again), again.path, again.reason, str(again)) == (
        EmptyDocumentError,
        "week1/a.md",
        "no text",
        "week1/a.md: no text",
    )
