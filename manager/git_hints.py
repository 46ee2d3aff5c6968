"""The hint a failed git command's error carries, chosen from git's stderr (moved out of
``manager/git.py``, which runs git)."""

from __future__ import annotations


def hint_for_stderr(stderr: str) -> str:
    """What to tell the user for a failed git command, from its stderr (network, missing ref,
    missing repository, ownership, credentials)."""
    low = stderr.lower()
    if (
        "could not resolve host" in low
        or "connection refused" in low
        or "timed out" in low
        or "unable to access" in low
        or "failed to connect" in low
    ):
        return (
            "The git server could not be reached: check network_mode and the [mirrors] section "
            "(github = your mirror) in config.ini, or install from a local copy of the repository "
            "(path or file:// URL)."
        )
    if "not found in upstream" in low or "did not match any" in low or "couldn't find remote ref" in low:
        return "That branch, tag or commit does not exist in the repository; list its tags or use nightly."
    if "repository not found" in low or "does not appear to be a git repository" in low or "not found" in low:
        return "Check the repository URL (catalog entry or command line) for typos."
    if "dubious ownership" in low:
        return "git refuses a folder owned by another user: run git config --global --add safe.directory <path>."
    if "authentication" in low or "terminal prompts disabled" in low or "permission denied" in low:
        return (
            "The repository needs credentials; use a public URL, an ssh key, or a mirror in the [mirrors] "
            "section of config.ini."
        )
    return "See the git output in the error details."
