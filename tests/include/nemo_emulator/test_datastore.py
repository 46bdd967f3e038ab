"""The Data Store with the real huggingface_hub client, and its file store."""

from __future__ import annotations

import pytest
from huggingface_hub import HfApi, hf_hub_download
from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

from include.nemo_emulator.datastore import DataStore, DataStoreError, git_blob_sha1


def test_huggingface_hub_round_trip(emu, samples, tmp_path):
    api = HfApi(endpoint=emu.hf_endpoint, token="any-token")
    url = api.create_repo("fw/flywheel-train-w-run1", repo_type="dataset")
    assert url.repo_id == "fw/flywheel-train-w-run1"
    api.create_repo("fw/flywheel-train-w-run1", repo_type="dataset", exist_ok=True)
    with pytest.raises(HfHubHTTPError):
        api.create_repo("fw/flywheel-train-w-run1", repo_type="dataset")  # 409 without exist_ok

    train = samples.jsonl(samples.training_rows(3))
    commit = api.upload_file(path_or_fileobj=train, path_in_repo="training/train_data.jsonl",
                             repo_id="fw/flywheel-train-w-run1", repo_type="dataset")
    folder = tmp_path / "upload"
    (folder / "validation").mkdir(parents=True)
    (folder / "validation" / "val_data.jsonl").write_bytes(samples.jsonl(samples.training_rows(1)))
    (folder / "eval_data.jsonl").write_bytes(samples.jsonl(samples.eval_records(2)))
    second = api.upload_folder(folder_path=folder, repo_id="fw/flywheel-train-w-run1", repo_type="dataset")
    assert second.oid != commit.oid

    assert sorted(api.list_repo_files("fw/flywheel-train-w-run1", repo_type="dataset")) == [
        "eval_data.jsonl", "training/train_data.jsonl", "validation/val_data.jsonl"]
    assert api.file_exists("fw/flywheel-train-w-run1", "eval_data.jsonl", repo_type="dataset")
    assert not api.file_exists("fw/flywheel-train-w-run1", "missing.jsonl", repo_type="dataset")
    assert api.repo_exists("fw/flywheel-train-w-run1", repo_type="dataset")
    assert not api.repo_exists("fw/nope", repo_type="dataset")
    info = api.repo_info("fw/flywheel-train-w-run1", repo_type="dataset")
    assert info.sha == second.oid and len(info.siblings) == 3

    path = hf_hub_download("fw/flywheel-train-w-run1", "training/train_data.jsonl", repo_type="dataset",
                           endpoint=emu.hf_endpoint, token="x", cache_dir=tmp_path / "cache")
    with open(path, "rb") as handle:
        assert handle.read() == train
    # The same content again is a no-op commit: the client compares the oid the server reports.
    unchanged = api.upload_file(path_or_fileobj=train, path_in_repo="training/train_data.jsonl",
                                repo_id="fw/flywheel-train-w-run1", repo_type="dataset")
    assert unchanged.oid == second.oid


def test_uploading_to_a_missing_repo_raises_repository_not_found(emu):
    api = HfApi(endpoint=emu.hf_endpoint, token="t")
    with pytest.raises(RepositoryNotFoundError):
        api.upload_file(path_or_fileobj=b"x", path_in_repo="a.txt", repo_id="fw/missing", repo_type="dataset")


def test_store_rejects_paths_that_escape_the_repo(tmp_path):
    store = DataStore(tmp_path)
    store.create_repo("dataset", "fw/a")
    with pytest.raises(DataStoreError, match="without '..'"):
        store.commit("dataset", "fw/a", {"../../evil.txt": b"x"}, [], [])
    with pytest.raises(DataStoreError, match="invalid repo name"):
        store.create_repo("dataset", "fw/../x")
    assert not (tmp_path / "evil.txt").exists()


def test_store_commit_deletes_and_reports_git_oids(tmp_path):
    store = DataStore(tmp_path)
    assert store.create_repo("dataset", "fw/a") and not store.create_repo("dataset", "fw/a")
    store.commit("dataset", "fw/a", {"dir/x.jsonl": b"1\n", "y.jsonl": b"2\n"}, [], [])
    assert store.file_oid("dataset", "fw/a", "y.jsonl") == git_blob_sha1(b"2\n")
    # git's id of a blob: sha1("blob <size>\0<content>"), the value `git hash-object` prints.
    assert git_blob_sha1(b"hello\n") == "ce013625030ba8dba906f756967f9e9ca394464a"
    store.commit("dataset", "fw/a", {}, ["y.jsonl"], ["dir"])
    assert store.list_files("dataset", "fw/a") == []
    with pytest.raises(DataStoreError, match="doesn't exist"):
        store.commit("dataset", "fw/a", {}, ["y.jsonl"], [])
    with pytest.raises(DataStoreError) as missing:
        store.read_file("dataset", "fw/a", "y.jsonl")
    assert missing.value.code == "EntryNotFound"
