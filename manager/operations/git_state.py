"""What a git update or version switch will do with a checkout in an odd state, decided before
anything changes (issue 19, item 6).

``assess(ops, pack, operation, ref=...)`` reads the checkout (local git only, never the
network) and answers a ``GitDecision``: ``action`` is

- ``proceed``: a plain fast-forward (update) or checkout (switch_version);
- ``checkout_branch``: the pack is on a detached HEAD (pinned to a commit or tag) whose commit
  is in the history of its default branch, so ``update`` checks that branch out and
  fast-forwards it (no commit is lost; the previous commit is the rollback point);
- ``refuse``: ``error`` is the coded refusal the verb raises before it touches anything.

``notes`` say what else the operation will do (a shallow clone fetched deeper, a remote that
differs from the URL the catalog or the pack's pyproject names). Local edits are always a
refusal (``git_local_changes``): an update never stashes, resets or merges a user's changes
(docs/decisions.md). The same decision feeds the dry-run plan (``plan_notes``: notes and
blockers) and the verb, so what the preview says is what the run does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import GitDetachedHead, GitError, GitLocalChanges, ManagerError
from ..inventory import InstalledPack, normalise_remote
from .ops import Ops

__all__ = ["GitDecision", "assess"]

PROCEED = "proceed"
CHECKOUT_BRANCH = "checkout_branch"
REFUSE = "refuse"


@dataclass(frozen=True)
class GitDecision:
    """The decision for one pack: ``action`` (proceed | checkout_branch | refuse), why, and facts."""

    action: str
    reason: str
    branch: str = ""  # checkout_branch: the branch the update moves to
    notes: tuple[str, ...] = ()
    error: ManagerError | None = None  # refuse: raised by the verb
    facts: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "reason": self.reason,
            "branch": self.branch,
            "notes": list(self.notes),
            "error": self.error.to_dict() if self.error is not None else None,
            "facts": dict(self.facts),
        }

    def plan_notes(self) -> tuple[list[str], list[dict[str, Any]]]:
        """(notes, blockers) for a dry-run plan record (``manager.plans.Plan``)."""
        notes = list(self.notes) if self.action == PROCEED else [self.reason, *self.notes]
        blockers = [self.error.to_dict()] if self.error is not None else []
        return notes, blockers

    def raise_if_refused(self) -> None:
        if self.error is not None:
            raise self.error


def _catalog_url(ops: Ops, pack: InstalledPack) -> str:
    """The repository URL of the pack's catalog entry, when a catalog is already loaded (never fetched)."""
    view = getattr(getattr(ops, "manager", None), "_catalog_view", None)
    ident = pack.catalog_id or pack.cnr_id or pack.pack_id
    entry = view.catalog.get(ident) if view is not None and ident else None
    if entry is None or entry.install_type != "git-clone":
        return ""
    return (entry.files[0] if entry.files else "") or entry.reference


def _local_remote_gone(url: str) -> bool:
    """A local-path or file:// remote whose folder no longer exists (network remotes are not probed)."""
    text = url.strip()
    if text.startswith("file://"):
        from urllib.parse import unquote, urlsplit

        return not Path(unquote(urlsplit(text).path)).exists()
    if text.startswith("/"):
        return not Path(text).exists()
    return False


