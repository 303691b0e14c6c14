"""Test data made here or shipped by scikit-learn; nothing is downloaded."""

import io

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
from sklearn.datasets import load_breast_cancer, load_iris


def table_to_csv(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pacsv.write_csv(table, sink)
    return sink.getvalue()


def breast_cancer_table() -> pa.Table:
    data = load_breast_cancer()
    names = [n.replace(" ", "_") for n in data.feature_names]
    columns = {n: data.data[:, i] for i, n in enumerate(names)}
    return pa.table({**columns, "diagnosis": np.asarray(data.target_names)[data.target]})


def iris_table() -> pa.Table:
    data = load_iris()
    names = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    columns = {n: data.data[:, i] for i, n in enumerate(names)}
    return pa.table({**columns, "species": np.asarray(data.target_names)[data.target]})


SEED_EXAMPLE_CSV = b"x1,x2,label\n1,2,1\n3,4,1\n-1,-2,0\n"
