"""state_home(): one directory for everything the CLI keeps locally."""

from __future__ import annotations

from pathlib import Path

import pytest

from allora_gitops.state import state_dir, state_home


def test_explicit_home_wins(monkeypatch, tmp_path):
    monkeypatch.setenv("ALLORA_GITOPS_HOME", str(tmp_path / "h"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert state_home() == (tmp_path / "h").resolve()
    assert not (tmp_path / "h").exists()  # state_home() creates nothing


def test_xdg_data_home(monkeypatch, tmp_path):
    monkeypatch.delenv("ALLORA_GITOPS_HOME", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert state_home() == (tmp_path / "xdg" / "allora-gitops").resolve()


def test_default_and_relative_xdg_ignored(monkeypatch, tmp_path):
    monkeypatch.delenv("ALLORA_GITOPS_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_DATA_HOME", "relative/dir")
    assert state_home() == (tmp_path / ".local" / "share" / "allora-gitops").resolve()
    monkeypatch.delenv("XDG_DATA_HOME")
    assert state_home() == (tmp_path / ".local" / "share" / "allora-gitops").resolve()


def test_state_dir_creates_private_subdir(monkeypatch, tmp_path):
    monkeypatch.setenv("ALLORA_GITOPS_HOME", str(tmp_path / "h"))
    d = state_dir("objects")
    assert d == (tmp_path / "h" / "objects").resolve() and d.is_dir()
    assert Path(d).stat().st_mode & 0o077 == 0


def test_a_state_home_that_cannot_be_a_directory_is_one_line_naming_it(monkeypatch, tmp_path, cli_proc):
    from allora_gitops.errors import StateError

    blocker = tmp_path / "home-is-a-file"
    blocker.write_text("")
    monkeypatch.setenv("ALLORA_GITOPS_HOME", str(blocker))
    with pytest.raises(StateError) as err:
        state_dir("objects")
    assert err.value.lines() == [f"error: cannot create {blocker}/objects: Not a directory; set ALLORA_GITOPS_HOME to a writable directory"]

    env = {"ALLORA_GITOPS_HOME": str(blocker)}
    db = cli_proc("gitops", "db", "status", env={**env, "ALLORA_DATABASE_URL": ""})
    assert (db.code, db.lines) == (1, [f"error: cannot create {blocker}/postgres: Not a directory; set ALLORA_GITOPS_HOME to a writable directory"])
    bundle = Path(__file__).resolve().parent.parent / "examples" / "seasonal-profile"
    run = cli_proc("bundle", "run", bundle, env=env)
    assert run.code == 1
    assert run.lines[-1] == f"error: cannot create {blocker}/runtimes: Not a directory; set ALLORA_GITOPS_HOME to a writable directory"
