"""Checkpoints and final parameters in a safe format: numpy arrays in an `.npz` read with `allow_pickle=False`,
described by a JSON manifest. Nothing on a load path can run code.

A saved directory (`checkpoint/` while a run is unfinished, `final/` once it is done) holds

    manifest.json      {'format', 'step', 'meta', 'arrays', 'bytes', 'sha256', 'trees', 'digest'}
    arrays-<id>.npz    the leaves of every tree, keyed '<tree>/<leaf index>'

`meta` is JSON (counters, the last evaluation, random generator states); `trees` names each saved pytree with the
paths, shapes and dtypes of its leaves in `jax.tree` order; `digest` is the SHA-256 of the rest of the manifest
(`_digest`). A tree is rebuilt on a template of the run's own (`restore`), so the loader never constructs a type
that the file names. The manifest is written last and atomically, after the arrays file it names, whose size and
SHA-256 it records: a crash leaves the previous checkpoint whole, and a truncated or altered file, the manifest
included, is refused with a clear error naming it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import jax
import numpy as np

from smoothrl.launch.run.config import ConfigError
from smoothrl.launch.run.files import CHECKPOINT_DIR, LEGACY_CHECKPOINT_FILE, MODEL_DIR, atomic_file, atomic_write_text

FORMAT = 'smoothrl-arrays/1'
MANIFEST = 'manifest.json'


class CheckpointError(ConfigError):
  """A saved directory that cannot be read: truncated, altered, of another format, or of an earlier version."""


class Saved(NamedTuple):
  """What `load` reads: the step, the JSON metadata, and each tree's leaves (to `restore` on a template)."""

  step: int
  meta: dict[str, Any]
  leaves: dict[str, list[np.ndarray]]


def _sha256(path: Path) -> str:
  digest = hashlib.sha256()
  with open(path, 'rb') as f:
    for block in iter(lambda: f.read(1 << 20), b''):
      digest.update(block)
  return digest.hexdigest()


def _digest(manifest: Mapping[str, Any]) -> str:
  """The SHA-256 of a manifest's fields besides `digest`, in canonical JSON."""
  rest = {k: v for k, v in manifest.items() if k != 'digest'}
  return hashlib.sha256(json.dumps(rest, sort_keys=True, allow_nan=True).encode()).hexdigest()


def write(directory: str | os.PathLike, trees: Mapping[str, Any], meta: Mapping[str, Any], step: int = 0) -> Path:
  """Saves the pytrees `trees` (device arrays fetched to the host) and the JSON-able `meta` into `directory`
  atomically: the arrays file first, then the manifest naming it, then older arrays files are removed.

  Raises:
    TypeError: a leaf is an object array, or `meta` is not JSON-able (before anything is written).
  """
  directory = Path(directory)
  meta = json.loads(json.dumps(meta, allow_nan=True))  # refused here, not after the arrays are written
  directory.mkdir(parents=True, exist_ok=True)
  arrays, described = {}, {}
  for name, tree in trees.items():
    flat = jax.tree_util.tree_leaves_with_path(tree)
    described[name] = []
    for i, (path, leaf) in enumerate(flat):
      value = np.asarray(leaf)
      if value.dtype.hasobject:
        raise TypeError(f'{name}{jax.tree_util.keystr(path)} is an object array, which cannot be saved safely')
      arrays[f'{name}/{i}'] = value
      described[name].append({'path': jax.tree_util.keystr(path), 'shape': list(value.shape), 'dtype': value.dtype.str})
  arrays_file = directory / f'arrays-{uuid.uuid4().hex[:12]}.npz'
  with atomic_file(arrays_file, 'wb') as f:
    np.savez(f, **arrays)
  manifest = {
    'format': FORMAT,
    'step': int(step),
    'meta': meta,
    'arrays': arrays_file.name,
    'bytes': arrays_file.stat().st_size,
    'sha256': _sha256(arrays_file),
    'trees': described,
  }
  manifest['digest'] = _digest(manifest)
  atomic_write_text(directory / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True, allow_nan=True))
  for old in directory.glob('arrays-*.npz'):
    if old != arrays_file:
      old.unlink(missing_ok=True)
  return directory


