from __future__ import annotations


def validate(files: list[str]) -> None:
    raise NotImplementedError
