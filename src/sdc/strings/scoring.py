"""How a read string is scored: right when every digit is; digit errors by edit distance."""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def edit_distance(a: Sequence[int], b: Sequence[int]) -> int:
    """Insertions, deletions and substitutions that turn `a` into `b`."""
    row = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        diagonal, row[0] = row[0], i
        for j in range(1, len(b) + 1):
            diagonal, row[j] = (
                row[j],
                min(row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] != b[j - 1])),
            )
    return row[len(b)]


def string_scores(pairs: Iterable[tuple[Sequence[int], Sequence[int]]]) -> dict[str, float]:
    """Whole-string accuracy and digit error rate (edit distance over the digits said) of
    (heard, said) pairs."""
    right = errors = said = n = 0
    for heard, truth in pairs:
        right += list(heard) == list(truth)
        errors += edit_distance(heard, truth)
        said += len(truth)
        n += 1
    return {"string_accuracy": right / n, "digit_error_rate": errors / said, "n": n}
