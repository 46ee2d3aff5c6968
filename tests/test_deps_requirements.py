"""requirements.txt parsing: accepted forms, refused options and sources, errors naming the line."""

from __future__ import annotations

from pathlib import Path

import pytest

from manager.deps.errors import DepsRequirementInvalid, DepsSourceNotAllowed
from manager.deps.requirements import (
    SourceRules,
    logical_lines,
    parse_requirement_lines,
    parse_requirements_file,
    under_prefix,
)
from support.wheels import build_wheel


def pack_with(tmp_path: Path, text: str, name: str = "ComfyUI-Test") -> Path:
    pack = tmp_path / name
    pack.mkdir(parents=True, exist_ok=True)
    (pack / "requirements.txt").write_text(text, encoding="utf-8")
    return pack


def parse(pack: Path, rules: SourceRules = SourceRules()):
    return parse_requirements_file(pack / "requirements.txt", pack=pack.name, pack_dir=pack, rules=rules)


def test_names_specifiers_markers_extras_comments_and_continuations(tmp_path):
    pack = pack_with(
        tmp_path,
        "\ufeff# a comment\n\nnumpy>=1.24,<2  # inline comment\n"
        "Pillow\nopencv_python_headless [contrib] == 4.9.0.80 ; sys_platform != 'win32'\n"
        "scipy>=1.0,\\\n    <2\n",
    )
    parsed = parse(pack)
    got = {r.name: r for r in parsed.requirements}
    assert list(got) == ["numpy", "pillow", "opencv-python-headless", "scipy"]
    assert str(got["numpy"].requirement.specifier) == "<2,>=1.24"
    assert got["numpy"].origin.line_no == 3
    ocv = got["opencv-python-headless"].requirement
    assert ocv.extras == {"contrib"} and str(ocv.marker) == 'sys_platform != "win32"'
    assert got["scipy"].origin.line_no == 6 and str(got["scipy"].requirement.specifier) == "<2,>=1.0"


def test_logical_lines_keep_url_fragments():
    lines = logical_lines("pkg @ https://h/x.whl#sha256=ab  # note\n")
    assert lines == [(1, "pkg @ https://h/x.whl#sha256=ab")]


def test_include_inside_pack_is_followed_once_even_in_a_cycle(tmp_path):
    pack = pack_with(tmp_path, "-r extra/more.txt\nalpha\n")
    (pack / "extra").mkdir()
    (pack / "extra" / "more.txt").write_text("--requirement ../requirements.txt\nbeta==1.0\n")
    parsed = parse(pack)
    assert [r.name for r in parsed.requirements] == ["beta", "alpha"]
    assert parsed.requirements[0].origin.file == "extra/more.txt"


def test_include_outside_pack_is_refused_naming_the_line(tmp_path):
    (tmp_path / "secret.txt").write_text("evil\n")
    pack = pack_with(tmp_path, "alpha\n-r ../secret.txt\n")
    with pytest.raises(DepsRequirementInvalid) as info:
        parse(pack)
    err = info.value
    assert "ComfyUI-Test: requirements.txt line 2" in err.message and "-r ../secret.txt" in err.message
    assert err.details == {"pack": "ComfyUI-Test", "file": "requirements.txt", "line_no": 2, "line": "-r ../secret.txt"}


@pytest.mark.parametrize(
    "line, fragment",
    [
        ("-e git+https://github.com/x/y#egg=y", "editable installs"),
        ("--editable=.", "editable installs"),
        ("-c constraints.txt", "constraints files"),
        ("--global-option=--build-option", "option --global-option is not allowed"),
        ("--prefix /usr", "option --prefix is not allowed"),
        ("--target=/tmp/x", "option --target is not allowed"),
        ("--user", "option --user is not allowed"),
        ("-r other.txt --index-url https://x/simple", "more than one option"),
        ("alpha --install-option=--prefix=/x", "per-requirement option --install-option"),
        ("numpy>>1", "not a valid requirement"),
        ("-", "option - is not allowed"),
    ],
)
def test_refused_lines_name_pack_file_and_line(tmp_path, line, fragment):
    pack = pack_with(tmp_path, f"alpha\n{line}\n")
    with pytest.raises(DepsRequirementInvalid) as info:
        parse(pack)
    assert fragment in info.value.message
    assert info.value.details["line_no"] == 2 and info.value.details["pack"] == "ComfyUI-Test"
    assert info.value.hint
    assert info.value.to_dict()["code"] == "deps_requirement_invalid"


