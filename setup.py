"""Packaging for tensorflow-multihead."""
import pathlib

import setuptools

_HERE = pathlib.Path(__file__).parent

setuptools.setup(
    name='tensorflow-multihead',
    version='0.1.0',
    description=('Multi-objective heads for TensorFlow Estimator: a standalone '
                 'MultiHead and the TF 1.x contrib multi_head.'),
    long_description=(_HERE / 'README.md').read_text(encoding='utf-8'),
    long_description_content_type='text/markdown',
    packages=setuptools.find_packages(include=['tensorflow_multihead',
                                               'tensorflow_multihead.*']),
    # An SPDX identifier, and no license classifier: setuptools 77 and later
    # warn about license classifiers; older ones take this field as text.
    license='Apache-2.0',
    license_files=['LICENSE'],
    python_requires='>=3.9,<3.12',
    install_requires=[
        # Estimator's last release line: TF 2.16 removed tf.estimator.
        'tensorflow>=2.13,<2.16',
        'tensorflow-estimator>=2.13,<2.16',
        'tf-keras>=2.15,<2.16',
        'absl-py>=1.0',
    ],
    extras_require={
        'test': [
            # pytest 9 keeps a node's id where pytest-xdist (3.8 and
            # earlier) cannot append its group: `--dist loadgroup` then
            # spreads each xdist_group over both workers, and every
            # module-scoped fixture of a group runs once a worker.
            'pytest>=7,<9',
            'pytest-xdist>=3',
            'hypothesis>=6',
            # tests/test_aggregation_quadratic.py checks the aggregators
            # against SciPy's NNLS and optimizers.
            'scipy>=1.9',
            'tensorflow-serving-api>=2.13,<2.16',
        ],
        'demo': [
            'scikit-learn>=1.2',
        ],
        # benchmarks/plots.py draws the benchmark figures.
        'bench': [
            'matplotlib>=3.5',
        ],
    },
    classifiers=[
        'Programming Language :: Python :: 3',
    ],
)
