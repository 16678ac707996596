"""What the heads share: variables or a representation, found in the graph.

`weighting.GradNorm` and the gradient aggregators (`aggregation`) take the
parameters every head depends on as variables or as their names, and an
aggregator may take a shared representation (a tensor, or its name)
instead. Names let a canned estimator's model be used, whose variables and
tensors exist only once its `model_fn` runs; they are looked up in the graph
being built. This module checks what was given (`check_variable_types`),
finds it in the graph (`resolve_variables`, `find_representation`) and
checks, from the graph's structure, that every head's logits depend on it
(`check_heads_depend_on`): a fused group's losses come from one batched op,
so only the logits tell one head's dependence from another's.

>>> import tensorflow as tf
>>> with tf.Graph().as_default():
...   kernel = tf.compat.v1.get_variable('kernel', [2, 1])
...   logits = tf.matmul(tf.ones([3, 2]), kernel)
...   [variable.name for variable in resolve_variables(['kernel'], 'Owner')]
['kernel:0']
"""
import tensorflow as tf

from tensorflow_multihead import graph_walk


def as_tuple(shared_variables):
  """`None` -> `()`; one variable or name -> a 1-tuple; else a tuple."""
  if shared_variables is None:
    return ()
  if isinstance(shared_variables, (str, tf.Variable)):
    return (shared_variables,)
  return tuple(shared_variables)


def check_variable_types(shared_variables, owner):
  """Raises unless every entry is a variable or a variable name.

  Raises:
    TypeError: An entry of another type, named with `owner` (who took it).
  """
  for variable in shared_variables:
    if not isinstance(variable, (str, tf.Variable)):
      raise TypeError(
          f'{owner} shared_variables must be variables or variable names; '
          f'given {variable!r} of type {type(variable).__name__}.')


def resolve_variables(variables, owner):
  """The graph's variables for a list of variables and variable names.

  A name of a partitioned variable (as TF 1.x canned estimators create,
  `dnn/hiddenlayer_0/kernel` for `.../kernel/part_0`, ...) stands for all
  of its parts.

  Raises:
    ValueError: A name no variable of the graph has, or a variable of
      another graph.
  """
  graph = tf.compat.v1.get_default_graph()
  by_name = {}
  for variable in tf.compat.v1.global_variables():
    # Not `variable.op.name`: a mirrored variable answers with its replica's.
    by_name.setdefault(variable.name.rsplit(':', 1)[0], variable)
  resolved = []
  for variable in variables:
    if isinstance(variable, str):
      resolved.extend(_named(variable, by_name, owner))
      continue
    if variable.graph is not graph:
      raise ValueError(
          f'{owner} shared variable {variable.name!r} belongs to another '
          'graph than the model being built; give its name instead.')
    resolved.append(variable)
  return resolved


def _named(name, by_name, owner):
  """The variable of that name, or the parts of a partitioned one."""
  name = name[:-2] if name.endswith(':0') else name
  if name in by_name:
    return [by_name[name]]
  parts = sorted(((int(full.rpartition('/part_')[2]), variable)
                  for full, variable in by_name.items()
                  if full.rpartition('/part_')[0] == name and
                  full.rpartition('/part_')[2].isdigit()),
                 key=lambda part: part[0])
  if not parts:
    raise ValueError(
        f'{owner} shared variable {name!r} is not a variable of the '
        f'graph. Its variables are: {sorted(by_name)[:20]}.')
  return [variable for _, variable in parts]


def check_representation_type(representation, owner):
  """Raises unless `representation` is a graph tensor or a tensor name.

  Raises:
    TypeError: Anything else (a variable, an array, a Keras tensor).
  """
  if isinstance(representation, str):
    return
  if isinstance(representation, tf.Variable):
    raise TypeError(
        f'{owner} shared_representation {representation.name!r} is a '
        'variable; give it as shared_variables=[...] instead.')
  if not isinstance(representation, tf.Tensor):
    raise TypeError(
        f'{owner} shared_representation must be a tensor of the model (or '
        f'its name); given {representation!r} of type '
        f'{type(representation).__name__}.')


