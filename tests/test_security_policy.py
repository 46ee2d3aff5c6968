"""The security policy as a matrix: every (level x listener x flags x operation/risk) cell.

Expectations are written out from the classic manager's table (classic-api.md section 3.4),
independently of manager/security.py, and every denial must name what would allow it.
"""

from __future__ import annotations

import itertools

import pytest

from manager import security as sec
from manager.errors import SecurityDenied
from manager.security import SecuritySettings, decide, enforce, is_loopback_listen, pip_spec_risk

LEVELS = ("strong", "normal", "normal-", "weak")
LISTENERS = {"loop": "127.0.0.1", "lan": "0.0.0.0"}
FLAGS = ("allow_git_url_install", "allow_pip_install", "allow_external_pip", "allow_remote_channel")
CONFIG = "/srv/comfy/user/__manager/config.ini"

# Columns: strong, normal, normal-, weak (loopback), then the same on a LAN listener.
# Y allowed, N denied, or the flag names whose conjunction (plus loopback, implied by the
# column) allows the cell.
COLUMNS = [(lvl, lis) for lis in ("loop", "lan") for lvl in LEVELS]
MATRIX: dict[tuple[str, str], list[str]] = {
    # classic "low": a registry version
    (sec.INSTALL, sec.RISK_REGISTRY): ["N", "Y", "Y", "Y", "N", "Y", "Y", "Y"],
    # classic "middle": a catalog pack / listed URL
    (sec.INSTALL, sec.RISK_CATALOG): ["N", "Y", "Y", "Y", "N", "Y", "Y", "Y"],
    (sec.REINSTALL, sec.RISK_CATALOG): ["N", "Y", "Y", "Y", "N", "Y", "Y", "Y"],
    # classic "high" on the queue route: entry gate, then the git-URL flag on loopback
    (sec.INSTALL, sec.RISK_GIT_URL): ["N"] + ["allow_git_url_install"] * 3 + ["N"] * 4,
    (sec.INSTALL, sec.RISK_LOCAL_PATH): ["N"] + ["allow_git_url_install"] * 3 + ["N"] * 4,
    **{
        (op, ""): ["N", "Y", "Y", "Y", "N", "Y", "Y", "Y"]
        for op in (
            sec.UNINSTALL,
            sec.UPDATE,
            sec.UPDATE_ALL,
            sec.FIX,
            sec.DISABLE,
            sec.ENABLE,
            sec.SWITCH_VERSION,
            sec.SNAPSHOT_RESTORE,
            sec.SNAPSHOT_REMOVE,
            sec.REBOOT,
            sec.CONFIG_WRITE,
            sec.RESTORE_TRASH,
            sec.EMPTY_TRASH,
            sec.UNDO,
        )
    },
    (sec.INSTALL_MODEL, sec.RISK_MODEL_CATALOG): ["N", "Y", "Y", "Y", "N", "Y", "Y", "Y"],
    # classic "high" model rule: weak anywhere, normal- on loopback only
    (sec.INSTALL_MODEL, sec.RISK_MODEL_URL): ["N", "N", "Y", "Y", "N", "N", "N", "Y"],
    # the dedicated flag routes ignore the level, need loopback
    # an offline bundle brings code from a file: a middle level and a loopback listener (docs/bundles.md)
    (sec.BUNDLE_IMPORT, ""): ["N", "Y", "Y", "Y", "N", "N", "N", "N"],
    (sec.INSTALL_GIT_URL, ""): ["allow_git_url_install"] * 4 + ["N"] * 4,
    (sec.INSTALL_PIP, sec.RISK_PIP_PACKAGE): ["allow_pip_install"] * 4 + ["N"] * 4,
    (sec.INSTALL_PIP, sec.RISK_PIP_EXTERNAL): ["allow_pip_install+allow_external_pip"] * 4 + ["N"] * 4,
    # ungated in the classic manager (CSRF guard only)
    **{
        (op, ""): ["Y"] * 8
        for op in (sec.READ, sec.QUEUE_CONTROL, sec.SNAPSHOT_SAVE, sec.CACHE_REFRESH, sec.USER_DATA_WRITE)
    },
    (sec.SECURITY_WRITE, ""): ["N"] * 8,
    (sec.NETWORK_MODE, sec.RISK_NET_TIGHTEN): ["Y"] * 8,
    (sec.NETWORK_MODE, sec.RISK_NET_LOOSEN): ["N", "Y", "Y", "Y", "N", "N", "N", "N"],
    (sec.CHANNEL_SELECT, sec.RISK_CHANNEL_LISTED): ["N", "Y", "Y", "Y", "N", "Y", "Y", "Y"],
    (sec.CHANNEL_SELECT, sec.RISK_CHANNEL_LOCAL): ["N", "Y", "Y", "Y", "N", "Y", "Y", "Y"],
    (sec.CHANNEL_SELECT, sec.RISK_CHANNEL_REMOTE): ["N"] + ["allow_remote_channel"] * 3 + ["N"] * 4,
}


