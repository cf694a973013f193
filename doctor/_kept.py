"""A cached run's findings kept as the JSON text a scan prints, parsed only when looked into.

A rescan of a large fleet with nothing changed prints what it printed before, but for the ages
measured against the clock. Parsing every run's findings from the cache and encoding them
again was most of such a rescan's time, so the cache keeps a run's findings as the text
:func:`doctor._json_out.dumps_indented` writes for them where a scan's JSON places them
(:data:`FINDINGS_LEVEL`, one *block*: the findings joined by :data:`SEPARATOR`), with each
one's size, severity and whether it depends on the clock. A rescan parses only the findings
that do (``idle_s``: one per stalled or orphaned run) and writes those again in the block;
the scan's JSON splices the block as it is (:meth:`KeptFindings.json_text`). Anything that
looks into the findings (the library's :class:`~doctor.Diagnosis`, the text table,
``watch``) gets them parsed, as before.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from json.encoder import encode_basestring_ascii
from typing import Any, overload

from doctor._json_out import JSONText, dumps_indented

__all__ = ["FINDINGS_LEVEL", "SEPARATOR", "SEVERITY_LABELS", "KeptFindings", "run_text"]

#: How deep a scan's JSON writes a run's findings: ``{"runs": [{"findings": [HERE]}]}``
#: (``ScanResult.to_json``; a test compares the spliced text with the encoded one).
FINDINGS_LEVEL = 4
#: Between two findings of a block (as ``dumps_indented`` separates list items there).
SEPARATOR = ",\n" + "  " * FINDINGS_LEVEL
#: Severity labels by rank (``doctor._model.Severity``; kept as ranks in the cache).
SEVERITY_LABELS = ("info", "warning", "error", "critical")


class KeptFindings(Sequence[dict[str, Any]]):
    """A run's ordered findings (their JSON objects), kept as one block of text.

    ``block`` holds each finding as written at :data:`FINDINGS_LEVEL`, joined by
    :data:`SEPARATOR`; ``sizes[i]`` is finding ``i``'s length in it, ``ranks[i]`` its
    severity's rank, and ``clocked`` the indices of those whose evidence has an ``idle_s``
    (brought to the clock by a rescan).

    >>> f = {"code": "c", "severity": "error", "scope": "", "node_id": None,
    ...      "summary": "s", "evidence": {"idle_s": 1.5}, "repair": None}
    >>> kept = KeptFindings.of([f, {**f, "severity": "info", "evidence": {}}])
    >>> (kept[0] == f, kept.ranks, kept.clocked, kept.counts()["error"], len(kept))
    (True, (2, 0), (0,), 1, 2)
    """

    __slots__ = ("_parsed", "block", "clocked", "ranks", "sizes")

    def __init__(
        self,
        block: str,
        sizes: Sequence[int],
        ranks: Sequence[int],
        clocked: Sequence[int],
        parsed: Mapping[int, dict[str, Any]] | None = None,
    ) -> None:
        if len(sizes) != len(ranks):
            raise ValueError("one severity per finding")
        if len(block) != sum(sizes) + len(SEPARATOR) * max(0, len(sizes) - 1):
            raise ValueError("the block is not as long as its findings")
        self.block = block
        self.sizes = tuple(sizes)
        self.ranks = tuple(ranks)
        self.clocked = tuple(clocked)
        if not all(0 <= i < len(self.sizes) for i in self.clocked):
            raise ValueError("a clocked finding that is not there")
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
        return cls(SEPARATOR.join(texts), [len(t) for t in texts], ranks, clocked)

    def _starts(self) -> list[int]:
        starts, at = [], 0
        for size in self.sizes:
            starts.append(at)
            at += size + len(SEPARATOR)
        return starts

    def _start(self, i: int) -> int:
        return sum(self.sizes[:i]) + i * len(SEPARATOR)

    def text(self, i: int) -> str:
        """Finding ``i``'s text."""
        start = self._start(i)
        return self.block[start : start + self.sizes[i]]

    def texts(self) -> list[str]:
        return [self.block[a : a + n] for a, n in zip(self._starts(), self.sizes, strict=True)]

    def parsed(self, i: int) -> dict[str, Any]:
        """Finding ``i``'s JSON object (parsed once)."""
        found = self._parsed.get(i)
        if found is None:
            found = self._parsed[i] = _object(json.loads(self.text(i)))
        return found

    def replaced(self, changed: Mapping[int, tuple[dict[str, Any], str | None]]) -> KeptFindings:
        """These findings with ``changed`` ones (index -> the object, and its text or None
        to write it here) in their places."""
        if not changed:
            return self
        sizes = list(self.sizes)
        starts = {i: self._start(i) for i in changed}
        pieces, at = [], 0
        for i in sorted(changed):
            f, text = changed[i]
            if text is None:
                text = dumps_indented(f, FINDINGS_LEVEL)
            pieces += [self.block[at : starts[i]], text]
            at = starts[i] + sizes[i]
            sizes[i] = len(text)
        pieces.append(self.block[at:])
        parsed = {**self._parsed, **{i: f for i, (f, _) in changed.items()}}
        return KeptFindings("".join(pieces), sizes, self.ranks, self.clocked, parsed)

    def merged(self, others: Sequence[Mapping[str, Any]]) -> KeptFindings:
        """These findings and ``others`` (JSON objects) in the order a diagnosis keeps them
        (``doctor._diagnose._order``: worst first, then scope, code and node)."""
        if not others:
            return self
        more = KeptFindings.of(others)
        rows = [
            (text, self.ranks[i], self.parsed(i), i in self.clocked)
            for i, text in enumerate(self.texts())
        ] + [
            (text, more.ranks[i], dict(others[i]), i in more.clocked)
            for i, text in enumerate(more.texts())
        ]
        rows.sort(key=lambda r: (-r[1], r[2]["scope"], r[2]["code"], r[2]["node_id"] or ""))
        return KeptFindings(
            SEPARATOR.join(r[0] for r in rows),
            [len(r[0]) for r in rows],
            [r[1] for r in rows],
            [i for i, r in enumerate(rows) if r[3]],
            {i: r[2] for i, r in enumerate(rows)},
        )

    def counts(self) -> dict[str, int]:
        """Findings per severity label, every label present (``Diagnosis.counts``)."""
        ranks = self.ranks
        return {label: ranks.count(r) for r, label in enumerate(SEVERITY_LABELS)}

    def json_text(self) -> JSONText:
        """The findings' list as a scan's JSON writes it (one level above the findings)."""
        if not self.sizes:
            return JSONText("[]", FINDINGS_LEVEL - 1)
        pad = "\n" + "  " * (FINDINGS_LEVEL - 1)
        return JSONText.of_parts(["[", f"{pad}  ", self.block, pad, "]"], FINDINGS_LEVEL - 1)

    @overload
    def __getitem__(self, i: int) -> dict[str, Any]: ...

    @overload
    def __getitem__(self, i: slice) -> Sequence[dict[str, Any]]: ...

    def __getitem__(self, i: int | slice) -> dict[str, Any] | Sequence[dict[str, Any]]:
        if isinstance(i, slice):
            return [self.parsed(j) for j in range(*i.indices(len(self.sizes)))]
        return self.parsed(range(len(self.sizes))[i])

    def __iter__(self) -> Iterator[dict[str, Any]]:
        if len(self._parsed) < len(self.sizes):  # one parse for all (faster than one each)
            whole = json.loads("[" + self.block + "]")
            self._parsed = {i: _object(f) for i, f in enumerate(whole)} | self._parsed
        return (self._parsed[i] for i in range(len(self.sizes)))

    def __len__(self) -> int:
        return len(self.sizes)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, KeptFindings):
            return self.block == other.block
        return isinstance(other, Sequence) and list(self) == list(other)

    __hash__ = None  # type: ignore[assignment]

    def __reduce__(self) -> tuple[Any, ...]:
        return (KeptFindings, (self.block, self.sizes, self.ranks, self.clocked))

    def __repr__(self) -> str:
        return f"KeptFindings({len(self.sizes)} findings)"


