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
"""

from __future__ import annotations

from doctor._documents import RunDocuments

__all__ = ["NO_COMMIT", "resume_refusal"]

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