def _expected(cell: str, flags: dict[str, bool]) -> bool:
    if cell in ("Y", "N"):
        return cell == "Y"
    return all(flags[f] for f in cell.split("+"))


# The "lan" columns are a peer inside trusted_networks; a loopback listener ignores the peer, so
# its columns ask with a peer outside them. Peers outside on a LAN listener: test_lan_stranger_*.
TRUSTED = ("10.0.0.0/8", "fd00::/8", "192.168.7.7")
PEERS = {"loop": "198.51.100.9", "lan": "10.1.2.3"}


def _settings(level: str, listener: str, flags: dict[str, bool], **kw) -> SecuritySettings:
    kw = {"trusted_networks": TRUSTED, "peer": PEERS[listener], "door": "standalone", **kw}
    return SecuritySettings(level=level, listen=LISTENERS[listener], config_path=CONFIG, **flags, **kw)


FLAG_COMBOS = [dict(zip(FLAGS, bits, strict=True)) for bits in itertools.product((False, True), repeat=len(FLAGS))]


def test_matrix_covers_every_operation():
    covered = {op for op, _risk in MATRIX}
    assert covered == set(sec.OPERATIONS)


@pytest.mark.parametrize("op,risk", sorted(MATRIX))
def test_matrix_cell(op: str, risk: str):
    checked = 0
    for (level, listener), cell in zip(COLUMNS, MATRIX[(op, risk)], strict=True):
        for flags in FLAG_COMBOS:
            d = decide(_settings(level, listener, flags), op, risk)
            want = _expected(cell, flags)
            assert d.allowed is want, (op, risk, level, listener, flags, d)
            assert d.operation == op and d.risk == risk
            if not d.allowed:
                assert d.code == "security_denied" and d.reason and d.hint
                assert CONFIG in d.hint, d.hint  # the config.ini in effect is named
            checked += 1
    assert checked == len(COLUMNS) * len(FLAG_COMBOS)


HINT_NAMES = {
    # (operation, risk, level, listener, flags) -> the exact thing the hint must name
    (sec.UNINSTALL, "", "strong", "loop", ()): "security_level = normal",
    (sec.INSTALL, sec.RISK_GIT_URL, "normal", "loop", ()): "allow_git_url_install = true",
    (sec.INSTALL, sec.RISK_GIT_URL, "normal", "lan", ("allow_git_url_install",)): "--listen 127.0.0.1",
    (sec.INSTALL_PIP, sec.RISK_PIP_PACKAGE, "weak", "loop", ()): "allow_pip_install = true",
    (sec.INSTALL_PIP, sec.RISK_PIP_EXTERNAL, "weak", "loop", ("allow_pip_install",)): "allow_external_pip = true",
    (sec.INSTALL_MODEL, sec.RISK_MODEL_URL, "normal", "loop", ()): "security_level = normal-",
    (sec.INSTALL_MODEL, sec.RISK_MODEL_URL, "normal-", "lan", ()): "--listen 127.0.0.1",
    (sec.CHANNEL_SELECT, sec.RISK_CHANNEL_REMOTE, "normal", "loop", ()): "allowed_channels",
    (sec.NETWORK_MODE, sec.RISK_NET_LOOSEN, "normal", "lan", ()): "--listen 127.0.0.1",
    (sec.SECURITY_WRITE, "", "weak", "loop", ()): "by hand",
}


