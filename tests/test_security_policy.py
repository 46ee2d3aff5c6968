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
        )
    },
    (sec.INSTALL_MODEL, sec.RISK_MODEL_CATALOG): ["N", "Y", "Y", "Y", "N", "Y", "Y", "Y"],
    # classic "high" model rule: weak anywhere, normal- on loopback only
    (sec.INSTALL_MODEL, sec.RISK_MODEL_URL): ["N", "N", "Y", "Y", "N", "N", "N", "Y"],
    # the dedicated flag routes ignore the level, need loopback
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


def _settings(level: str, listener: str, flags: dict[str, bool], **kw) -> SecuritySettings:
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
