"""`tf.contrib.estimator`'s multi-head API for TensorFlow 2.15.

TF 1.x code that built multi-objective models with `tf.contrib.estimator`
runs on TF 2.15 by changing two imports:

```python
import tensorflow.compat.v1 as tf            # was: import tensorflow as tf
from tensorflow_multihead import contrib     # was: tf.contrib.estimator
```

then `contrib.multi_head(...)`, `contrib.multi_class_head(...)` and the other
head factories, with their TF 1.x signatures and defaults. They return TF 1.x
`_Head`s, which the TF 1.x canned estimators take as `head=` and whose
`create_estimator_spec` takes a `tf.compat.v1.train.Optimizer` or a
`train_op_fn`. New code should use `tensorflow_multihead.MultiHead` with the
v2 heads of `tf.estimator` instead.
"""
from tensorflow_multihead.contrib.heads import binary_classification_head
from tensorflow_multihead.contrib.heads import logistic_regression_head
from tensorflow_multihead.contrib.heads import multi_class_head
from tensorflow_multihead.contrib.heads import multi_label_head
from tensorflow_multihead.contrib.heads import poisson_regression_head
from tensorflow_multihead.contrib.heads import regression_head
from tensorflow_multihead.contrib.multi_head import multi_head

__all__ = [
    'binary_classification_head',
    'logistic_regression_head',
    'multi_class_head',
    'multi_head',
    'multi_label_head',
    'poisson_regression_head',
    'regression_head',
]