def assess(ops: Ops, pack: InstalledPack, operation: str = "update", *, ref: str = "") -> GitDecision:
    """Decide what ``operation`` (update | switch_version to ``ref``) does with ``pack``'s checkout."""
    git = ops.manager.git
    path = Path(pack.path)
    st = git.state(path)
    facts: dict[str, Any] = {
        "commit": st.commit,
        "branch": st.branch,
        "detached": st.detached or not st.branch,
        "remote_url": st.remote_url,
        "shallow": git.is_shallow(path),
    }
    notes: list[str] = []

    changed = git.local_changes(path)
    facts["edited_files"] = changed[:50]
    if changed:
        err: ManagerError = GitLocalChanges(
            f"{pack.name} has local changes in {len(changed)} file(s): {', '.join(changed[:5])}; "
            f"{operation} refuses rather than overwrite, stash or merge them",
            hint=f"Keep them aside yourself (git -C {path} stash, or commit them), or discard them "
            f"(git -C {path} checkout -- .), then run {operation} again.",
            details={"path": str(path), "files": changed[:50], "decision": REFUSE},
        )
        return GitDecision(REFUSE, err.message, error=err, facts=facts)

    if facts["shallow"]:
        notes.append(
            "shallow clone: the update fetches only the new commits of its branch"
            if operation == "update"
            else "shallow clone: the full history is fetched first when the version is not known locally"
        )
    # the catalog is the manager's word on where a pack lives; the pack's pyproject when no catalog is loaded
    listed, by = _catalog_url(ops, pack), "the catalog"
    if not listed:
        listed, by = pack.repository, "the pack's pyproject.toml"
    if st.remote_url and listed and normalise_remote(listed) != normalise_remote(st.remote_url):
        notes.append(
            f"the pack's remote is {st.remote_url}, but {by} lists {listed} (the repository moved?): "
            f"{operation} fetches from the checkout's own remote; reinstall the pack to follow the listed URL"
        )
        facts["listed_url"] = listed

    needs_remote = operation == "update" or (bool(ref) and not git.knows(path, ref))
    if needs_remote:
        if not st.remote_url:
            err = GitError(
                f"{pack.name} has no remote to fetch from; {operation} refuses",
                hint=f"Add one (git -C {path} remote add origin <URL>), or reinstall the pack from its URL.",
                details={"path": str(path), "reason": "no_remote", "decision": REFUSE},
            )
            return GitDecision(REFUSE, err.message, error=err, facts=facts)
        if _local_remote_gone(st.remote_url):
            err = GitError(
                f"{pack.name}'s remote {st.remote_url} no longer exists; {operation} refuses",
                hint=f"Point it at the new place (git -C {path} remote set-url origin <URL>), or reinstall the pack.",
                details={"path": str(path), "reason": "remote_missing", "url": st.remote_url, "decision": REFUSE},
            )
            return GitDecision(REFUSE, err.message, error=err, facts=facts)

    if operation == "update" and facts["detached"]:
        branch = git.default_branch(path)
        head = git.branch_head(path, branch) if branch else ""
        if not branch or not head:
            err = GitDetachedHead(
                f"{pack.name} is pinned to {st.commit[:12]} (detached HEAD) and no default branch is known locally; "
                "update refuses",
                hint="Switch it to a branch first (switch_version nightly or a branch name), then update.",
                details={"path": str(path), "commit": st.commit, "decision": REFUSE},
            )
            return GitDecision(REFUSE, err.message, error=err, facts=facts)
        if not git.contains(path, st.commit, head):
            err = GitDetachedHead(
                f"{pack.name} is pinned to {st.commit[:12]}, which is not in the history of {branch}: checking "
                f"{branch} out would leave that commit behind; update refuses",
                hint=f"Keep it on a branch of its own (git -C {path} switch -c <name>), or switch_version to {branch}.",
                details={"path": str(path), "commit": st.commit, "branch": branch, "decision": REFUSE},
            )
            return GitDecision(REFUSE, err.message, error=err, facts=facts)
        reason = (
            f"{pack.name} is pinned to {st.commit[:12]} (detached HEAD): update checks out its default branch "
            f"{branch} and fast-forwards it; {st.commit[:12]} is the rollback point"
        )
        return GitDecision(CHECKOUT_BRANCH, reason, branch=branch, notes=tuple(notes), facts=facts)
    what = "fast-forward its branch" if operation == "update" else f"check out {ref}"
    return GitDecision(PROCEED, f"{pack.name}: {what}", notes=tuple(notes), facts=facts)
