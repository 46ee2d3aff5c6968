"""Finding the one installed pack a key names, for the verbs that act on installed packs."""

from __future__ import annotations

from ..errors import NotFound, PackAmbiguous
from ..inventory import InstalledPack, Inventory


def find_pack(inv: Inventory, key: str, *, enabled: bool | None = None, version: str | None = None) -> InstalledPack:
    """The one installed entry ``key`` names (entry name, pack id, cnr id or catalog id).

    ``enabled`` restricts to enabled/disabled entries; ``version`` picks among several.
    Raises ``NotFound`` or ``PackAmbiguous``.
    """
    found = [p for p in inv.find(key) if enabled is None or p.enabled == enabled]
    exact = [p for p in found if p.name == key]
    if exact:
        found = exact
    if version:
        found = [
            p
            for p in found
            if version in (p.version, p.cnr_version, p.commit[: len(version)] if p.commit else "")
            or (version == "nightly" and p.kind == "git")
        ]
    if not found:
        where = {True: "enabled ", False: "disabled ", None: ""}[enabled]
        raise NotFound(
            f"no {where}pack {key!r}" + (f" at version {version}" if version else "") + " is installed",
            hint="List installed packs (cm-cli.py show installed / the panel) and use the folder name shown there.",
            details={"key": key, "version": version or ""},
        )
    if len(found) > 1:
        raise PackAmbiguous(
            f"{key!r} matches {len(found)} installed entries: " + ", ".join(p.name for p in found),
            hint="Use the exact folder name, or pass `version` to pick one.",
            details={"key": key, "candidates": [p.name for p in found]},
        )
    return found[0]
