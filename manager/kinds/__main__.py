"""``python -m manager.kinds``: the task table as the markdown docs/architecture.md shows."""

from __future__ import annotations

from .table import KINDS


def markdown() -> str:
    rows = [
        "| kind | what it does | target | security operation (risks) | cm-cli.py | parameters |",
        "|---|---|---|---|---|---|",
    ]
    for k in KINDS:
        risks = ", ".join(r for _row, r in k.policy_rows if r)
        params = ", ".join(f"`{f.name}`" for f in k.params.fields()) or "-"
        cli = f"`{k.cli}`" if k.cli else f"(runs as `{k.runs_as}`)"
        rows.append(
            f"| `{k.name}` | {k.summary} | {k.target} | `{k.operation}`{f' ({risks})' if risks else ''} "
            f"| {cli} | {params} |"
        )
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    print(markdown(), end="")
