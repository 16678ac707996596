"""Runs the random and stateful aggregators mirrored over two CPUs.

    python -m tests.support.aggregation_mirrored_job RESULT.json CKPT_PREFIX

Builds a TF1 graph with a global step and, in replica context of a
`MirroredStrategy` over two CPU devices (as `Estimator` calls a model_fn),
each aggregator's direction of one Jacobian, the same on both replicas (as
`MultiHead` gives it, all-reduced). Runs `STEPS` steps, the global step
incremented after each, and writes as JSON every replica's directions, the
GradVac targets held on each device, and the names a `Saver` checkpoint
holds. A process of its own, since its devices are fixed once TensorFlow
starts.
"""
import json
import sys

import numpy as np
import tensorflow as tf

from tensorflow_multihead import aggregation

STEPS = 3
SEED = 5
JACOBIAN = np.array([[1., 0.5, -1., 2.], [-2., 1., 0.5, -1.],
                     [0.5, -1.5, 1., 0.], [1., 1., -2., -0.5]])
AGGREGATORS = {
    'pcgrad': lambda: aggregation.PCGrad(seed=SEED),
    'gradvac': lambda: aggregation.GradVac(0.3, seed=SEED),
    'graddrop': lambda: aggregation.GradDrop(seed=SEED),
    'random': lambda: aggregation.Random(seed=SEED),
}


def main(result_path, checkpoint_path):
  # Before anything else starts TensorFlow, or CPU:1 is missing.
  config = tf.compat.v1.ConfigProto(device_count={'CPU': 2})
  strategy = tf.distribute.MirroredStrategy(['/cpu:0', '/cpu:1'])
  with tf.Graph().as_default():
    with strategy.scope():
      global_step = tf.compat.v1.train.get_or_create_global_step()
      aggregators = {name: make() for name, make in AGGREGATORS.items()}

      def replica_step():
        jacobian = tf.constant(JACOBIAN)
        return {name: aggregator.aggregate(jacobian)
                for name, aggregator in aggregators.items()}

      per_replica = strategy.extended.call_for_each_replica(replica_step)
      directions = {name: strategy.experimental_local_results(value)
                    for name, value in per_replica.items()}
      with tf.control_dependencies(tf.nest.flatten(directions)):
        increment = global_step.assign_add(1)
    targets = aggregators['gradvac'].targets()
    saver = tf.compat.v1.train.Saver()
    with tf.compat.v1.Session(config=config) as session:
      session.run(tf.compat.v1.global_variables_initializer())
      steps = []
      for _ in range(STEPS):
        values, _ = session.run([directions, increment])
        steps.append({name: [replica.tolist() for replica in replicas]
                      for name, replicas in values.items()})
      device_targets = [session.run(tf.convert_to_tensor(copy)).tolist()
                        for copy in targets.values]
      saver.save(session, checkpoint_path)
  saved = sorted(name for name, _ in tf.train.list_variables(checkpoint_path))
  with open(result_path, 'w', encoding='utf-8') as stream:
    json.dump({'steps': steps, 'device_targets': device_targets,
               'replicas': len(targets.values), 'saved': saved}, stream)
  return 0


if __name__ == '__main__':
  sys.exit(main(*sys.argv[1:]))
