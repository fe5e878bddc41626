"""gitops/repo.py against real bare repositories: commit, idempotence, push retry, concurrency, faults."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from allora_gitops import constants as C
from allora_gitops.errors import GitOpsError
from allora_gitops.gitops.repo import RepoCache, TreeChange, parse_remote, persist
from allora_gitops.redact import display_url, redact_urls_in_text
from tests.conftest import REPO_ROOT
from tests.fixtures.git import git, remote_branches, remote_file, remote_log


def test_redact_url_drops_credentials():
    assert display_url("https://user:s3cret@git.example.com/a/b.git") == "https://user:***@git.example.com/a/b.git"
    assert display_url("https://ghp_T0KEN@git.example.com/a/b.git") == "https://***@git.example.com/a/b.git"
    assert display_url("https://git.example.com/a/b.git") == "https://git.example.com/a/b.git"
    assert "s3cret" not in parse_remote("https://x:s3cret@h/r.git").display


def test_persist_commits_on_a_new_branch_from_main(gitops_remote):
    remote = parse_remote(gitops_remote)
    main_before = git(gitops_remote, "rev-parse", "main").strip()
    result = persist(remote, TreeChange(files={"deployments/a/x.yaml": "a: 1\n"}), branch="deploy/a/testnet/1.0.0", message="deploy a\n")
    assert result.created and result.pushed and not result.branch_existed
    assert result.changed == [("A", "deployments/a/x.yaml")]
    assert remote_file(gitops_remote, "deploy/a/testnet/1.0.0", "deployments/a/x.yaml") == "a: 1\n"
    assert git(gitops_remote, "rev-parse", "main").strip() == main_before  # main untouched
    author = git(gitops_remote, "log", "-1", "--format=%an <%ae>|%s", "deploy/a/testnet/1.0.0").strip()
    assert author == f"{C.COMMIT_AUTHOR_NAME} <{C.COMMIT_AUTHOR_EMAIL}>|deploy a"
    assert git(gitops_remote, "rev-parse", "deploy/a/testnet/1.0.0^").strip() == main_before


def test_same_tree_twice_makes_no_second_commit(gitops_remote):
    remote = parse_remote(gitops_remote)
    change = TreeChange(files={"deployments/a/x.yaml": "a: 1\n"})
    first = persist(remote, change, branch="main", message="one\n")
    second = persist(remote, change, branch="main", message="one\n")
    assert first.created and not second.created
    assert second.commit == first.commit and second.changed == []
    assert remote_log(gitops_remote)[0] == "one"
    assert len(remote_log(gitops_remote)) == 2


def test_replace_dirs_drop_stale_files_and_delete_dirs_remove(gitops_remote):
    remote = parse_remote(gitops_remote)
    persist(remote, TreeChange(files={"deployments/a/base/x.yaml": "1\n", "deployments/a/base/old.yaml": "2\n", "keep.txt": "k\n"}), branch="main", message="m1\n")
    r = persist(remote, TreeChange(files={"deployments/a/base/x.yaml": "1\n"}, replace_dirs=("deployments/a/base",)), branch="main", message="m2\n")
    assert r.changed == [("D", "deployments/a/base/old.yaml")]
    r = persist(remote, TreeChange(delete_dirs=("deployments/a",)), branch="main", message="m3\n")
    assert r.changed == [("D", "deployments/a/base/x.yaml")]
    assert remote_file(gitops_remote, "main", "keep.txt") == "k\n"


def test_change_builder_sees_the_current_tip(gitops_remote):
    remote = parse_remote(gitops_remote)
    persist(remote, TreeChange(files={"counter.txt": "1\n"}), branch="main", message="c1\n")

    def bump(snapshot):
        return TreeChange(files={"counter.txt": f"{int(snapshot.read('counter.txt')) + 1}\n"})

    persist(remote, bump, branch="main", message="c2\n")
    assert remote_file(gitops_remote, "main", "counter.txt") == "2\n"


def test_dry_run_pushes_nothing_and_shows_the_file_diff(gitops_remote):
    remote = parse_remote(gitops_remote)
    before = remote_branches(gitops_remote)
    r = persist(remote, TreeChange(files={"deployments/a/x.yaml": "a: 1\n"}), branch="deploy/a", message="x\n", dry_run=True)
    assert not r.created and not r.pushed
    assert "+a: 1" in r.diff and "b/deployments/a/x.yaml" in r.diff
    assert remote_branches(gitops_remote) == before


def test_refuses_a_repository_we_did_not_initialise(tmp_path, gitops_home):
    foreign = tmp_path / "foreign.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(foreign)], check=True)
    work = tmp_path / "work"
    subprocess.run(["git", "clone", "-q", str(foreign), str(work)], check=True, capture_output=True)
    (work / "README.md").write_text("not ours\n")
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    subprocess.run(["git", "-C", str(work), "add", "."], check=True)
    subprocess.run(["git", "-C", str(work), "commit", "-qm", "x"], check=True, env=env)
    subprocess.run(["git", "-C", str(work), "push", "-q", "origin", "main"], check=True, capture_output=True)
    with pytest.raises(GitOpsError) as err:
        persist(parse_remote(foreign), TreeChange(files={"a": "b"}), branch="main", message="x\n")
    assert err.value.message == (
        f"{foreign} (branch main) is not a GitOps repository initialised by allora-gitops: "
        ".allora-gitops.yaml is missing; create one with `allora-gitops repo init`"
    )


def test_empty_repository_has_no_main(tmp_path, gitops_home):
    empty = tmp_path / "empty.git"
    subprocess.run(["git", "init", "-q", "--bare", str(empty)], check=True)
    with pytest.raises(GitOpsError, match=r"has no branch 'main'; initialise it with `allora-gitops repo init`"):
        persist(parse_remote(empty), TreeChange(files={"a": "b"}), branch="main", message="x\n")


def test_unreachable_remote_is_a_clear_error(tmp_path, gitops_home):
    with pytest.raises(GitOpsError) as err:
        persist(parse_remote(tmp_path / "nowhere.git"), TreeChange(files={"a": "b"}), branch="main", message="x\n")
    assert err.value.message.startswith(f"cannot reach the GitOps repository {tmp_path / 'nowhere.git'}: ")
    with pytest.raises(GitOpsError, match=r"^cannot reach the GitOps repository https://u:\*\*\*@127\.0\.0\.1:9/r\.git: ") as err:
        persist(parse_remote("https://u:secretpw@127.0.0.1:9/r.git"), TreeChange(files={"a": "b"}), branch="main", message="x\n")
    assert "secretpw" not in err.value.message


def test_redact_text_in_git_messages():
    assert redact_urls_in_text("fatal: unable to access 'https://u:pw@h/r.git/': 403") == "fatal: unable to access 'https://u:***@h/r.git/': 403"
    assert redact_urls_in_text("fatal: 'https://TOKEN@h/r.git/' not found") == "fatal: 'https://***@h/r.git/' not found"
    assert redact_urls_in_text("no url here") == "no url here"


def test_pre_receive_hook_rejection_is_reported_and_not_retried(gitops_remote):
    hook = gitops_remote / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\necho 'policy: deployments need two approvals' >&2\nexit 1\n")
    hook.chmod(0o755)
    before = git(gitops_remote, "rev-parse", "main").strip()
    with pytest.raises(GitOpsError) as err:
        persist(parse_remote(gitops_remote), TreeChange(files={"a": "b"}), branch="main", message="x\n")
    assert err.value.message == (
        f"{gitops_remote} refused the push to main: pre-receive hook declined (policy: deployments need two approvals)"
    )
    assert git(gitops_remote, "rev-parse", "main").strip() == before
    # the cache is still usable once the hook is gone
    hook.unlink()
    assert persist(parse_remote(gitops_remote), TreeChange(files={"a": "b"}), branch="main", message="x\n").created


def test_rejected_push_is_reapplied_on_the_new_tip(gitops_remote):
    """Someone pushes between our fetch and our push: we fetch, re-apply, and both changes survive."""
    remote = parse_remote(gitops_remote)
    other = RepoCache(remote, root=gitops_remote.parent / "other-cache")
    calls = []

    def change(snapshot):
        calls.append(snapshot.commit)
        if len(calls) == 1:  # a concurrent publisher lands first
            persist(remote, TreeChange(files={"theirs.txt": "t\n"}), branch="main", message="theirs\n", cache=other)
        return TreeChange(files={"ours.txt": "o\n"})

    r = persist(remote, change, branch="main", message="ours\n")
    assert r.attempts == 2 and r.created
    assert remote_log(gitops_remote)[:2] == ["ours", "theirs"]
    assert remote_file(gitops_remote, "main", "theirs.txt") == "t\n"
    assert remote_file(gitops_remote, "main", "ours.txt") == "o\n"


PUBLISHER = textwrap.dedent(
    """
    import json, sys
    from allora_gitops.gitops.repo import TreeChange, parse_remote, persist
    remote, path, text = sys.argv[1:4]
    r = persist(parse_remote(remote), TreeChange(files={path: text}), branch="main", message=f"add {path}\\n")
    print(json.dumps({"created": r.created, "attempts": r.attempts, "commit": r.commit}))
    """
)


def _start_publishers(remote: Path, jobs: list[tuple[str, str]], home: Path) -> list[subprocess.Popen]:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "ALLORA_GITOPS_HOME": str(home)}
    return [
        subprocess.Popen([sys.executable, "-c", PUBLISHER, str(remote), path, text], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        for path, text in jobs
    ]


@pytest.mark.slow
def test_eight_concurrent_publishers_all_land(gitops_remote, gitops_home):
    jobs = [(f"deployments/m{i}/x.yaml", f"i: {i}\n") for i in range(8)]
    procs = _start_publishers(gitops_remote, jobs, gitops_home)
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        outs.append(json.loads(out))
    assert all(o["created"] for o in outs)
    log = remote_log(gitops_remote)
    assert sorted(log[:8]) == sorted(f"add {path}" for path, _ in jobs)
    assert len(log) == 9
    for path, text in jobs:
        assert remote_file(gitops_remote, "main", path) == text


@pytest.mark.slow
def test_two_identical_concurrent_publishers_make_one_commit(gitops_remote, gitops_home, tmp_path):
    # separate caches too: the remote, not the cache, is what must arbitrate
    procs = _start_publishers(gitops_remote, [("a.txt", "same\n")], gitops_home) + _start_publishers(
        gitops_remote, [("a.txt", "same\n")], tmp_path / "other-home"
    )
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        outs.append(json.loads(out))
    assert sorted(o["created"] for o in outs) == [False, True]
    assert outs[0]["commit"] == outs[1]["commit"]
    assert remote_log(gitops_remote) == ["add a.txt", C.init_commit_message().strip()]


def test_cache_is_bare_and_has_no_leftovers_after_a_failure(gitops_remote, gitops_home):
    remote = parse_remote(gitops_remote)
    persist(remote, TreeChange(files={"a": "1\n"}), branch="main", message="x\n")
    hook = gitops_remote / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\nexit 1\n")
    hook.chmod(0o755)
    with pytest.raises(GitOpsError):
        persist(remote, TreeChange(files={"a": "2\n"}), branch="main", message="y\n")
    cache = RepoCache(remote).path
    assert cache.parent == gitops_home / C.REPO_CACHE_DIR
    assert git(cache, "rev-parse", "--is-bare-repository").strip() == "true"
    assert not [p.name for p in cache.iterdir() if p.name.startswith("allora-")]


def test_locks_left_by_a_killed_fetch_do_not_wedge_the_cache(gitops_remote, gitops_home):
    remote = parse_remote(gitops_remote)
    persist(remote, TreeChange(files={"a": "1\n"}), branch="main", message="one\n")
    cache = RepoCache(remote).path
    (cache / "shallow.lock").write_text("")
    (cache / "refs" / "remotes" / "origin" / "main.lock").write_text("")
    other = RepoCache(remote, root=gitops_home / "elsewhere")
    persist(remote, TreeChange(files={"b": "2\n"}), branch="main", message="two\n", cache=other)  # main moves: we must fetch
    assert persist(remote, TreeChange(files={"c": "3\n"}), branch="main", message="three\n").created
    assert remote_log(gitops_remote)[:3] == ["three", "two", "one"]


def test_a_corrupt_cache_is_rebuilt(gitops_remote, gitops_home):
    remote = parse_remote(gitops_remote)
    persist(remote, TreeChange(files={"a": "1\n"}), branch="main", message="one\n")
    cache = RepoCache(remote).path
    (cache / "shallow").write_text("not a commit id\n")
    persist(remote, TreeChange(files={"b": "2\n"}), branch="main", message="two\n", cache=RepoCache(remote, root=gitops_home / "elsewhere"))
    assert persist(remote, TreeChange(files={"c": "3\n"}), branch="main", message="three\n").created
    assert remote_file(gitops_remote, "main", "c") == "3\n"


def test_tree_editing_matches_what_git_index_would_write(tmp_path):
    """build_tree computes tree objects itself: they must be exactly the ones git's own index would write."""
    from allora_gitops.gitops.repo import GitDir, build_tree

    bare = tmp_path / "t.git"
    subprocess.run(["git", "init", "-q", "--bare", str(bare)], check=True)
    g = GitDir(bare)
    base_files = {
        "README.md": "r\n", "a-b/x.txt": "1\n", "a/b/c.txt": "2\n", "a/b/d.txt": "3\n", "a/e.txt": "4\n",
        "a.txt": "5\n", "deployments/m/base/k.yaml": "6\n", "deployments/m/overlays/t/k.yaml": "7\n", "z/y/x/w.txt": "8\n",
    }  # fmt: skip
    base_tree = build_tree(g, None, TreeChange(files=base_files))
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    base = subprocess.run(["git", "--git-dir", str(bare), "commit-tree", base_tree, "-m", "b"], capture_output=True, text=True, env=env, check=True).stdout.strip()
    change = TreeChange(
        files={"a/b/c.txt": "changed\n", "a/new/f.txt": "n\n", "deployments/m/base/k.yaml": "6b\n", "deployments/n/base/k.yaml": "9\n"},
        replace_dirs=("deployments/m/base",), delete_dirs=("z/y", "a/b/missing"), delete_files=("a/e.txt", "nope.txt"),
    )  # fmt: skip
    ours = build_tree(g, base, change)
    index = {"GIT_INDEX_FILE": str(tmp_path / "index"), **env}

    def git_(*args, stdin=None):
        return subprocess.run(["git", "--git-dir", str(bare), *args], input=stdin, capture_output=True, text=True, env=index, check=True).stdout

    git_("read-tree", base)
    blobs = {p: subprocess.run(["git", "--git-dir", str(bare), "hash-object", "-w", "--stdin"], input=t, capture_output=True, text=True, check=True).stdout.strip() for p, t in change.files.items()}
    removed = [p for p in git_("ls-files").split() if p.startswith(("z/y/", "deployments/m/base/")) or p in ("a/e.txt",)]
    git_("update-index", "--index-info", stdin="".join(f"0 {'0' * 40}\t{p}\n" for p in removed) + "".join(f"100644 {s}\t{p}\n" for p, s in blobs.items()))
    assert ours == git_("write-tree").strip()
    assert build_tree(g, base, TreeChange()) == subprocess.run(["git", "--git-dir", str(bare), "rev-parse", f"{base}^{{tree}}"], capture_output=True, text=True, check=True).stdout.strip()
