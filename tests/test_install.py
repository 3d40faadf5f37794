"""As a new user would: build the wheel, install it into a fresh venv, and run the README's
install check, quickstart and walk-through commands as written, from an empty folder.

The commands are read from the README's bash blocks (so the test follows the README), and
run at the quick size: ``nas search`` runs the ``quick`` space (the README's one-minute first
run), ``nas train`` one epoch, ``nas ablate`` one seed of half an epoch, and ``nas dashboard``
on a free port until it answers. Each must exit 0 and write what its README comment says
it writes (the files named there, ``<config_id>`` read from ``knee.yaml``), with the modes a
user expects under umask 022 (0644 files, 0755 folders); the search leaves no Ray
temporary folder behind.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import sys
import sysconfig
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"


def test_shipped_spaces_are_the_top_level_ones_byte_for_byte():
    """One content: nas/spaces/ (package data) and search_spaces/ (for users to read)."""
    shipped = sorted(p.name for p in (REPO / "nas" / "spaces").glob("*.yaml"))
    assert shipped == sorted(p.name for p in (REPO / "search_spaces").glob("*.yaml"))
    for name in shipped:
        assert (REPO / "nas/spaces" / name).read_bytes() == (
            REPO / "search_spaces" / name).read_bytes(), name


def test_docs_stand_alone():
    """No link into a folder beside the repository (a clone has only the repository)."""
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True)
    if tracked.returncode != 0:
        pytest.skip("not a git checkout")
    for name in tracked.stdout.split():
        if name.endswith((".md", ".py", ".yaml", ".toml")):
            text = (REPO / name).read_text(errors="replace")
            for ref in ("../" + "shared", "shared" + "/design"):
                assert ref not in text, (name, ref)


def readme_commands(section: str, doc: Path = README) -> list[tuple[str, str]]:
    """``(command, comment)`` of each ``nas ...`` line in the section's bash blocks."""
    text = doc.read_text()
    start = text.index(f"\n## {section}") if section else 0
    end = text.find("\n## ", start + 4) if section else -1
    body = text[start:end if end > 0 else None]
    out = []
    for block in re.findall(r"```bash\n(.*?)```", body, flags=re.S):
        if "\\\n" in block:
            continue  # a command continued over lines: an example with placeholders
        for line in block.splitlines():
            if line.startswith("nas "):
                cmd, _, comment = line.partition(" #")
                out.append((cmd.strip(), comment.strip()))
    return out


def written(comment: str) -> list[str]:
    """The paths a README comment says a command writes: ``name.ext`` and ``folder/``, a
    bare name after ``folder/`` lying in it (``runs/<config_id>/: best.pt, ...``)."""
    out, folder = [], ""
    for w in comment.split():
        w = w.strip(",;()").rstrip(":")
        if w.startswith("http"):
            continue
        if re.fullmatch(r"[\w.<>-]+(/[\w.<>-]+)*/", w):
            folder = w
            out.append(w)
        elif re.fullmatch(r"[\w.<>-]+\.(db|html|yaml|pt|json|csv)", w):
            out.append(folder + w)
    return out


def test_the_detailed_walkthrough_runs_the_readmes_commands():
    """docs/walkthrough.md explains the README's walk-through: the same commands (which the
    walk-through test below runs), none that only one of them has."""
    detailed = {c for c, _ in readme_commands("", REPO / "docs" / "walkthrough.md")}
    assert detailed == {c for c, _ in readme_commands("Walk-through")}


def test_readme_comment_parsing():
    assert written("5. runs/<config_id>/: best.pt, last.pt, config.yaml") == [
        "runs/<config_id>/", "runs/<config_id>/best.pt", "runs/<config_id>/last.pt",
        "runs/<config_id>/config.yaml"]
    assert written("1. studies.db: the study (and studies.db.artifacts/)") == [
        "studies.db", "studies.db.artifacts/"]
    assert written("2. http://127.0.0.1:8080/: the study") == []