def find_representation(representation, logits, owner):
  """The representation tensor in the graph being built.

  Args:
    representation: A tensor, or a tensor's name (`'dense/Relu'` or
      `'dense/Relu:0'`). A name is looked up among the tensors that
      `logits` are computed from: the one of that name, else the one whose
      name ends with `/<name>` (inside a name scope, such as a mirrored
      replica's `replica_1/`).
    logits: The heads' logits tensors.
    owner: Who took it, for error messages.

  Raises:
    ValueError: A tensor of another graph or an eager tensor; a name no
      tensor (or several) that the logits come from has; a representation
      that is not floating-point.
  """
  graph = tf.compat.v1.get_default_graph()
  if isinstance(representation, str):
    found = _tensor_named(representation, logits, owner)
  else:
    if getattr(representation, 'graph', None) is not graph:
      raise ValueError(
          f'{owner} shared_representation {representation!r} is not a tensor '
          'of the graph being built: give a tensor of the model_fn call that '
          'builds the spec, or its name.')
    found = representation
  if not found.dtype.is_floating:
    raise ValueError(
        f'{owner} shared_representation {found.name!r} is of type '
        f'{found.dtype.name}; gradients need a floating-point tensor.')
  return found


def _tensor_named(name, logits, owner):
  wanted = name if ':' in name else f'{name}:0'
  exact, within_scope = [], []
  for op in graph_walk.ancestors([tensor.op for tensor in logits]):
    for tensor in op.outputs:
      if tensor.name == wanted:
        exact.append(tensor)
      elif tensor.name.endswith('/' + wanted):
        within_scope.append(tensor)
  found = exact or within_scope
  if len(found) != 1:
    problem = ('is not the name of a tensor the logits are computed from'
               if not found else
               f'names several of them: {sorted(t.name for t in found)}')
    raise ValueError(
        f'{owner} shared_representation {name!r} {problem}. Give the full '
        'name of the tensor every head\'s logits are computed from, such as '
        "'dnn/hiddenlayer_1/Relu:0'.")
  return found[0]


def _variable_outputs(variable):
  """What reads of `variable` consume: every component's handle or ref."""
  return [component.op.outputs[0]
          for component in getattr(variable, 'values', (variable,))]


def check_heads_depend_on(sources, logits_by_head, owner, what):
  """Raises unless every head's logits depend on `sources`, and each is used.

  Told from the graph's structure, head by head: a fused group's per-head
  losses all come from one batched op, but each head has its own logits.
  Logits given as one tensor, split among the heads, are one tensor here:
  every head then depends on what any of them does.

  Args:
    sources: Resolved variables, or one representation tensor, in a list.
    logits_by_head: The heads' logits tensors, keyed by head name in order.
    owner: Who was given the sources, for error messages.
    what: `'shared_variables'` or `'shared_representation'`.

  Raises:
    ValueError: A source no head's logits depend on; a head whose logits
      depend on none of the sources.
  """
  logits_by_head = {name: tf.convert_to_tensor(logits)
                    for name, logits in logits_by_head.items()}
  reached = {}
  for source in sources:
    outputs = (_variable_outputs(source) if isinstance(source, tf.Variable)
               else [source])
    descendants = graph_walk.descendants(outputs)
    reached[source.name] = {
        name for name, logits in logits_by_head.items()
        if logits.op in descendants or any(logits is out for out in outputs)}
  names = list(logits_by_head)
  unused = [source for source, heads in reached.items() if not heads]
  if unused:
    raise ValueError(
        f"{owner} {what} {unused}: no head's loss depends on them. Name "
        f'what every head {names} uses, such as the last shared layer.')
  cut_off = [name for name in names
             if not any(name in heads for heads in reached.values())]
  if cut_off:
    raise ValueError(
        f'{owner}: the loss of head(s) {cut_off} depends on none of the '
        f'{what} {list(reached)} (their logits are not computed from them); '
        'name what every head uses.')


def check_loss_weighting_reads(loss_weighting, logits_by_head):
  """`check_heads_depend_on` for a weighting's `shared_variables` (GradNorm).

  Does nothing for a weighting without them, or without one.
  """
  variables = getattr(loss_weighting, 'shared_variables', None)
  if not variables:
    return
  owner = type(loss_weighting).__name__
  check_heads_depend_on(resolve_variables(variables, owner), logits_by_head,
                        owner, 'shared_variables')
