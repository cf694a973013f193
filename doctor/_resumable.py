"""Whether ``kilroy attractor resume`` will take a run up, for advice that asks for one.

Kilroy's resume reads the checkpoint of the run directory (``--logs-root``) and refuses it
before its engine starts when the checkpoint has no ``git_commit_sha``: it exits 1 with
``checkpoint missing git_commit_sha`` and rewrites ``final.json`` (``fail``, that reason),
replacing the reason the run had ended with. Two kinds of run have such a checkpoint (format
doc §1.2, §3.3): a run in Kilroy's no-git mode (real run ``resume_no_git``), and any run a
resume already worked on, since a resumed engine saves its checkpoints without the sha (real
run ``agent_dotai_status_resumed``: resumed once after a SIGKILL; a second resume is refused,
checked with the engine in ``tests/doctor/test_repair_real_kilroy.py``). A repair whose only
use is what a resume would do with it, and advice to resume, are then wrong for that run.

A resume that starts may still not resume the run as it was run (:func:`resume_caveat`).
Kilroy loads the run's config from ``manifest.json``'s ``run_config_path`` only, an absolute
path (the ``run_config.json`` beside the manifest is read only when the manifest names
none); a run directory copied or moved away from where it ran names a file that is gone, and
its resume then runs with Kilroy's defaults and its *simulated* agent backend: every agent
stage "succeeds" at once with ``[Simulated] Response for stage: <node>``, no agent run
(checked with the real engine, ``tests/doctor/test_repair_real_kilroy.py``; ``false_success``
reports such a success, evidence ``simulated_nodes``, only afterwards). Advice to resume such a
run says so first.
"""

from __future__ import annotations

import os

from doctor._documents import RunDocuments

__all__ = ["NO_COMMIT", "missing_config", "resume_caveat", "resume_refusal"]

#: What Kilroy's resume says, and writes as final.json's ``failure_reason``, when it refuses
#: a run whose checkpoint has no ``git_commit_sha``.
NO_COMMIT = "checkpoint missing git_commit_sha"


def resume_refusal(docs: RunDocuments) -> str | None:
    """Kilroy's reason for refusing to resume the run (:data:`NO_COMMIT`), or None when its
    resume would start: the run is no Kilroy run, or the run directory's checkpoint is
    missing or unreadable (nothing is known), or it has a ``git_commit_sha``.

    >>> from pathlib import Path
    >>> from doctor._documents import Document, ScopeDocuments
    >>> def run(checkpoint):
    ...     doc = Document(Path("r/checkpoint.json"), "checkpoint.json", "checkpoint", 2, 0,
    ...                    value=checkpoint)
    ...     return RunDocuments("r", Path("r"), "kilroy",
    ...                         {"": ScopeDocuments("", Path("r"), checkpoint=doc)})
    >>> resume_refusal(run({"current_node": "impl", "git_commit_sha": "9f1c2e7"})) is None
    True
    >>> resume_refusal(run({"current_node": "impl"}))
    'checkpoint missing git_commit_sha'
    >>> resume_refusal(run({"current_node": "impl", "git_commit_sha": " "}))
    'checkpoint missing git_commit_sha'
    """
    if docs.layout != "kilroy":
        return None
    top = docs.scopes.get("")
    doc = top.checkpoint if top is not None else None
    if doc is None or not doc.ok or not isinstance(doc.value, dict):
        return None
    sha = doc.value.get("git_commit_sha")
    return None if isinstance(sha, str) and sha.strip() else NO_COMMIT


def missing_config(docs: RunDocuments) -> str | None:
    """The run config ``manifest.json`` names (``run_config_path``) when it names one that is
    not there, for a Kilroy run; None otherwise (nothing named, a relative name, the file
    there, the manifest unreadable).

    >>> from pathlib import Path
    >>> from doctor._documents import Document, ScopeDocuments
    >>> def run(manifest):
    ...     doc = Document(Path("r/manifest.json"), "manifest.json", "manifest", 2, 0,
    ...                    value=manifest)
    ...     return RunDocuments("r", Path("r"), "kilroy", {"": ScopeDocuments("", Path("r"))},
    ...                         manifest=doc)
    >>> missing_config(run({"run_config_path": "/nonexistent/run_config.json"}))
    '/nonexistent/run_config.json'
    >>> missing_config(run({"run_config_path": ""})) is None
    True
    """
    doc = docs.manifest
    if docs.layout != "kilroy" or doc is None or not doc.ok or not isinstance(doc.value, dict):
        return None
    named = doc.value.get("run_config_path")
    if not isinstance(named, str) or not os.path.isabs(named):
        return None
    return None if os.path.lexists(named) else named


def resume_caveat(docs: RunDocuments) -> str | None:
    """What to do before ``kilroy attractor resume`` when the run's config is gone
    (:func:`missing_config`), as a clause for advice that asks for a resume; None when
    nothing is in the way.

    >>> from pathlib import Path
    >>> from doctor._documents import Document, ScopeDocuments
    >>> doc = Document(Path("r/manifest.json"), "manifest.json", "manifest", 2, 0,
    ...                value={"run_config_path": "/gone/r/run_config.json"})
    >>> print(resume_caveat(RunDocuments("r", Path("/runs/r"), "kilroy",
    ...     {"": ScopeDocuments("", Path("/runs/r"))}, manifest=doc)))  # doctest: +ELLIPSIS
    but first point manifest.json's run_config_path at the run's config: it names \
/gone/r/run_config.json, which is gone (the run directory was copied or moved), and \
Kilroy resumes without it on its defaults and its simulated agent backend ...
    """
    named = missing_config(docs)
    if named is None:
        return None
    beside = docs.path / "run_config.json"
    target = (
        "the run_config.json beside it (Kilroy's copy of the config)"
        if beside.is_file()
        else "the run's config"
    )
    catalogue = _missing_catalogue(docs)
    also = (
        f", and its modeldb.openrouter_model_info_path ({catalogue}, also gone) at a copy of "
        "the model catalogue (without it the resume fails before its engine starts)"
        if catalogue
        else ""
    )
    base = _foreign_base(docs)
    if base is not None:
        also += (
            f", and checkpoint.json's extra.base_logs_root ({base}) at this run directory "
            "(Kilroy saves the resumed run's outcome there too)"
        )
    return (
        f"but first point manifest.json's run_config_path at {target}: it names {named}, "
        "which is gone (the run directory was copied or moved), and Kilroy resumes without "
        "it on its defaults and its simulated agent backend (every agent stage 'succeeds' at "
        f"once and no agent runs){also}"
    )


def _foreign_base(docs: RunDocuments) -> str | None:
    """The checkpoint's ``extra.base_logs_root`` when it names another directory than the
    run's (docs/repair.md, "A resume of a copy")."""
    top = docs.scopes.get("")
    doc = top.checkpoint if top is not None else None
    value = doc.value if doc is not None and doc.ok else None
    extra = value.get("extra") if isinstance(value, dict) else None
    base = extra.get("base_logs_root") if isinstance(extra, dict) else None
    if not isinstance(base, str) or not base or os.path.abspath(base) == str(docs.path):
        return None
    return base


def _missing_catalogue(docs: RunDocuments) -> str | None:
    """The model catalogue snapshot ``manifest.json`` names when it is not there."""
    doc = docs.manifest
    value = doc.value if doc is not None and doc.ok else None
    modeldb = value.get("modeldb") if isinstance(value, dict) else None
    named = modeldb.get("openrouter_model_info_path") if isinstance(modeldb, dict) else None
    if not isinstance(named, str) or not os.path.isabs(named):
        return None
    return None if os.path.lexists(named) else named