_FIELDS = {
  'format': str,
  'step': int,
  'meta': dict,
  'arrays': str,
  'bytes': int,
  'sha256': str,
  'trees': dict,
  'digest': str,
}


def _described(trees: Any) -> bool:
  """Whether a manifest's `trees` is {name: [{'path', 'shape', 'dtype'}, ...]}."""
  return all(
    isinstance(leaves, list)
    and all(
      isinstance(d, dict)
      and isinstance(d.get('path'), str)
      and isinstance(d.get('dtype'), str)
      and isinstance(d.get('shape'), list)
      and all(type(n) is int and n >= 0 for n in d['shape'])
      for d in leaves
    )
    for leaves in trees.values()
  )


def read_manifest(directory: str | os.PathLike) -> dict[str, Any] | None:
  """The manifest of a saved directory, or None where there is none.

  Raises:
    CheckpointError: the manifest is unreadable, of another format, incomplete or altered (its digest differs).
  """
  path = Path(directory) / MANIFEST
  if not path.exists():
    return None
  fix = f'remove {directory} to start afresh'
  try:
    manifest = json.loads(path.read_text(encoding='utf-8'))
  except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
    raise CheckpointError(f'{path} is not a readable manifest ({e}); {fix}') from None
  if not isinstance(manifest, dict) or manifest.get('format') != FORMAT:
    raise CheckpointError(f'{path} is not a {FORMAT} manifest; {fix}')
  wrong = [k for k, kind in _FIELDS.items() if not isinstance(manifest.get(k), kind) or isinstance(manifest[k], bool)]
  if wrong or not _described(manifest['trees']):
    raise CheckpointError(
      f'{path} is an incomplete manifest ({", ".join(wrong) or "trees"} missing or malformed); {fix}'
    )
  if manifest['digest'] != _digest(manifest):
    raise CheckpointError(f'{path} is altered or corrupted (its digest differs from its contents); {fix}')
  return manifest


def read(directory: str | os.PathLike) -> Saved | None:
  """The step, metadata and leaves saved in `directory`, or None where nothing was saved.

  Raises:
    CheckpointError: the manifest or the arrays file is missing, truncated or altered.
  """
  directory = Path(directory)
  manifest = read_manifest(directory)
  if manifest is None:
    return None
  fix = f'remove {directory} to start afresh'
  arrays_file = directory / Path(str(manifest['arrays'])).name
  if not arrays_file.exists():
    raise CheckpointError(f'{directory}: the arrays file {arrays_file.name} is missing; {fix}')
  if arrays_file.stat().st_size != manifest['bytes'] or _sha256(arrays_file) != manifest['sha256']:
    raise CheckpointError(
      f'{arrays_file} is truncated or corrupted (its size or SHA-256 differs from the manifest); {fix}'
    )
  if not zipfile.is_zipfile(arrays_file):
    raise CheckpointError(f'{arrays_file} is not an .npz arrays file; {fix}')
  leaves: dict[str, list[np.ndarray]] = {}
  try:
    with np.load(arrays_file, allow_pickle=False) as z:  # an object (pickled) array raises ValueError
      for name, described in manifest['trees'].items():
        leaves[name] = [z[f'{name}/{i}'] for i in range(len(described))]
  except (ValueError, KeyError, OSError, EOFError, zipfile.BadZipFile) as e:
    raise CheckpointError(f'{arrays_file} cannot be read safely ({e}); {fix}') from None
  for name, described in manifest['trees'].items():
    for i, (x, d) in enumerate(zip(leaves[name], described)):
      if list(x.shape) != d['shape'] or x.dtype.str != d['dtype']:
        raise CheckpointError(
          f'{arrays_file}: {name}/{i} is {x.dtype}{list(x.shape)} where the manifest says '
          f'{d["dtype"]}{d["shape"]}; {fix}'
        )
  return Saved(manifest['step'], manifest['meta'], leaves)


