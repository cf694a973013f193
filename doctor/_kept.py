"""A cached run's findings kept as the JSON text a scan prints, parsed only when looked into.

A rescan of a large fleet with nothing changed prints what it printed before, but for the ages
measured against the clock. Parsing every run's findings from the cache and encoding them
again was most of such a rescan's time, so the cache keeps each finding as the text
:func:`doctor._json_out.dumps_indented` writes for it where a scan's JSON places it
(:data:`FINDINGS_LEVEL`), with its severity and whether it depends on the clock. A rescan
parses only the findings that do (``idle_s``: one per stalled or orphaned run), and the
scan's JSON splices the rest as they are (:meth:`KeptFindings.json_text`). Anything that
looks into them (the library's :class:`~doctor.Diagnosis`, the text table, ``watch``) gets
the parsed findings, as before.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, overload

from doctor._json_out import JSONText, dumps_indented

__all__ = ["FINDINGS_LEVEL", "SEVERITY_LABELS", "KeptFindings"]

#: How deep a scan's JSON writes a run's findings: ``{"runs": [{"findings": [HERE]}]}``
#: (``ScanResult.to_json``; a test compares the spliced text with the encoded one).
FINDINGS_LEVEL = 4
#: Severity labels by rank (``doctor._model.Severity``; kept as ranks in the cache).
SEVERITY_LABELS = ("info", "warning", "error", "critical")


class KeptFindings(Sequence[dict[str, Any]]):
    """A run's ordered findings (their JSON objects), kept as text.

    ``texts[i]`` is finding ``i`` as written at :data:`FINDINGS_LEVEL`, ``ranks[i]`` its
    severity's rank, and ``clocked`` the indices of those whose evidence has an ``idle_s``
    (brought to the clock by a rescan).

    >>> f = {"code": "c", "severity": "error", "scope": "", "node_id": None,
    ...      "summary": "s", "evidence": {"idle_s": 1.5}, "repair": None}
    >>> kept = KeptFindings.of([f])
    >>> (kept[0] == f, kept.ranks, kept.clocked, kept.counts()["error"])
    (True, (2,), (0,), 1)
    """

    __slots__ = ("_parsed", "clocked", "ranks", "texts")

    def __init__(
        self,
        texts: Sequence[str],
        ranks: Sequence[int],
        clocked: Sequence[int],
        parsed: Mapping[int, dict[str, Any]] | None = None,
    ) -> None:
        if len(texts) != len(ranks):
            raise ValueError("one severity per finding")
        self.texts = tuple(texts)
        self.ranks = tuple(ranks)
        self.clocked = tuple(clocked)
        self._parsed: dict[int, dict[str, Any]] = dict(parsed or {})

    @classmethod
    def of(cls, findings: Sequence[Mapping[str, Any]]) -> KeptFindings:
        """Findings (their JSON objects, in order) kept as text."""
        texts, ranks, clocked = [], [], []
        for i, f in enumerate(findings):
            texts.append(dumps_indented(f, FINDINGS_LEVEL))
            ranks.append(SEVERITY_LABELS.index(f["severity"]))
            evidence = f.get("evidence")
            if isinstance(evidence, Mapping) and "idle_s" in evidence:
                clocked.append(i)
        return cls(texts, ranks, clocked)

    def parsed(self, i: int) -> dict[str, Any]:
        """Finding ``i``'s JSON object (parsed once)."""
        found = self._parsed.get(i)
        if found is None:
            found = self._parsed[i] = _object(json.loads(self.texts[i]))
        return found

    def replaced(self, changed: Mapping[int, dict[str, Any]]) -> KeptFindings:
        """These findings with the objects ``changed`` (by index) written anew."""
        if not changed:
            return self
        texts = list(self.texts)
        for i, f in changed.items():
            texts[i] = dumps_indented(f, FINDINGS_LEVEL)
        return KeptFindings(texts, self.ranks, self.clocked, {**self._parsed, **changed})

    def merged(self, others: Sequence[Mapping[str, Any]]) -> KeptFindings:
        """These findings and ``others`` (JSON objects) in the order a diagnosis keeps them
        (``doctor._diagnose._order``: worst first, then scope, code and node)."""
        if not others:
            return self
        more = KeptFindings.of(others)
        rows = [
            (self.texts[i], self.ranks[i], self.parsed(i), i in self.clocked)
            for i in range(len(self.texts))
        ] + [
            (more.texts[i], more.ranks[i], dict(f), i in more.clocked) for i, f in enumerate(others)
        ]
        rows.sort(key=lambda r: (-r[1], r[2]["scope"], r[2]["code"], r[2]["node_id"] or ""))
        return KeptFindings(
            [r[0] for r in rows],
            [r[1] for r in rows],
            [i for i, r in enumerate(rows) if r[3]],
            {i: r[2] for i, r in enumerate(rows)},
        )

    def counts(self) -> dict[str, int]:
        """Findings per severity label, every label present (``Diagnosis.counts``)."""
        out = dict.fromkeys(SEVERITY_LABELS, 0)
        for r in self.ranks:
            out[SEVERITY_LABELS[r]] += 1
        return out

    def json_text(self) -> JSONText:
        """The findings' list as a scan's JSON writes it (one level above the findings)."""
        if not self.texts:
            return JSONText("[]", FINDINGS_LEVEL - 1)
        inner = "\n" + "  " * FINDINGS_LEVEL
        close = "\n" + "  " * (FINDINGS_LEVEL - 1) + "]"
        return JSONText("[" + inner + ("," + inner).join(self.texts) + close, FINDINGS_LEVEL - 1)

    @overload
    def __getitem__(self, i: int) -> dict[str, Any]: ...

    @overload
    def __getitem__(self, i: slice) -> Sequence[dict[str, Any]]: ...

    def __getitem__(self, i: int | slice) -> dict[str, Any] | Sequence[dict[str, Any]]:
        if isinstance(i, slice):
            return [self.parsed(j) for j in range(*i.indices(len(self.texts)))]
        return self.parsed(range(len(self.texts))[i])

    def __iter__(self) -> Iterator[dict[str, Any]]:
        if len(self._parsed) < len(self.texts):  # one parse for all (faster than one each)
            whole = json.loads("[" + ",".join(self.texts) + "]")
            self._parsed = {i: _object(f) for i, f in enumerate(whole)} | self._parsed
        return (self._parsed[i] for i in range(len(self.texts)))

    def __len__(self) -> int:
        return len(self.texts)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, KeptFindings):
            return self.texts == other.texts
        return isinstance(other, Sequence) and list(self) == list(other)

    __hash__ = None  # type: ignore[assignment]

    def __reduce__(self) -> tuple[Any, ...]:
        return (KeptFindings, (self.texts, self.ranks, self.clocked))

    def __repr__(self) -> str:
        return f"KeptFindings({len(self.texts)} findings)"


def _object(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise TypeError("a kept finding is a JSON object")
    return value
