"""Smoke tests of `benchmarks/`: the scripts run and their tables add up.

Each script's core function runs once at a tiny size. Op counts are
deterministic, so they are checked; seconds and steps per second are only
checked to be there, never compared.
"""
import json
import math

import numpy as np
import pytest
import tensorflow as tf

from benchmarks import common
from benchmarks import estimator_steps
from benchmarks import graph_build

pytestmark = pytest.mark.xdist_group('benchmarks')

ALL_MODES = ['train', 'eval', 'predict']


def _silent(*args, **kwargs):
  del args, kwargs


@pytest.fixture(scope='module')
def graph_rows():
  return graph_build.run([2], ALL_MODES, repeats=1, log=_silent)


@pytest.fixture(scope='module')
def estimator_rows():
  return estimator_steps.run(
      heads=2, train_steps=2, eval_steps=2, repeats=1, examples=32,
      batch_size=8, warm_up=False, log=_silent)


@pytest.fixture
def keep_tf_log_level():
  """Undoes the scripts' `main`, which quiets TensorFlow's logger."""
  level = tf.get_logger().level
  yield
  tf.get_logger().setLevel(level)


# The mixed heads.


def test_heads_cycle_through_the_six_kinds_with_unique_names():
  assert common.head_names(8) == [
      'binary_0', 'multi_class_1', 'multi_label_2', 'regression_3',
      'poisson_4', 'logistic_5', 'binary_6', 'multi_class_7']
  assert [type(head).__name__ for head in common.make_heads(7)] == [
      'BinaryClassHead', 'MultiClassHead', 'MultiLabelHead', 'RegressionHead',
      'PoissonRegressionHead', 'LogisticRegressionHead', 'BinaryClassHead']


def test_logits_dimension_adds_up_the_heads_widths():
  # 1 (binary) + 3 (3 classes) + 2 (2 labels) + 1 + 1 + 1.
  assert common.logits_dimension(6) == 9
  assert common.logits_dimension(12) == 18


def test_both_implementations_take_the_same_heads():
  assert common.multi_head_class('reference') is tf.estimator.MultiHead
  ours = common.make_multi_head('ours', 6)
  assert type(ours).__module__ == 'tensorflow_multihead.multi_head'
  assert [head.name for head in ours.heads] == common.head_names(6)
  with pytest.raises(ValueError, match='Unknown implementation'):
    common.multi_head_class('theirs')


def test_synthetic_data_fits_every_head():
  features, labels = common.synthetic_data(6, examples=5, feature_width=3)
  assert features['x'].shape == (5, 3)
  assert features['example_weight'].shape == (5, 1)
  assert {name: (value.dtype.kind, value.shape)
          for name, value in labels.items()} == {
              'binary_0': ('i', (5, 1)), 'multi_class_1': ('U', (5, 1)),
              'multi_label_2': ('i', (5, 2)), 'regression_3': ('f', (5, 1)),
              'poisson_4': ('f', (5, 1)), 'logistic_5': ('f', (5, 1))}
  assert set(np.unique(labels['multi_class_1'])) <= {'red', 'green', 'blue'}
  assert set(np.unique(labels['binary_0'])) <= {0, 1}


def test_kinds_narrow_the_mix_to_some_head_kinds():
  assert common.head_names(3, ['binary', 'poisson']) == [
      'binary_0', 'poisson_1', 'binary_2']
  assert common.logits_dimension(4, ['multi_class']) == 12
  assert common.parse_kinds('binary, logistic') == ['binary', 'logistic']
  assert common.parse_kinds('') is None
  with pytest.raises(ValueError, match=r"Unknown head kinds \['tree'\]"):
    common.parse_kinds('binary,tree')


def test_parse_flags():
  assert common.parse_ints('8, 32,128') == [8, 32, 128]
  assert common.parse_modes('Train,eval') == ['train', 'eval']
  with pytest.raises(ValueError, match='infer'):
    common.parse_modes('train,infer')


# graph_build.


def test_graph_build_has_one_row_per_mode_with_every_column(graph_rows):
  assert [(row['heads'], row['mode']) for row in graph_rows] == [
      (2, 'train'), (2, 'eval'), (2, 'predict')]
  for row in graph_rows:
    assert set(row) == {column.key for column in graph_build.COLUMNS}


def test_graph_build_counts_ops_on_both_sides(graph_rows):
  for row in graph_rows:
    assert row['reference_ops'] > 0
    assert row['ours_ops'] > 0
    assert row['ops_ratio'] == row['ours_ops'] / row['reference_ops']


def test_ours_builds_fewer_eval_ops_than_the_reference(graph_rows):
  eval_row = next(row for row in graph_rows if row['mode'] == 'eval')
  assert eval_row['ours_ops'] < eval_row['reference_ops']


def test_graph_build_reports_seconds_and_their_ratio(graph_rows):
  for row in graph_rows:
    assert math.isclose(row['time_ratio'],
                        row['ours_seconds'] / row['reference_seconds'])


