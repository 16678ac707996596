"""Child processes for the distributed and fault tests: start, wait, end.

A `Job` runs `tests/support/distributed_job.py` in a process of its own,
its output in a log file and what it saw in a JSON result file. Every wait
has a deadline; `jobs()` kills whatever is still running when its block
ends, whether the test passed or not.
"""
import contextlib
import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
# How long a test's processes may take, all together. Generous: it only
# bounds a hang, and a loaded 2-core machine can take minutes to start
# TensorFlow in four processes at once.
TIMEOUT_SECS = 300
POLL_SECS = 0.05


def job_command(*args):
  return [sys.executable, '-m', 'tests.support.distributed_job', *args]


def environment(tf_config=None):
  """This process's environment for a child, with `TF_CONFIG` if given."""
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2')
  env['PYTHONPATH'] = os.pathsep.join(
      [str(ROOT)] + [p for p in [env.get('PYTHONPATH')] if p])
  env.pop('TF_CONFIG', None)
  if tf_config is not None:
    env['TF_CONFIG'] = json.dumps(tf_config)
  return env


class Job:
  """One child process: its command, log and JSON result.

  Args:
    name: Names its log (`<name>.log`) and result (`<name>.json`) files.
    directory: Where those files go.
    args: `distributed_job`'s arguments, the result path left out (each
      turned into a string).
    tf_config: The `TF_CONFIG` dict of a cluster task, if any.
  """

  def __init__(self, name, directory, args, tf_config=None):
    self.name = name
    self.result_path = directory / f'{name}.json'
    self.log_path = directory / f'{name}.log'
    with open(self.log_path, 'w') as log:
      self.process = subprocess.Popen(
          job_command(str(args[0]), str(self.result_path),
                      *map(str, args[1:])),
          cwd=ROOT, env=environment(tf_config), stdout=log,
          stderr=subprocess.STDOUT)

  def log_tail(self, lines=40):
    return '\n'.join(self.log_path.read_text().splitlines()[-lines:])

  def wait(self, deadline):
    """Waits until `deadline` (monotonic) for the process; returns its status.

    A process still running then is killed and the test fails with its log.
    """
    try:
      return self.process.wait(timeout=max(deadline - time.monotonic(), 1))
    except subprocess.TimeoutExpired:
      self.stop()
      pytest.fail(f'{self.name} still ran at its deadline:\n'
                  f'{self.log_tail()}')

  def result(self, deadline):
    """Waits for the process to succeed; returns its JSON result."""
    status = self.wait(deadline)
    if status != 0:
      pytest.fail(f'{self.name} exited with {status}:\n{self.log_tail()}')
    return json.loads(self.result_path.read_text())

  def failure(self, deadline):
    """Waits for the process to fail; returns its JSON result (the error)."""
    status = self.wait(deadline)
    if status != 1:
      pytest.fail(f'{self.name} exited with {status}, not 1:\n'
                  f'{self.log_tail()}')
    return json.loads(self.result_path.read_text())

  def kill(self):
    """Sends SIGKILL, as a crashing machine would; returns once it is dead."""
    self.process.send_signal(signal.SIGKILL)
    return self.process.wait(timeout=TIMEOUT_SECS)

  def stop(self):
    if self.process.poll() is None:
      self.process.kill()
    self.process.wait(timeout=TIMEOUT_SECS)


@contextlib.contextmanager
def jobs(timeout_secs=TIMEOUT_SECS):
  """Yields a list to add `Job`s to and the time by which they must end.

  Every job still running at exit, such as a parameter server, is killed.
  """
  started = []
  try:
    yield started, time.monotonic() + timeout_secs
  finally:
    for started_job in started:
      started_job.stop()


def wait_until(condition, started_job, deadline, what):
  """Polls `condition()` until true; fails if `started_job` ends first.

  Returns `condition()`'s last value. Fails the test, with the job's log,
  when the job ends or `deadline` passes before `condition()` holds.
  """
  while True:
    value = condition()
    if value:
      return value
    if started_job.process.poll() is not None or time.monotonic() > deadline:
      started_job.result(deadline)  # Fails with the job's log if it failed.
      pytest.fail(f'{started_job.name} ended or ran out of time before '
                  f'{what}:\n{started_job.log_tail()}')
    time.sleep(POLL_SECS)


def free_loopback_ports(count):
  """Ports free on 127.0.0.1, all distinct (each held until all are found)."""
  with contextlib.ExitStack() as stack:
    sockets = []
    for _ in range(count):
      sock = stack.enter_context(socket.socket())
      sock.bind(('127.0.0.1', 0))
      sockets.append(sock)
    return [sock.getsockname()[1] for sock in sockets]


def tf_configs(trainers, with_evaluator):
  """`TF_CONFIG` for each task of a loopback cluster of `trainers` tasks.

  Args:
    trainers: Task types in the cluster, e.g. `['chief', 'worker', 'ps']`.
    with_evaluator: Whether to add an evaluator, which is not in the cluster.

  Returns:
    `{task type: TF_CONFIG dict}`.
  """
  ports = free_loopback_ports(len(trainers))
  cluster = {task: [f'127.0.0.1:{port}'] for task, port in zip(trainers, ports)}
  tasks = list(trainers) + (['evaluator'] if with_evaluator else [])
  return {task: {'cluster': cluster, 'task': {'type': task, 'index': 0}}
          for task in tasks}