@pytest.mark.parametrize("case", sorted(HINT_NAMES, key=str))
def test_denial_hint_names_the_exact_setting(case):
    op, risk, level, listener, on = case
    flags = {f: f in on for f in FLAGS}
    d = decide(_settings(level, listener, flags), op, risk)
    assert not d.allowed
    assert HINT_NAMES[case] in d.hint, d.hint


def test_allowed_lists():
    base = dict(level="normal", listen="127.0.0.1", config_path=CONFIG)
    url = "https://mirror.corp/channel"
    listed = SecuritySettings(allowed_channels=("https://mirror.corp",), **base)
    assert decide(listed, sec.CHANNEL_SELECT, sec.RISK_CHANNEL_REMOTE, source=url).allowed
    assert not decide(
        listed, sec.CHANNEL_SELECT, sec.RISK_CHANNEL_REMOTE, source="https://mirror.corp.evil.com/c"
    ).allowed
    # a listed remote channel still needs a non-strong level
    strong = SecuritySettings(**{**base, "level": "strong"}, allowed_channels=("https://mirror.corp",))
    assert not decide(strong, sec.CHANNEL_SELECT, sec.RISK_CHANNEL_REMOTE, source=url).allowed
    pip = SecuritySettings(allow_pip_install=True, allowed_pip_sources=("https://pypi.corp/simple",), **base)
    assert decide(pip, sec.INSTALL_PIP, sec.RISK_PIP_PACKAGE, source="https://pypi.corp/simple").allowed
    denied = decide(pip, sec.INSTALL_PIP, sec.RISK_PIP_PACKAGE, source="https://other.example/simple")
    assert not denied.allowed and "allowed_pip_sources" in denied.hint
    free = SecuritySettings(allow_pip_install=True, allow_external_pip=True, **base)
    assert decide(free, sec.INSTALL_PIP, sec.RISK_PIP_PACKAGE, source="https://other.example/simple").allowed


@pytest.mark.parametrize(
    "listen,loop",
    [
        ("127.0.0.1", True),
        ("::1", True),
        ("127.0.0.1,::1", True),
        ("localhost", True),
        ("[::1]", True),
        ("0.0.0.0", False),
        ("0.0.0.0,::", False),
        ("192.168.1.5", False),
        ("127.0.0.1,0.0.0.0", False),
        ("", False),
        ("not-an-address", False),
    ],
)
def test_loopback_listen(listen: str, loop: bool):
    assert is_loopback_listen(listen) is loop


def test_unknown_level_behaves_like_strong():
    s = SecuritySettings(level="medium", config_path=CONFIG)
    d = decide(s, sec.UNINSTALL)
    assert not d.allowed and "unknown" in d.reason


def test_unknown_operation_is_denied():
    assert not decide(SecuritySettings(level="weak"), "format_disk").allowed


@pytest.mark.parametrize(
    "specs,risk",
    [
        (["numpy", "requests>=2"], sec.RISK_PIP_PACKAGE),
        (["pkg[extra]==1.0; python_version>'3.8'"], sec.RISK_PIP_PACKAGE),
        (["git+https://x/y"], sec.RISK_PIP_EXTERNAL),
        (["pkg @ https://x/y.whl"], sec.RISK_PIP_EXTERNAL),
        (["--index-url", "https://x"], sec.RISK_PIP_EXTERNAL),
        (["./local"], sec.RISK_PIP_EXTERNAL),
        (["C:\\wheels\\a.whl"], sec.RISK_PIP_EXTERNAL),
    ],
)
def test_pip_spec_risk(specs, risk):
    assert pip_spec_risk(specs) == risk


def test_enforce_raises_coded_error():
    d = decide(SecuritySettings(level="strong", config_path=CONFIG), sec.FIX)
    with pytest.raises(SecurityDenied) as info:
        enforce(d, {"target": "x"})
    err = info.value
    assert err.http_status == 403 and err.code == "security_denied"
    assert err.details["operation"] == "fix" and err.details["target"] == "x"
    assert enforce(decide(SecuritySettings(), sec.FIX)).allowed