def test_op_counts_do_not_vary_between_builds():
  first = graph_build.build_spec('ours', 2, 'predict')['ops']
  assert graph_build.build_spec('ours', 2, 'predict')['ops'] == first


def test_graph_build_tables_show_every_row(graph_rows):
  text = graph_build.report(graph_rows).splitlines()
  assert text[0].split() == [
      'heads', 'mode', 'ref', 'ops', 'ours', 'ops', 'ops', 'ratio', 'ref',
      's', 'ours', 's', 'time', 'ratio']
  assert len(text) == 2 + len(graph_rows)
  assert text[3].split()[:2] == ['2', 'eval']
  markdown = graph_build.markdown_report(graph_rows, ['--heads=2'])
  assert '`python -m benchmarks.graph_build --heads=2`' in markdown
  assert sum(line.startswith('| 2 |') for line in markdown.splitlines()) == 3


def test_over_target_names_each_ratio_above_0_55():
  rows = [{'heads': 8, 'mode': 'eval', 'ops_ratio': 0.5, 'time_ratio': 0.6},
          {'heads': 32, 'mode': 'train', 'ops_ratio': 0.55,
           'time_ratio': None}]
  assert graph_build.over_target(rows) == [
      '8 heads, eval: time_ratio 0.600 > 0.55 (by 0.050)']


def test_scope_of_folds_head_names_below_the_multi_head_scope():
  names = {'binary_0', 'poisson_1'}
  scope = 'binary_0_poisson_1'
  assert graph_build.scope_of(
      'binary_0_poisson_1/poisson_1/losses/Mean', scope, names) == (
          '<head>/losses')
  assert graph_build.scope_of(
      'binary_0_poisson_1/merge_pred/binary_0_1/predictions/Sigmoid', scope,
      names) == 'merge_pred/<head>'
  assert graph_build.scope_of('training/NoOp', scope, names) == 'training'
  assert graph_build.scope_of('Const_3', scope, names) == '<top>'


def test_breakdown_adds_up_to_the_op_counts(graph_rows):
  by_scope, by_type = graph_build.breakdown(2, 'predict')
  predict_row = graph_rows[2]
  for implementation in common.IMPLEMENTATIONS:
    expected = predict_row[f'{implementation}_ops']
    assert sum(by_scope[implementation].values()) == expected
    assert sum(by_type[implementation].values()) == expected


def test_graph_build_main_writes_markdown_and_json(tmp_path, capsys,
                                                   keep_tf_log_level):
  del keep_tf_log_level
  markdown, json_path = tmp_path / 'table.md', tmp_path / 'rows.json'
  assert graph_build.main(['--heads=2', '--modes=predict',
                           f'--markdown={markdown}',
                           f'--json={json_path}']) == 0
  assert 'ops ratio' in capsys.readouterr().out
  rows = json.loads(json_path.read_text())['rows']
  assert [(row['heads'], row['mode']) for row in rows] == [(2, 'predict')]
  assert '| 2 | predict |' in markdown.read_text()


def test_memory_child_prints_one_number(capsys, keep_tf_log_level):
  del keep_tf_log_level
  assert graph_build.main(['--child-memory=ours,2,predict']) == 0
  printed = capsys.readouterr().out.strip().splitlines()[-1]
  assert isinstance(json.loads(printed), float)


# estimator_steps.


def test_estimator_steps_has_a_train_and_an_eval_row(estimator_rows):
  assert [row['phase'] for row in estimator_rows] == ['train', 'eval']
  for row in estimator_rows:
    assert {column.key for column in estimator_steps.COLUMNS} <= set(row)


def test_estimator_steps_runs_every_step_on_both_sides(estimator_rows):
  for row in estimator_rows:
    assert row['reference_steps'] == 2
    assert row['ours_steps'] == 2


def test_estimator_steps_counts_graph_ops(estimator_rows):
  for row in estimator_rows:
    assert row['reference_graph_ops'] > 0
    assert row['ours_graph_ops'] > 0
  eval_row = estimator_rows[1]
  assert eval_row['ours_graph_ops'] < eval_row['reference_graph_ops']


def test_estimator_steps_ratios_divide_ours_by_the_reference(estimator_rows):
  for row in estimator_rows:
    assert math.isclose(row['speedup'], row['ours_steps_per_second'] /
                        row['reference_steps_per_second'])
    assert math.isclose(row['build_ratio'], row['ours_build_seconds'] /
                        row['reference_build_seconds'])


def test_estimator_steps_table_shows_both_phases(estimator_rows):
  lines = estimator_steps.report(estimator_rows).splitlines()
  assert len(lines) == 4
  assert [line.split()[0] for line in lines[2:]] == ['train', 'eval']
  markdown = estimator_steps.markdown_report(estimator_rows, [])
  assert '| train |' in markdown and '| eval |' in markdown


def test_step_clock_needs_two_steps_for_a_rate():
  clock = estimator_steps.StepClock()
  assert clock.steps_per_second() is None
  clock.step_ends = [1., 1.5, 2.]
  assert clock.steps_per_second() == 2.
