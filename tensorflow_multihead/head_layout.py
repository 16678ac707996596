"""The heads a `MultiHead` computes, planned into fused groups and lone heads.

A `Layout` holds one list of heads, the `fusion.plan` splitting it (or one
head a part, without fusion) and the fused groups built for the plan, and
hands out the `head_parts` that compute one call.

>>> import tensorflow as tf
>>> layout = Layout([tf.estimator.BinaryClassHead(name='a'),
...                  tf.estimator.RegressionHead(name='b'),
...                  tf.estimator.BinaryClassHead(name='c')], fuse_heads=True)
>>> layout.names, layout.plan
(('a', 'b', 'c'), [(0, 2), (1,)])
>>> [part.names for part in layout.parts()]
[('a', 'c'), ('b',)]
"""
from tensorflow_multihead import fusion
from tensorflow_multihead import head_parts


class Layout:
  """Heads, their fusion plan and fused groups.

  Args:
    heads: The heads computed, with unique names.
    fuse_heads: Whether heads that `fusion.plan` groups are fused.
  """

  def __init__(self, heads, fuse_heads):
    self.heads = tuple(heads)
    self.names = tuple(head.name for head in self.heads)
    self.plan = (fusion.plan(self.heads) if fuse_heads
                 else [(position,) for position in range(len(self.heads))])
    self.fused_groups = {
        positions: fusion.build_group(
            [self.heads[position] for position in positions])
        for positions in self.plan if len(positions) > 1}

  def parts(self, logits=None, labels=None, exported=None):
    """The parts computing one call; see `head_parts.parts_for`.

    `exported` names the heads an export serves by signatures of their own
    (None: every head), which PREDICT cuts from their fused groups apart.
    """
    return head_parts.parts_for(self.heads, self.plan, self.fused_groups,
                                logits, labels, exported)