def test_settings_from_config(tmp_path):
    from manager.config import Config

    path = tmp_path / "config.ini"
    path.write_text(
        "[default]\nsecurity_level = weak\n[security]\nallow_pip_install = true\n"
        "allowed_channels = https://a.example/c\n",
        encoding="utf-8",
    )
    s = SecuritySettings.from_config(Config.load(path, env={}), "0.0.0.0")
    assert s.level == "weak" and s.allow_pip_install and not s.loopback
    assert s.allowed_channels == ("https://a.example/c",) and s.config_path == str(path)


# --- trusted_networks: who may act through a non-loopback listener ------------------------------
# Open to every peer, whatever the listener: reads, queue control, snapshot saves, cache refreshes,
# the user's own data and going towards offline. Everything else is risky.
OPEN_TO_ANY_PEER = {
    (sec.READ, ""),
    (sec.QUEUE_CONTROL, ""),
    (sec.SNAPSHOT_SAVE, ""),
    (sec.CACHE_REFRESH, ""),
    (sec.USER_DATA_WRITE, ""),
    (sec.NETWORK_MODE, sec.RISK_NET_TIGHTEN),
}


@pytest.mark.parametrize("peer", ["203.0.113.5", "10.1.2.3", "", "not-an-address", "2001:db8::5", "192.168.7.8"])
@pytest.mark.parametrize("op,risk", sorted(MATRIX))
def test_lan_stranger_may_run_nothing_risky(op: str, risk: str, peer: str):
    """A peer outside trusted_networks on a LAN listener: only the always-open cells, at any level and flags."""
    trusted = () if peer == "10.1.2.3" else TRUSTED  # the same address with an empty list
    for level in LEVELS:
        for flags in FLAG_COMBOS:
            s = _settings(level, "lan", flags, peer=peer, trusted_networks=trusted)
            d = decide(s, op, risk)
            assert d.allowed is ((op, risk) in OPEN_TO_ANY_PEER), (op, risk, level, peer, flags, d)
            if d.allowed:
                continue
            assert d.code == "security_denied" and CONFIG in d.hint, d.hint
            # the same request from inside trusted_networks: when that would pass, the hint names the key
            if decide(_settings(level, "lan", flags), op, risk).allowed:
                assert "trusted_networks" in d.hint and "trusted_networks" in d.reason, d
                assert (peer or "an unknown address") in d.reason, d.reason


def test_loopback_listener_ignores_the_peer_and_trusted_networks():
    for op, risk in MATRIX:
        for peer in (None, "", "203.0.113.5", "127.0.0.1"):
            s = SecuritySettings(level="normal", listen="127.0.0.1", peer=peer, trusted_networks=(), config_path=CONFIG)
            assert decide(s, op, risk).allowed is decide(SecuritySettings(level="normal"), op, risk).allowed


def test_a_local_caller_without_a_peer_counts_as_inside():
    """peer None is a caller on this machine (the CLI): no network peer to check."""
    s = SecuritySettings(level="normal", listen="0.0.0.0", peer=None, config_path=CONFIG)
    assert s.peer_trusted and decide(s, sec.UNINSTALL).allowed
    assert not decide(SecuritySettings(level="normal", listen="0.0.0.0", peer=""), sec.UNINSTALL).allowed


def test_trust_never_opens_the_loopback_only_operations():
    """Inside trusted_networks the level and flags decide as on any LAN listener: git URLs, pip,
    remote channels and opening the network mode stay loopback-only."""
    flags = dict.fromkeys(FLAGS, True)
    s = _settings("weak", "lan", flags)
    assert s.peer_trusted
    for op, risk in (
        (sec.INSTALL_GIT_URL, ""),
        (sec.INSTALL, sec.RISK_GIT_URL),
        (sec.INSTALL_PIP, sec.RISK_PIP_PACKAGE),
        (sec.CHANNEL_SELECT, sec.RISK_CHANNEL_REMOTE),
        (sec.NETWORK_MODE, sec.RISK_NET_LOOSEN),
    ):
        d = decide(s, op, risk)
        assert not d.allowed and "--listen 127.0.0.1" in d.hint, (op, d)