def restore(leaves: list[np.ndarray], template: Any, where: str | os.PathLike) -> Any:
  """`template`'s pytree (arrays or `jax.ShapeDtypeStruct`s) with the saved `leaves`.

  Raises:
    ConfigError: the leaves do not fit the template, as a checkpoint written by another version of smoothrl or for
      another network may not; says which array.
  """
  wanted = jax.tree_util.tree_leaves_with_path(template)
  if len(leaves) != len(wanted):
    raise misfit(where, f'it holds {len(leaves)} arrays where the run has {len(wanted)}')
  for x, (path, y) in zip(leaves, wanted):
    if (x.shape, x.dtype) != (tuple(y.shape), np.dtype(y.dtype)):
      raise misfit(
        where,
        f'{jax.tree_util.keystr(path).lstrip(".")} is {x.dtype}{list(x.shape)}, the run needs '
        f'{np.dtype(y.dtype)}{list(y.shape)}',
      )
  return jax.tree.unflatten(jax.tree.structure(template), leaves)


def misfit(where: str | os.PathLike, detail: str) -> ConfigError:
  """The error for a checkpoint in the run directory `where` that does not fit the run, saying what differs
  (`detail`) and which directory to remove to start afresh."""
  return ConfigError(
    f'the checkpoint in {where} does not fit this run: {detail}; remove '
    f'{Path(where) / CHECKPOINT_DIR} to start the run afresh'
  )


def _refuse_legacy(run_dir: Path) -> None:
  legacy = run_dir / LEGACY_CHECKPOINT_FILE
  if legacy.exists():
    raise CheckpointError(
      f'{legacy} is a pickle checkpoint of an earlier smoothrl version; it is not loaded, as '
      'unpickling can run code. To train the run again from step 0 with its config: remove '
      f'{legacy}, then run smoothrl train --resume {run_dir}'
    )


def save(run_dir: str | os.PathLike, step: int, trees: Mapping[str, Any], meta: Mapping[str, Any]) -> Path:
  """Writes the run's checkpoint at `step` into `run_dir/checkpoint/` (see `write`)."""
  return write(Path(run_dir) / CHECKPOINT_DIR, trees, meta, step)


def load(run_dir: str | os.PathLike) -> Saved | None:
  """The run's last checkpoint, or None if it has none. Refuses a pickle checkpoint of an earlier version."""
  _refuse_legacy(Path(run_dir))
  return read(Path(run_dir) / CHECKPOINT_DIR)


def saved_step(run_dir: str | os.PathLike) -> int | None:
  """The step of the run's last checkpoint, read from its manifest alone, or None if it has none."""
  _refuse_legacy(Path(run_dir))
  manifest = read_manifest(Path(run_dir) / CHECKPOINT_DIR)
  return None if manifest is None else int(manifest['step'])


def remove(run_dir: str | os.PathLike) -> None:
  """Removes the run's checkpoint (a finished run keeps its final parameters instead)."""
  shutil.rmtree(Path(run_dir) / CHECKPOINT_DIR, ignore_errors=True)


def save_model(run_dir: str | os.PathLike, model: Mapping[str, Any]) -> Path:
  """Writes a finished run's `model` ({'arrays': pytree, 'meta': JSON-able}) into `run_dir/final/`."""
  return write(Path(run_dir) / MODEL_DIR, {'arrays': model['arrays']}, model['meta'])


def load_model(run_dir: str | os.PathLike) -> tuple[dict[str, Any], list[np.ndarray]]:
  """The metadata and array leaves of the final parameters in `run_dir/final/` (see `restore`).

  Raises:
    ConfigError: there are none (the run has not finished) or they cannot be read.
  """
  saved = read(Path(run_dir) / MODEL_DIR)
  if saved is None:
    raise ConfigError(f'{run_dir} holds no final parameters ({MODEL_DIR}/): only a finished run has them')
  return saved.meta, saved.leaves['arrays']