def run_text(
    run_id: Any,
    path: Any,
    layout: Any,
    state: Any,
    kept: KeptFindings,
    worst: Mapping[str, Any] | None,
) -> JSONText | None:
    """A run's object in a scan's JSON (``doctor._diagnose._run_json``: its head, counts,
    worst finding and findings) as :func:`dumps_indented` writes it two levels above the
    findings; None when a value is not text (the encoder then writes it).

    >>> kept = KeptFindings.of([])
    >>> run = {"run_id": "r", "path": "/p", "layout": "kilroy", "state": "running",
    ...        "counts": kept.counts(), "worst": None, "findings": []}
    >>> text = run_text("r", "/p", "kilroy", "running", kept, None)
    >>> text is not None and text.text == dumps_indented(run, FINDINGS_LEVEL - 2)
    True
    """
    head = [run_id, path, layout, state]
    if worst is not None:
        head += [worst["code"], worst["severity"], worst["summary"]]
    if not all(type(v) is str for v in head):
        return None
    e = encode_basestring_ascii
    level = FINDINGS_LEVEL - 2
    outer, inner = "\n" + "  " * level, "\n" + "  " * (level + 1)
    deeper = inner + "  "
    counts = kept.counts()
    parts = [
        "{",
        inner,
        f'"run_id": {e(run_id)},',
        inner,
        f'"path": {e(path)},',
        inner,
        f'"layout": {e(layout)},',
        inner,
        f'"state": {e(state)},',
        inner,
        '"counts": {',
        ",".join(f'{deeper}"{label}": {int(counts[label])}' for label in SEVERITY_LABELS),
        inner,
        "},",
        inner,
    ]
    if worst is None:
        parts.append('"worst": null,')
    else:
        parts += [
            '"worst": {',
            f'{deeper}"code": {e(worst["code"])},',
            f'{deeper}"severity": {e(worst["severity"])},',
            f'{deeper}"summary": {e(worst["summary"])}',
            inner,
            "},",
        ]
    # The findings' block is not copied: the run's text is written piece by piece.
    parts += [inner, '"findings": ', *kept.json_text().parts, outer, "}"]
    return JSONText.of_parts(parts, level)


def _object(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise TypeError("a kept finding is a JSON object")
    return value