@pytest.mark.parametrize(
    "peer,networks,inside",
    [
        ("10.1.2.3", ("10.0.0.0/8",), True),
        ("10.1.2.3", ("10.1.2.3",), True),  # a bare address is one host
        ("10.1.2.4", ("10.1.2.3/32",), False),
        ("192.168.1.77", ("192.168.1.5/24",), True),  # host bits in the entry are ignored
        ("::ffff:10.1.2.3", ("10.0.0.0/8",), True),  # an IPv4 peer on a dual-stack socket
        ("fd00::1", ("fd00::/8",), True),
        ("[fd00::1]", ("fd00::/8",), True),
        ("fe80::1%eth0", ("fe80::/10",), True),
        ("fd00::1", ("10.0.0.0/8",), False),
        ("10.1.2.3", ("not-a-network", "10.0.0.0/8"), True),  # a bad entry matches nothing
        ("10.1.2.3", ("not-a-network",), False),
        ("", ("0.0.0.0/0",), False),
        ("unix-socket", ("0.0.0.0/0",), False),
        ("127.0.0.1", (), False),
        ("127.0.0.1", ("0.0.0.0/0",), True),
    ],
)
def test_peer_in_networks(peer: str, networks: tuple[str, ...], inside: bool):
    assert sec.peer_in_networks(peer, networks) is inside


def test_cli_hints_never_mention_a_server_or_listen():
    """The shell is a local user: its refusals name the setting and the file, never --listen or a restart."""
    seen = 0
    for (op, risk), _cells in MATRIX.items():
        for level in LEVELS:
            for flags in FLAG_COMBOS:
                s = SecuritySettings(level=level, listen="127.0.0.1", config_path=CONFIG, door="cli", **flags)
                d = decide(s, op, risk, source="https://other.example/simple" if op == sec.INSTALL_PIP else "")
                if d.allowed:
                    continue
                seen += 1
                low = d.hint.lower()
                assert "restart" not in low and "--listen" not in low and "server" not in low, (op, risk, d.hint)
                assert CONFIG in d.hint, d.hint
    assert seen > 100


def test_http_hints_name_the_restart_of_their_host():
    d = decide(SecuritySettings(level="strong", config_path=CONFIG, door="comfyui"), sec.UNINSTALL)
    assert "restart ComfyUI" in d.hint and CONFIG in d.hint
    d = decide(SecuritySettings(level="strong", config_path=CONFIG, door="standalone"), sec.UNINSTALL)
    assert "restart the server" in d.hint


def test_settings_carry_trusted_networks_peer_and_door(tmp_path):
    from manager.config import Config

    path = tmp_path / "config.ini"
    path.write_text("[security]\ntrusted_networks = 192.168.1.0/24, fd00::/8\n", encoding="utf-8")
    s = SecuritySettings.from_config(Config.load(path, env={}), "0.0.0.0", peer="192.168.1.40", door="comfyui")
    assert s.trusted_networks == ("192.168.1.0/24", "fd00::/8") and s.peer_trusted
    shown = s.to_dict()
    assert shown["trusted_networks"] == ["192.168.1.0/24", "fd00::/8"] and shown["peer"] == "192.168.1.40"
    assert shown["peer_trusted"] is True and shown["door"] == "comfyui"
    assert SecuritySettings.from_config(Config.load(path, env={}), "0.0.0.0").peer is None


@pytest.mark.parametrize("value", ["192.168.1.0/33", "lan", "10.0.0.0/8, *.corp", "300.1.1.1"])
def test_a_bad_trusted_network_is_a_config_problem_and_trusts_nobody(tmp_path, value):
    from manager.config import Config
    from manager.errors import ConfigError

    path = tmp_path / "config.ini"
    path.write_text(f"[security]\ntrusted_networks = {value}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:  # strict (the CLI, the server's start): refused, naming the fix
        Config.load(path, env={})
    assert info.value.code == "config_invalid" and "trusted_networks" in info.value.message
    assert "CIDR" in info.value.hint and str(path) in info.value.hint
    cfg = Config.load(path, env={}, strict=False)  # lenient (a running host): the default, and the problem listed
    problems = [p for p in cfg.problems if "trusted_networks" in str(p)]
    assert problems, cfg.problems
    assert cfg["trusted_networks"] == ()
    s = SecuritySettings.from_config(cfg, "0.0.0.0", peer="10.0.0.1")
    assert not s.peer_trusted and not decide(s, sec.UNINSTALL).allowed
