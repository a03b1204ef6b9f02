"""Chapter ids: one spelling of a chapter everywhere, the notebook's name ("03_bayes_robustness").

A ``ChapterId`` is that string (result files and sweep runs store it as is) with its ``number`` ("03");
``chapter_id`` also accepts the number alone for the book's chapters.
"""

from __future__ import annotations

import re

_PATTERN = re.compile(r"^\d{2}_\w+$")


class ChapterId(str):
    """A chapter's notebook name, "NN_words" ("03_bayes_robustness"); ``number`` is "NN"."""

    def __new__(cls, name: str) -> ChapterId:
        if not isinstance(name, str) or not _PATTERN.match(name):
            raise ValueError(f"a chapter id is a notebook name like '03_bayes_robustness', got {name!r}")
        return super().__new__(cls, name)

    @property
    def number(self) -> str:
        """The two-digit number ("03")."""
        return self[:2]


THEORY = ChapterId("01_theory")
DATASETS = ChapterId("02_mfa_datasets")
BAYES = ChapterId("03_bayes_robustness")
LEARNED = ChapterId("04_learned_classifiers")
REAL = ChapterId("05_real_data")
SUMMARY = ChapterId("06_summary")
LEADERBOARD = ChapterId("07_leaderboard")
CHAPTERS: tuple[ChapterId, ...] = (THEORY, DATASETS, BAYES, LEARNED, REAL, SUMMARY, LEADERBOARD)
#: The chapters that write result files.
RESULT_CHAPTERS: tuple[ChapterId, ...] = (BAYES, LEARNED, REAL)


def is_chapter_id(text: str) -> bool:
    """Whether ``text`` is a chapter's notebook name ("NN_words")."""
    return isinstance(text, str) and bool(_PATTERN.match(text))


def chapter_id(text: str) -> ChapterId:
    """The id of one of the book's chapters from its name ("03_bayes_robustness") or number ("03", "3")."""
    if isinstance(text, str) and _PATTERN.match(text):
        return ChapterId(text)
    number = str(text).strip().zfill(2) if str(text).strip().isdigit() else None
    for chapter in CHAPTERS:
        if chapter.number == number:
            return chapter
    valid = ", ".join(f"{c.number} ({c})" for c in CHAPTERS)
    raise ValueError(f"unknown chapter {text!r}: valid chapters are {valid}")
