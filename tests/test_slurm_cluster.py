"""tools/slurm_cluster.py's safety checks, without root or daemons: it refuses to
replace SLURM files it did not write, writes nothing when it refuses, and installs
packages only when asked. (tests/test_slurm.py starts the real cluster.)"""

from __future__ import annotations

from pathlib import Path

import pytest
import slurm_cluster


@pytest.fixture
def etc(tmp_path, monkeypatch):
    """/etc/slurm moved into tmp_path; root, every binary and the munge user present;
    no command may run."""
    folder = tmp_path / "etc-slurm"
    folder.mkdir()
    monkeypatch.setattr(slurm_cluster, "ETC", folder)
    monkeypatch.setattr(slurm_cluster, "CONF", folder / "slurm.conf")
    monkeypatch.setattr(slurm_cluster, "GRES", folder / "gres.conf")
    monkeypatch.setattr(slurm_cluster.os, "geteuid", lambda: 0)
    monkeypatch.setattr(slurm_cluster, "_which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(slurm_cluster.pwd, "getpwnam", lambda name: object())

    def no_commands(cmd, env=None, timeout=60):
        raise AssertionError(f"ran {cmd}")

    monkeypatch.setattr(slurm_cluster, "_run", no_commands)
    return folder


def start(state_dir: Path, *args: str) -> int:
    return slurm_cluster.main(["start", "--state-dir", str(state_dir), *args])


@pytest.mark.parametrize("name", ["slurm.conf", "gres.conf"])
def test_start_refuses_a_slurm_config_it_did_not_write(etc, tmp_path, capsys, name):
    theirs = etc / name
    theirs.write_text("ClusterName=production\n")
    state_dir = tmp_path / "state"
    assert start(state_dir) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith(f"slurm_cluster: error: {theirs} exists and was not written by this")
    assert "refusing to replace it" in err
    assert theirs.read_text() == "ClusterName=production\n"
    assert not state_dir.exists()  # nothing written
    assert sorted(p.name for p in etc.iterdir()) == [name]


def test_its_own_config_files_do_not_stop_it(etc, tmp_path):
    for path in (etc / "slurm.conf", etc / "gres.conf"):
        path.write_text(f"{slurm_cluster.MARKER}\nNodeName=localhost\n")
    slurm_cluster._check_writable(tmp_path / "state")  # raises if it would refuse


def test_start_refuses_a_state_dir_it_did_not_make(etc, tmp_path, capsys):
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    (state_dir / "notes.txt").write_text("mine")
    assert start(state_dir) == 1
    assert "is not empty and was not made by this script" in capsys.readouterr().err
    assert [p.name for p in state_dir.iterdir()] == ["notes.txt"]
    assert list(etc.iterdir()) == []


def test_missing_packages_are_installed_only_with_install(etc, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(
        slurm_cluster, "_which", lambda name: None if name in ("slurmd", "munged") else name
    )
    state_dir = tmp_path / "state"
    assert start(state_dir) == 1  # _run (apt-get) would fail the test
    err = capsys.readouterr().err
    assert "missing Debian packages: munge slurmd" in err and "--install" in err
    assert not state_dir.exists() and list(etc.iterdir()) == []
    ran = []
    monkeypatch.setattr(slurm_cluster, "_run", lambda cmd, env=None, timeout=60: ran.append(cmd))
    with pytest.raises(slurm_cluster.ClusterError, match="still missing: munge slurmd"):
        slurm_cluster._ensure_packages(install=True)
    assert ran[0][:2] == ["apt-get", "update"]
    assert ran[1][:4] == ["apt-get", "install", "-y", "-q"] and ran[1][4:] == ["munge", "slurmd"]


def test_start_needs_root(etc, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(slurm_cluster.os, "geteuid", lambda: 1000)
    assert start(tmp_path / "state") == 1
    assert "run as root" in capsys.readouterr().err


def test_stop_without_a_cluster_is_a_no_op(etc, tmp_path):
    state_dir = tmp_path / "never-started"
    assert slurm_cluster.main(["stop", "--state-dir", str(state_dir)]) == 0
    assert not state_dir.exists()