@pytest.mark.parametrize(
    "line",
    [
        "--index-url https://evil.example/simple",
        "-i https://evil.example/simple",
        "--extra-index-url=https://evil.example/simple",
        "--find-links https://evil.example/wheels/",
        "--trusted-host evil.example",
        "pkg @ https://evil.example/pkg-1.0-py3-none-any.whl",
        "https://evil.example/pkg-1.0-py3-none-any.whl",
        "git+https://evil.example/x/pkg.git#egg=pkg",
        "--extra-index-url https://pypi.corp.example.evil.com/simple",
    ],
)
def test_sources_outside_allowed_pip_sources_are_refused(tmp_path, line):
    pack = pack_with(tmp_path, f"{line}\n")
    rules = SourceRules(("https://pypi.corp.example",))
    with pytest.raises(DepsSourceNotAllowed) as info:
        parse(pack, rules)
    assert info.value.code == "deps_source_not_allowed"
    assert "line 1" in info.value.message and "allowed_pip_sources" in info.value.hint


def test_allowed_sources_pass_and_are_collected(tmp_path):
    pack = pack_with(
        tmp_path,
        "--extra-index-url https://pypi.corp.example/simple\n"
        "--trusted-host pypi.corp.example\n"
        "--find-links wheels\n"
        "internal @ https://pypi.corp.example/files/internal-1.0-py3-none-any.whl\n"
        "git+https://pypi.corp.example/git/tool.git#egg=Tool_X\n",
    )
    (pack / "wheels").mkdir()
    parsed = parse(pack, SourceRules(("https://pypi.corp.example",)))
    assert [(s.option, s.value) for s in parsed.sources] == [
        ("extra-index-url", "https://pypi.corp.example/simple"),
        ("trusted-host", "pypi.corp.example"),
        ("find-links", str((pack / "wheels").resolve())),
    ]
    assert [(r.kind, r.name) for r in parsed.requirements] == [("url", "internal"), ("url", "tool-x")]
    assert parsed.requirements[1].text.startswith("tool-x @ git+https://")


def test_allow_external_admits_any_url(tmp_path):
    pack = pack_with(tmp_path, "pkg @ https://anywhere.example/pkg-2.0-py3-none-any.whl\n")
    parsed = parse(pack, SourceRules((), allow_external=True))
    assert parsed.requirements[0].url == "https://anywhere.example/pkg-2.0-py3-none-any.whl"


def test_local_wheel_inside_pack_is_accepted_and_outside_refused(tmp_path):
    pack = pack_with(tmp_path, "./wheels/local_pkg-1.0-py3-none-any.whl\n")
    build_wheel(pack / "wheels", "local-pkg", "1.0")
    req = parse(pack).requirements[0]
    assert req.kind == "path" and req.name == "local-pkg" and Path(req.text).is_file()
    build_wheel(tmp_path / "elsewhere", "other", "1.0")
    pack2 = pack_with(tmp_path, "../elsewhere/other-1.0-py3-none-any.whl\n", name="P2")
    with pytest.raises(DepsSourceNotAllowed):
        parse(pack2)


def test_harmless_options_and_hashes_are_ignored_with_a_note(tmp_path):
    pack = pack_with(tmp_path, "--prefer-binary\nalpha==1.0 --hash=sha256:abcd\n")
    parsed = parse(pack)
    assert parsed.requirements[0].text == "alpha==1.0"
    assert any("--prefer-binary ignored" in n for n in parsed.notes)
    assert any("--hash ignored" in n for n in parsed.notes)


def test_direct_lines_are_checked_the_same_way(tmp_path):
    parsed = parse_requirement_lines(["alpha>=1", "# nothing"], pack="cli", base_dir=tmp_path)
    assert [r.name for r in parsed.requirements] == ["alpha"]
    with pytest.raises(DepsRequirementInvalid):
        parse_requirement_lines(["--index-url=x"], pack="cli", base_dir=tmp_path)


def test_prefix_boundaries():
    assert under_prefix("https://Mirror.corp/simple/x", "https://mirror.corp/simple")
    assert not under_prefix("https://mirror.corp.evil.com/simple", "https://mirror.corp")
    assert not under_prefix("https://mirror.corp:8443/simple", "https://mirror.corp")
