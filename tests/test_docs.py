"""The README stays a short guide, and its links and commands lead somewhere.

The commands themselves run in the tests of what they do: the demo in
test_demo, the TF 1.x examples in test_contrib_examples, `saved_model_cli`
in test_serving, the distributed jobs in test_distributed, the benchmarks in
test_benchmarks. Here: the README begins with the two commands, every link of
the README and of `docs/` points to a file that exists, every page of `docs/`
is linked from the README, and every `python -m` names a module there is.
"""
import importlib.util
import pathlib
import re

import pytest

_ROOT = pathlib.Path(__file__).resolve().parent.parent
_README = _ROOT / 'README.md'
_PAGES = sorted((_ROOT / 'docs').glob('*.md'))
# A newcomer reads the README in ten minutes (usage, the three capabilities
# beyond the reference, the differences table); chapters go to docs/.
_README_MAX_LINES = 250

_LINK = re.compile(r'\]\(([^)#\s]+)(?:#[^)]*)?\)')
_CODE_BLOCK = re.compile(r'^```[^\n]*\n(.*?)^```', re.DOTALL | re.MULTILINE)
_PYTHON_MODULE = re.compile(r'python\S* -m ([\w.]+)')


def _relative_links(page):
  return [target for target in _LINK.findall(page.read_text())
          if '://' not in target]


def test_docs_pages_exist():
  assert {page.name for page in _PAGES} >= {
      'migration.md', 'serving.md', 'tpu.md', 'distributed.md',
      'benchmarks.md', 'bazel.md', 'layout.md'}


def test_readme_begins_with_the_two_commands():
  first_block = _CODE_BLOCK.search(_README.read_text()).group(1)
  commands = [line.split('#')[0].strip() for line in first_block.splitlines()]
  assert commands == ['python3.11 run.py demo', 'python3.11 run.py test']
  assert _README.read_text().index('```') < _README.read_text().index('\n## ')


def test_readme_is_short():
  lines = len(_README.read_text().splitlines())
  assert lines <= _README_MAX_LINES, (
      f'README.md has {lines} lines; move long chapters to docs/ and link '
      'them from the README.')


@pytest.mark.parametrize('page', [_README] + _PAGES,
                         ids=lambda page: page.name)
def test_relative_links_point_to_files(page):
  for target in _relative_links(page):
    assert (page.parent / target).exists(), f'{page.name} links {target}'


def test_readme_links_every_docs_page():
  linked = {(_ROOT / target).resolve() for target in _relative_links(_README)}
  assert set(_PAGES) <= linked
  assert (_ROOT / 'LICENSE').resolve() in linked


@pytest.mark.parametrize('page', [_README] + _PAGES,
                         ids=lambda page: page.name)
def test_python_modules_in_commands_exist(page):
  modules = {module
             for block in _CODE_BLOCK.findall(page.read_text())
             for module in _PYTHON_MODULE.findall(block)}
  for module in modules:
    assert importlib.util.find_spec(module) is not None, (
        f'{page.name} runs `python -m {module}`, which does not exist')


def test_license_is_apache_2_with_the_copyright_line():
  text = (_ROOT / 'LICENSE').read_text()
  assert text.startswith('Copyright 2026 The tensorflow-multihead Authors.\n')
  assert 'Apache License\n                           Version 2.0' in text
  assert 'END OF TERMS AND CONDITIONS' in text
