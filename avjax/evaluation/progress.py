"""Resumable evaluation: what a killed evaluation already computed is kept and not computed again.

Under `workdir/evaluation/<model>/`:
  `key`          the fingerprint the stored results belong to (config, the model's files, the transfer
                 source's files); a different fingerprint discards them (the model or config changed);
  `result.json`  the model's finished evaluation (written last, atomically), so a restarted evaluation
                 skips the model;
  `parts/<part>/<batch>.npz`  per-example correctness of one batch under one part of the evaluation (the
                 paper's table and sweep of a batch, or one (setting, attack) of the standard protocol),
                 each written atomically as it completes and removed once `result.json` exists.
Only process 0 writes; every process reads, so with many hosts the workdir must be shared (as for the
training checkpoints).
"""
import hashlib
import json
import logging
import os
import shutil

import jax
import numpy as np

log = logging.getLogger(__name__)

KEY, RESULT, PARTS = "key", "result.json", "parts"


def directory_digest(path) -> str:
    """SHA-256 over the relative paths and contents of every file under `path` (a model directory)."""
    h = hashlib.sha256()
    path = os.fspath(path)
    for root, dirs, files in os.walk(path):
        dirs.sort()
        for name in sorted(files):
            full = os.path.join(root, name)
            h.update(os.path.relpath(full, path).encode() + b"\0")
            with open(full, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
    return h.hexdigest()


def fingerprint(config_json: str, model_path, transfer_path=None) -> str:
    h = hashlib.sha256(config_json.encode())
    h.update(directory_digest(model_path).encode())
    if transfer_path is not None:
        h.update(b"transfer" + directory_digest(transfer_path).encode())
    return h.hexdigest()


def _atomic_write(path, write):
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class ModelProgress:
    """The stored evaluation of one model (see the module docstring); `get`/`put` are the batch cache."""

    def __init__(self, workdir, name: str, key: str):
        self.root = os.path.join(os.fspath(workdir), "evaluation", name)
        self.writer = jax.process_index() == 0
        self.hits = 0
        stored = None
        if os.path.exists(os.path.join(self.root, KEY)):
            with open(os.path.join(self.root, KEY)) as f:
                stored = f.read().strip()
        if stored != key and self.writer:
            if stored is not None:
                log.warning("%s: stored evaluation of %s belongs to another config or model; evaluating again",
                            self.root, name)
                shutil.rmtree(self.root)
            os.makedirs(self.root, exist_ok=True)
            _atomic_write(os.path.join(self.root, KEY), lambda f: f.write(key.encode()))
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils
            multihost_utils.sync_global_devices(f"avjax-evaluation-progress-{name}")

    def result(self):
        """The finished evaluation, or None."""
        path = os.path.join(self.root, RESULT)
        if not os.path.exists(path):
            return None
        with open(path) as f:
            return json.load(f)

    def finish(self, result: dict):
        if self.writer:
            data = json.dumps(result).encode()
            _atomic_write(os.path.join(self.root, RESULT), lambda f: f.write(data))
            shutil.rmtree(os.path.join(self.root, PARTS), ignore_errors=True)
        return json.loads(json.dumps(result))  # what a resumed evaluation reads back: identical reports

    def _part_path(self, part: str, index: int):
        return os.path.join(self.root, PARTS, part.replace("/", "__"), f"{index}.npz")

    def get(self, part: str, index: int):
        """{name: array} stored for batch `index` of `part`, or None."""
        path = self._part_path(part, index)
        if not os.path.exists(path):
            return None
        with np.load(path) as stored:
            self.hits += 1
            return {k: stored[k] for k in stored.files}

    def put(self, part: str, index: int, arrays: dict):
        if self.writer:
            path = self._part_path(part, index)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            _atomic_write(path, lambda f: np.savez(f, **arrays))


class NoProgress:
    """The batch cache of an evaluation that stores nothing (library calls, tests)."""

    def get(self, part, index):
        return None

    def put(self, part, index, arrays):
        pass
