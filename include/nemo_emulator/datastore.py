"""The emulated NeMo Data Store: Hugging Face Hub-style repositories of files kept on disk.

Only the current tree of each repo is kept (no history): every commit replaces files and gets a new
commit id. Revisions other than ``main`` or the current commit id are unknown.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path

REPO_TYPES = ("dataset", "model")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,95}$")


class DataStoreError(Exception):
    """A Data Store request that cannot be served. ``code`` becomes the ``X-Error-Code`` header."""

    def __init__(self, status: int, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code


def git_blob_sha1(content: bytes) -> str:
    """The git blob id of ``content`` (what the Hub returns as a regular file's oid)."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()  # noqa: S324 - git's id, not security


@dataclass(frozen=True)
class RepoFileInfo:
    """One file of a repo: path, size and git blob id."""
    path: str
    size: int
    oid: str


def _check_name(kind: str, value: str) -> None:
    if not value or not _NAME.match(value):
        raise DataStoreError(
            400, f"invalid {kind} {value!r}: use letters, digits, '_', '.', '-' (at most 96 characters)"
        )


def _safe_relative(path: str) -> str:
    """Reject paths that would escape the repo (``..``, absolute paths)."""
    clean = path.strip("/")
    parts = clean.split("/")
    if not clean or any(part in ("", ".", "..") for part in parts):
        raise DataStoreError(400, f"invalid file path {path!r}: use a relative path without '..'")
    return clean


class DataStore:
    """Repos under ``root/<type>s/<namespace>/<name>/`` with a ``files/`` tree and ``meta.json``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self.namespaces: set[str] = set()

    # -- namespaces -------------------------------------------------------------------------------------
    def create_namespace(self, namespace: str) -> bool:
        """Create a Data Store namespace; False when it already exists."""
        _check_name("namespace", namespace)
        with self._lock:
            if namespace in self.namespaces:
                return False
            self.namespaces.add(namespace)
            return True

    # -- repos ------------------------------------------------------------------------------------------
    def _repo_dir(self, repo_type: str, repo_id: str) -> Path:
        if repo_type not in REPO_TYPES:
            raise DataStoreError(400, f"unsupported repo type {repo_type!r}; supported: {list(REPO_TYPES)}")
        namespace, _, name = repo_id.partition("/")
        _check_name("namespace", namespace)
        _check_name("repo name", name)
        return self.root / f"{repo_type}s" / namespace / name

    def _meta(self, repo_dir: Path) -> dict:
        return json.loads((repo_dir / "meta.json").read_text(encoding="utf-8"))

    def _existing(self, repo_type: str, repo_id: str) -> Path:
        repo_dir = self._repo_dir(repo_type, repo_id)
        if not (repo_dir / "meta.json").is_file():
            raise DataStoreError(
                404, f"{repo_type} repo {repo_id!r} not found: create it first (HfApi.create_repo)", "RepoNotFound"
            )
        return repo_dir

    def create_repo(self, repo_type: str, repo_id: str, private: bool = False) -> bool:
        """Create an empty repo; False when it already exists. Creates the namespace when missing."""
        with self._lock:
            repo_dir = self._repo_dir(repo_type, repo_id)
            if (repo_dir / "meta.json").is_file():
                return False
            (repo_dir / "files").mkdir(parents=True, exist_ok=True)
            now = _iso_now()
            sha = hashlib.sha1(f"{repo_type}/{repo_id}/{time.time_ns()}".encode()).hexdigest()  # noqa: S324
            meta = {"sha": sha, "created_at": now, "last_modified": now, "private": private, "commits": 0}
            (repo_dir / "meta.json").write_text(json.dumps(meta), encoding="utf-8")
            self.namespaces.add(repo_id.partition("/")[0])
            return True

    def delete_repo(self, repo_type: str, repo_id: str) -> None:
        """Delete a repo and its files; 404 when unknown."""
        with self._lock:
            shutil.rmtree(self._existing(repo_type, repo_id))

    def repo_exists(self, repo_type: str, repo_id: str) -> bool:
        """Whether the repo exists."""
        try:
            self._existing(repo_type, repo_id)
            return True
        except DataStoreError:
            return False

    def list_repos(self) -> list[tuple[str, str]]:
        """Every repo as ``(type, repo_id)``."""
        repos = []
        for type_dir in sorted(self.root.glob("*s")):
            for meta in sorted(type_dir.glob("*/*/meta.json")):
                repos.append((type_dir.name[:-1], f"{meta.parent.parent.name}/{meta.parent.name}"))
        return repos

    def check_revision(self, repo_type: str, repo_id: str, revision: str) -> str:
        """Return the commit id that ``revision`` names; 404 RevisionNotFound for anything else."""
        with self._lock:
            meta = self._meta(self._existing(repo_type, repo_id))
        if revision not in ("main", meta["sha"]):
            raise DataStoreError(
                404, f"revision {revision!r} not found in {repo_id!r}: only 'main' is kept", "RevisionNotFound"
            )
        return meta["sha"]

    def info(self, repo_type: str, repo_id: str) -> dict:
        """A Hub-style repo info body (``id``, ``sha``, ``siblings``...)."""
        with self._lock:
            repo_dir = self._existing(repo_type, repo_id)
            meta = self._meta(repo_dir)
            files = self.list_files(repo_type, repo_id)
        namespace = repo_id.partition("/")[0]
        return {
            "_id": meta["sha"][:24],
            "id": repo_id,
            "author": namespace,
            "sha": meta["sha"],
            "private": meta["private"],
            "gated": False,
            "disabled": False,
            "createdAt": meta["created_at"],
            "lastModified": meta["last_modified"],
            "tags": [],
            "downloads": 0,
            "likes": 0,
            "siblings": [{"rfilename": f.path, "size": f.size, "blobId": f.oid} for f in files],
            "usedStorage": sum(f.size for f in files),
        }

    def list_files(self, repo_type: str, repo_id: str, prefix: str = "") -> list[RepoFileInfo]:
        """The files of a repo (under ``prefix``), sorted by path."""
        with self._lock:
            files_dir = self._existing(repo_type, repo_id) / "files"
            base = files_dir / prefix if prefix else files_dir
            if not base.exists():
                return []
            paths = [base] if base.is_file() else sorted(p for p in base.rglob("*") if p.is_file())
            infos = []
            for path in paths:
                content = path.read_bytes()
                infos.append(RepoFileInfo(path.relative_to(files_dir).as_posix(), len(content), git_blob_sha1(content)))
            return infos

    def tree(self, repo_type: str, repo_id: str, path: str = "", recursive: bool = False) -> list[dict]:
        """Hub ``/tree`` entries: files (``type: file``) and folders (``type: directory``)."""
        with self._lock:
            files_dir = self._existing(repo_type, repo_id) / "files"
            base = files_dir / _safe_relative(path) if path else files_dir
            if not base.is_dir():
                raise DataStoreError(404, f"folder {path!r} not found in {repo_id!r}", "EntryNotFound")
            children = sorted(base.rglob("*") if recursive else base.iterdir())
            entries = []
            for child in children:
                rel = child.relative_to(files_dir).as_posix()
                if child.is_dir():
                    folder_oid = hashlib.sha1(rel.encode()).hexdigest()  # noqa: S324 - an id, not security
                    entries.append({"type": "directory", "path": rel, "oid": folder_oid, "size": 0})
                else:
                    content = child.read_bytes()
                    entries.append({"type": "file", "path": rel, "size": len(content), "oid": git_blob_sha1(content)})
            return entries

    def paths_info(self, repo_type: str, repo_id: str, paths: list[str]) -> list[dict]:
        """Hub ``/paths-info`` entries for the given paths (unknown paths are left out, as on the Hub)."""
        with self._lock:
            files_dir = self._existing(repo_type, repo_id) / "files"
            entries = []
            for path in paths:
                target = files_dir / _safe_relative(path)
                if target.is_file():
                    content = target.read_bytes()
                    entries.append({"type": "file", "path": path.strip("/"), "size": len(content),
                                    "oid": git_blob_sha1(content)})
                elif target.is_dir():
                    entries.append({"type": "directory", "path": path.strip("/"), "size": 0,
                                    "oid": hashlib.sha1(path.encode()).hexdigest()})  # noqa: S324
            return entries

    def read_file(self, repo_type: str, repo_id: str, path: str) -> bytes:
        """A file's bytes; 404 EntryNotFound when missing."""
        with self._lock:
            target = self._existing(repo_type, repo_id) / "files" / _safe_relative(path)
            if not target.is_file():
                raise DataStoreError(404, f"file {path!r} not found in {repo_type} repo {repo_id!r}", "EntryNotFound")
            return target.read_bytes()

    def file_oid(self, repo_type: str, repo_id: str, path: str) -> str | None:
        """The git blob id of a file, or None when it does not exist."""
        try:
            return git_blob_sha1(self.read_file(repo_type, repo_id, path))
        except DataStoreError:
            return None

    def commit(self, repo_type: str, repo_id: str, additions: dict[str, bytes], deletions: list[str],
               folder_deletions: list[str]) -> str:
        """Apply one commit atomically (under the lock) and return the new commit id."""
        with self._lock:
            repo_dir = self._existing(repo_type, repo_id)
            files_dir = repo_dir / "files"
            checked = {_safe_relative(p): content for p, content in additions.items()}
            for path in deletions:
                target = files_dir / _safe_relative(path)
                if not target.is_file():
                    raise DataStoreError(404, f"cannot delete {path!r}: A file with this name doesn't exist",
                                         "EntryNotFound")
                target.unlink()
            for path in folder_deletions:
                target = files_dir / _safe_relative(path)
                if target.is_dir():
                    shutil.rmtree(target)
            for path, content in checked.items():
                target = files_dir / path
                target.parent.mkdir(parents=True, exist_ok=True)
                tmp = target.with_name(target.name + ".tmp-upload")
                tmp.write_bytes(content)
                tmp.replace(target)
            meta = self._meta(repo_dir)
            digest = hashlib.sha1(meta["sha"].encode())  # noqa: S324 - an id, not security
            for path in sorted(checked):
                digest.update(path.encode() + b"\0" + git_blob_sha1(checked[path]).encode())
            digest.update(json.dumps(sorted(deletions + folder_deletions)).encode())
            meta["sha"] = digest.hexdigest()
            meta["last_modified"] = _iso_now()
            meta["commits"] += 1
            (repo_dir / "meta.json").write_text(json.dumps(meta), encoding="utf-8")
            return meta["sha"]

    def reset(self) -> None:
        """Delete every repo and namespace."""
        with self._lock:
            for child in self.root.iterdir():
                if child.is_dir():
                    shutil.rmtree(child)
                else:
                    child.unlink()
            self.namespaces.clear()


def _iso_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
