"""The package's shape: light library imports, no import circle, launch imports its own modules at the top."""

import ast
import json
import pathlib
import subprocess
import sys

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / 'smoothrl'


def _module_name(path: pathlib.Path) -> str:
  parts = path.relative_to(PACKAGE.parent).with_suffix('').parts
  return '.'.join(parts[:-1] if parts[-1] == '__init__' else parts)


def _modules() -> dict[str, ast.Module]:
  return {_module_name(p): ast.parse(p.read_text(), str(p)) for p in sorted(PACKAGE.rglob('*.py'))}


def _imported(node: ast.AST, known: set[str]) -> set[str]:
  """The smoothrl modules an import statement depends on: `from a import b` depends on a.b when that is a module,
  else on a."""
  names = set()
  if isinstance(node, ast.Import):
    names = {alias.name for alias in node.names}
  elif isinstance(node, ast.ImportFrom) and node.module:
    names = {f'{node.module}.{a.name}' if f'{node.module}.{a.name}' in known else node.module for a in node.names}
  return {n for n in names if n in known}


def test_optimizers_import_no_environment_ray_matplotlib_or_rlax_module():
  code = 'import json, sys; import smoothrl.optimizers; print(json.dumps(sorted(sys.modules)))'
  loaded = json.loads(subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True).stdout)
  heavy = (
    'rlax',
    'matplotlib',
    'ray',
    'gymnasium',
    'gymnax',
    'minatar',
    'ale_py',
    'dm_env',
    'haiku',
    'tensorboardX',
    'smoothrl.envs',
    'smoothrl.launch',
    'smoothrl.agents',
    'smoothrl.supervised',
    'sklearn',
  )
  assert not [m for m in loaded if m.split('.')[0] in heavy or m.startswith(heavy)]
  assert 'optax' in loaded and 'smoothrl.optimizers.spectral_scaling' in loaded  # it did import


def test_launch_imports_its_own_modules_at_the_top():
  modules = _modules()
  known = set(modules)
  late = []
  for name, tree in modules.items():
    if not name.startswith('smoothrl.launch'):
      continue
    for function in ast.walk(tree):
      if isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
        late += [(name, function.name) for node in ast.walk(function) if _imported(node, known)]
  assert not late, late


def test_no_import_circle():
  modules = _modules()
  known = set(modules)
  graph = {
    name: {m for node in ast.walk(tree) for m in _imported(node, known) if m != name}  # lazy ones too
    for name, tree in modules.items()
  }
  state: dict[str, str] = {}

  def visit(name: str, path: list[str]) -> None:
    state[name] = 'open'
    for other in sorted(graph[name]):
      if state.get(other) == 'open':
        raise AssertionError('import circle: ' + ' -> '.join(path + [name, other]))
      if other not in state:
        visit(other, path + [name])
    state[name] = 'done'

  for name in sorted(graph):
    if name not in state:
      visit(name, [])


def test_the_library_never_imports_launch():
  modules = _modules()
  known = set(modules)
  for name, tree in modules.items():
    if name.startswith('smoothrl.launch'):
      continue
    for node in ast.walk(tree):
      assert not any(m.startswith('smoothrl.launch') for m in _imported(node, known)), name


# What each library package may import of smoothrl (DESIGN.md's arrows): flows and games sit beside the optimisers.
_ALLOWED = {
  'smoothrl.flows': ('smoothrl.flows', 'smoothrl.curvature'),
  'smoothrl.games': ('smoothrl.games', 'smoothrl.curvature', 'smoothrl.optimizers', 'smoothrl.flows'),
}


def test_flows_and_games_import_only_the_packages_below_them():
  modules = _modules()
  known = set(modules)
  wrong = []
  for name, tree in modules.items():
    package = '.'.join(name.split('.')[:2])
    if package not in _ALLOWED:
      continue
    for node in ast.walk(tree):
      wrong += [(name, m) for m in _imported(node, known) if not m.startswith(_ALLOWED[package])]
      if isinstance(node, (ast.Import, ast.ImportFrom)):
        roots = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or '']
        wrong += [(name, r) for r in roots if r.split('.')[0] in ('haiku', 'rlax', 'sklearn', 'matplotlib')]
  assert not wrong, wrong
