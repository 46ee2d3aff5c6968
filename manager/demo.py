"""A self-contained demo ComfyUI tree: offline mode, a local file:// channel, local git packs.

Lets a newcomer see the Manager work with no ComfyUI and no network. Re-running it keeps
what is there (it only adds missing pieces).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from .fsops import atomic_write_json, atomic_write_text

DEMO_PACKS = [
    (
        "demo-image-tools",
        "Demo Image Tools",
        "studio-a",
        "Resize, crop and colour nodes for batch work.",
        ["DemoResize", "DemoCrop"],
    ),
    ("demo-prompt-kit", "Demo Prompt Kit", "studio-a", "Prompt templating and wildcard nodes.", ["DemoPromptTemplate"]),
    (
        "demo-video-helper",
        "Demo Video Helper",
        "studio-b",
        "Load and combine frames into video.",
        ["DemoLoadVideo", "DemoCombineFrames"],
    ),
    (
        "demo-upscale-pack",
        "Demo Upscale Pack",
        "studio-b",
        "Tiled upscaling with model selection.",
        ["DemoTiledUpscale"],
    ),
    (
        "demo-mask-utils",
        "Demo Mask Utils",
        "studio-c",
        "Grow, blur and combine masks.",
        ["DemoMaskGrow", "DemoMaskBlur"],
    ),
]


def _make_git_pack(repo: Path, pack_id: str, node_names: list[str]) -> bool:
    """A real git repository with a minimal node pack; False when git is unavailable."""
    if (repo / ".git").exists():
        return True
    git = shutil.which("git")
    if git is None:
        return False
    repo.mkdir(parents=True, exist_ok=True)
    classes = "\n".join(
        f"class {n}:\n    CATEGORY = 'demo'\n    RETURN_TYPES = ()\n    FUNCTION = 'run'\n"
        f"    @classmethod\n    def INPUT_TYPES(cls):\n        return {{'required': {{}}}}\n"
        f"    def run(self):\n        return ()\n"
        for n in node_names
    )
    mapping = ", ".join(f"'{n}': {n}" for n in node_names)
    (repo / "__init__.py").write_text(f"{classes}\nNODE_CLASS_MAPPINGS = {{{mapping}}}\n", encoding="utf-8")
    (repo / "requirements.txt").write_text("", encoding="utf-8")
    env = {
        "GIT_AUTHOR_NAME": "demo",
        "GIT_AUTHOR_EMAIL": "demo@localhost",
        "GIT_COMMITTER_NAME": "demo",
        "GIT_COMMITTER_EMAIL": "demo@localhost",
        "PATH": "/usr/bin:/bin:/usr/local/bin",
    }
    for cmd in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", f"{pack_id} 1.0"]):
        subprocess.run([git, "-C", str(repo), *cmd], check=True, env=env, capture_output=True)
    return True


def create_demo_tree(base: Path) -> Path:
    """Create (or complete) the demo under ``base``; returns the ComfyUI root."""
    base = base.absolute()
    root = base / "ComfyUI"
    channel = base / "demo-channel"
    for sub in ("custom_nodes", "models/checkpoints", "models/loras", "user/__manager"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    channel.mkdir(parents=True, exist_ok=True)

    nodes, ext_map = [], {}
    for pack_id, title, author, desc, node_names in DEMO_PACKS:
        repo = base / "sources" / pack_id
        has_git = _make_git_pack(repo, pack_id, node_names)
        url = repo.as_uri()
        nodes.append(
            {
                "id": pack_id,
                "title": title,
                "author": author,
                "reference": url,
                "files": [url],
                "install_type": "git-clone" if has_git else "copy",
                "description": desc,
            }
        )
        ext_map[url] = [node_names, {"title_aux": title}]
    atomic_write_json(channel / "custom-node-list.json", {"custom_nodes": nodes})
    atomic_write_json(channel / "extension-node-map.json", ext_map)
    atomic_write_json(
        channel / "model-list.json",
        {
            "models": [
                {
                    "name": "Demo tiny checkpoint",
                    "type": "checkpoint",
                    "base": "SD1.5",
                    "save_path": "default",
                    "description": "A placeholder model entry.",
                    "reference": "",
                    "filename": "demo-tiny.safetensors",
                    "url": (base / "model-store" / "demo-tiny.safetensors").as_uri(),
                    "size": "1KB",
                }
            ]
        },
    )
    atomic_write_json(channel / "alter-list.json", {"items": []})
    atomic_write_json(channel / "github-stats.json", {})
    store = base / "model-store"
    store.mkdir(exist_ok=True)
    if not (store / "demo-tiny.safetensors").exists():
        (store / "demo-tiny.safetensors").write_bytes(b"\0" * 1024)

    manager_dir = root / "user" / "__manager"
    atomic_write_text(manager_dir / "channels.list", f"# demo channels\ndemo::{channel.as_uri()}\n")
    if not (manager_dir / "config.ini").exists():
        atomic_write_text(
            manager_dir / "config.ini",
            "[default]\n# the demo runs with no network at all\nnetwork_mode = offline\n"
            f"channel_url = {channel.as_uri()}\n\n[security]\n",
        )
    return root