def at_quick_size(cmd: str) -> str:
    if cmd == "nas search":
        return "nas search --space quick"
    if cmd.startswith("nas verdict"):  # two variants, two seeds: the whole command, smaller
        return f"{cmd} --seeds 2 --variants text_guidance,layer_decay"
    cmd = cmd.replace("--epochs 30", "--epochs 1")
    return cmd.replace("--seeds 3", "--seeds 1 --epochs 0.5")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _modes_of(folder: Path) -> list[str]:
    """Files not 0644 and folders not 0755 under ``folder``."""
    bad = []
    for root, dirs, files in os.walk(folder):
        for name, want in [(d, 0o755) for d in dirs] + [(f, 0o644) for f in files]:
            m = stat.S_IMODE(os.lstat(os.path.join(root, name)).st_mode)
            if m != want:
                bad.append(f"{os.path.relpath(os.path.join(root, name), folder)} {oct(m)}")
    return bad


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict[str, str]:
    """A wheel built from the source, installed into a fresh venv; the venv's environment."""
    base = tmp_path_factory.mktemp("install")
    src = base / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    shutil.copytree(REPO / "nas", src / "nas", ignore=shutil.ignore_patterns("__pycache__"))
    dist = base / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(dist), str(src)], check=True, timeout=300)
    (wheel,) = dist.glob("nas-*.whl")
    venv = base / "venv"
    # Fresh venv, on top of the test environment's packages (torch, ray, ...): a .pth line
    # per site folder, after the venv's own; not its .pth files (an editable nas).
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    py = venv / "bin" / "python"
    site = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()"
                           "['purelib'])"], capture_output=True, text=True, check=True).stdout
    parents = dict.fromkeys(sysconfig.get_paths()[k] for k in ("purelib", "platlib"))
    Path(site.strip(), "zz-test-env.pth").write_text("\n".join(parents) + "\n")
    subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-deps", "--force-reinstall",
                    str(wheel)], check=True, timeout=300)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}", VIRTUAL_ENV=str(venv),
               RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0")
    return {"venv": str(venv), "site": site.strip(), **env}


@pytest.mark.slow
def test_wheel_walkthrough_from_an_empty_folder(installed, tmp_path):
    env = dict(installed)
    venv, site = Path(env.pop("venv")), env.pop("site")
    work = tmp_path / "work"
    work.mkdir()

    def run(cmd: str, timeout: float = 600) -> subprocess.CompletedProcess:
        return subprocess.run(shlex.split(cmd), cwd=work, env=env, capture_output=True,
                              text=True, timeout=timeout, preexec_fn=lambda: os.umask(0o022))

    # nas is the wheel's (in the venv), not the source tree's
    where = run("python -c 'import nas, nas.spaces; print(nas.__file__)'")
    assert where.returncode == 0, where.stderr
    assert where.stdout.strip() == os.path.join(site, "nas", "__init__.py"), where.stdout
    assert shutil.which("nas", path=env["PATH"]) == str(venv / "bin" / "nas")

    cmds = readme_commands("Install") + readme_commands("Quickstart") + readme_commands(
        "Walk-through")
    notes: dict[str, str] = {}  # each command once, with what every mention says it writes
    for c, note in cmds:
        notes[c] = f"{notes.get(c, '')} {note}".strip()
    steps = list(notes.items())
    assert [c for c, _ in steps][:3] == ["nas spaces show gated_fusion", "nas search",
                                         "nas dashboard"]
    assert {"nas report", "nas export --pick knee"} <= {c for c, _ in steps}
    assert any(c.startswith("nas train") for c, _ in steps)
    assert any(c.startswith("nas ablate") for c, _ in steps)

    for readme_cmd, note in steps:
        cmd = at_quick_size(readme_cmd)
        if cmd == "nas dashboard":
            port = _free_port()
            p = subprocess.Popen([*shlex.split(cmd), "--port", str(port)], cwd=work, env=env,
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            try:
                deadline, ok = time.monotonic() + 120, False
                while time.monotonic() < deadline and p.poll() is None and not ok:
                    try:
                        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:
                            ok = r.status == 200
                    except OSError:
                        time.sleep(1)
                assert ok, f"{cmd}: no answer on port {port} (exit {p.poll()})"
            finally:
                p.send_signal(signal.SIGINT)
                try:
                    p.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
            continue
        t0 = time.monotonic()
        if cmd.startswith("nas search"):
            p = subprocess.Popen(shlex.split(cmd), cwd=work, env=env, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True,
                                 preexec_fn=lambda: os.umask(0o022))
            out, _ = p.communicate(timeout=900)
            res = subprocess.CompletedProcess(cmd, p.returncode, out, "")
            # the embedded Ray's temporary folder went with it
            assert not list(Path("/tmp").glob(f"nr{p.pid}-*")), "Ray's temp folder left"
        else:
            res = run(cmd)
        assert res.returncode == 0, f"{cmd}: exit {res.returncode}\n{res.stdout}\n{res.stderr}"
        print(f"{cmd}: {time.monotonic() - t0:.0f} s")
        config_id = ""
        if (work / "knee.yaml").exists():
            config_id = yaml.safe_load((work / "knee.yaml").read_text())["meta"]["config_id"]
        for path in written(note):
            f = work / path.replace("<config_id>", config_id)
            assert (f.is_dir() if path.endswith("/") else f.is_file()), f"{cmd}: no {path}"
        assert not _modes_of(work), f"{cmd}: {_modes_of(work)}"

    assert (work / "runs" / config_id / "best.pt").is_file()  # the README's <config_id>
    knee = yaml.safe_load((work / "knee.yaml").read_text())["meta"]
    assert knee["config_id"] != knee["fusion_id"]
