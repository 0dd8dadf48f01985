"""The shared adapter store (sft.results.adapters): the marker is written last, a failed or killed publish
leaves nothing usable and its leftovers are cleared, the lock excludes other holders and dies with its
holder, and keys cannot leave the results folder."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from helpers import REPO
from helpers.adapters import ready_marker

from sft.results.adapters import READY, STORE, SharedAdapter

KEY = "ab" * 32


def save_files(folder: Path) -> None:
    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text("{}")
    (folder / "adapter_model.safetensors").write_bytes(b"weights")


def test_publish_moves_the_adapter_into_place_then_writes_the_marker(tmp_path):
    shared = SharedAdapter(tmp_path, KEY, 3)
    assert shared.folder == tmp_path.resolve() / STORE / KEY / "seed-3"
    assert not shared.ready() and shared.info() is None
    with shared.lock():
        seen = []

        def save(folder: Path) -> None:
            save_files(folder)
            seen.append(shared.ready())  # while saving, nothing is ready

        assert shared.publish(save, ready_marker(shared, "a")) == shared.adapter_folder
    assert seen == [False] and shared.info() == ready_marker(shared, "a")
    assert sorted(path.name for path in shared.adapter_folder.iterdir()) == [
        "adapter_config.json", "adapter_model.safetensors"
    ]  # fmt: skip
    assert sorted(path.name for path in shared.folder.iterdir()) == [".lock", "adapter", READY]


def test_a_failed_publish_leaves_no_marker_and_its_leftovers_are_cleared(tmp_path):
    shared = SharedAdapter(tmp_path, KEY, 0)

    def broken(folder: Path) -> None:
        save_files(folder)
        raise OSError("disk full")

    with shared.lock(), pytest.raises(OSError):
        shared.publish(broken, ready_marker(shared, "b"))
    assert not shared.ready() and not any(shared.folder.glob(".staging-*"))  # a failed save removes its files
    (shared.folder / "adapter").mkdir()  # e.g. an adapter whose marker never came
    (shared.folder / ".staging-1").mkdir()  # e.g. a publisher killed with SIGKILL while saving
    with shared.lock():
        shared.clear_leftovers()
    assert sorted(path.name for path in shared.folder.iterdir()) == [".lock"]


def test_the_lock_excludes_another_holder(tmp_path):
    shared = SharedAdapter(tmp_path, KEY, 0)
    assert not shared.locked_elsewhere()
    with shared.lock():
        assert shared.locked_elsewhere()  # flock is per open file: another open of the lock conflicts
    assert not shared.locked_elsewhere()


@pytest.mark.parametrize("key", ["../../etc", "ABC", "a" * 8, "a/b" + "0" * 20])
def test_keys_are_hex_digests(tmp_path, key):
    with pytest.raises(ValueError, match="hex digest"):
        SharedAdapter(tmp_path, key, 0)


@pytest.mark.slow
def test_a_holder_killed_while_publishing_releases_the_lock_and_leaves_no_marker(tmp_path):
    script = textwrap.dedent(
        f"""
        import time
        from pathlib import Path
        from sft.results.adapters import SharedAdapter
        shared = SharedAdapter(Path({str(tmp_path)!r}), {KEY!r}, 0)
        def save(folder):
            folder.mkdir(parents=True)
            (folder / "adapter_config.json").write_text("{{}}")
            print("saving", flush=True)
            time.sleep(60)
        with shared.lock():
            shared.publish(save, {{}})
        """
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=env)
    assert child.stdout.readline().strip() == "saving"
    shared = SharedAdapter(tmp_path, KEY, 0)
    assert shared.locked_elsewhere()
    child.send_signal(signal.SIGKILL)
    child.wait()
    began = time.time()
    with shared.lock():  # the kernel dropped the dead holder's lock: no stale lock to break
        assert time.time() - began < 5
        assert not shared.ready()
        shared.clear_leftovers()
        shared.publish(save_files, ready_marker(shared, "rerun"))
    assert shared.info() == ready_marker(shared, "rerun")
