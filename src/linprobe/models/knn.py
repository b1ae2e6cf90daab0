"""Cosine-similarity k-NN classifier with DINO's weighted vote.

As in DINO's ``eval_knn.py``: features are L2-normalised, the k most similar training samples
vote for their class with weight ``exp(similarity / temperature)``, and the class scores are the
summed votes. ``predict_proba`` returns the votes normalised to sum to one.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

_FLOATS = [np.float32, np.float64]


def _l2_normalize(X: np.ndarray) -> np.ndarray:
    """Row-normalised copy of X (n, D); all-zero rows stay zero instead of becoming NaN."""
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    return X / np.maximum(norms, np.finfo(X.dtype).tiny)


class CosineKNNClassifier(ClassifierMixin, BaseEstimator):
    """k-NN on cosine similarity with temperature-weighted votes (DINO k-NN eval).

    Parameters
    ----------
    n_neighbors : int, default=20
        Votes per query; clipped to the number of training samples.
    temperature : float, default=0.07
        Vote weight is ``exp(cos_sim / temperature)``; DINO uses 0.07.
    batch_size : int, default=256
        Queries per block, bounding the (batch, n_train) similarity matrix in memory.
    """

    _parameter_constraints: dict = {}

    def __init__(self, n_neighbors: int = 20, temperature: float = 0.07, batch_size: int = 256):
        self.n_neighbors = n_neighbors
        self.temperature = temperature
        self.batch_size = batch_size

    def _check_params(self) -> None:
        for name, value in (("n_neighbors", self.n_neighbors), ("batch_size", self.batch_size)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(
                    f"The '{name}' parameter of CosineKNNClassifier must be an int >= 1. "
                    f"Got {value!r} instead."
                )
        t = self.temperature
        if isinstance(t, bool) or not isinstance(t, (int, float, np.number)) or not t > 0:
            raise ValueError(
                "The 'temperature' parameter of CosineKNNClassifier must be a float > 0. "
                f"Got {t!r} instead."
            )

    def fit(self, X, y) -> "CosineKNNClassifier":
        """Store the L2-normalised training features X (n, D) and labels y (n,)."""
        self._check_params()
        X, y = validate_data(self, X, y, dtype=_FLOATS)
        check_classification_targets(y)
        self.classes_, self._y_index = np.unique(y, return_inverse=True)
        self._train = _l2_normalize(X)
        return self

    def predict_proba(self, X) -> np.ndarray:
        """Normalised weighted votes, (n, n_classes) in the order of ``classes_``."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=_FLOATS)
        Q = _l2_normalize(X).astype(self._train.dtype, copy=False)
        k = min(self.n_neighbors, self._train.shape[0])
        n_classes = len(self.classes_)
        out = np.empty((Q.shape[0], n_classes), dtype=np.float64)
        for start in range(0, Q.shape[0], self.batch_size):
            sim = Q[start:start + self.batch_size] @ self._train.T            # (b, n_train)
            top = np.argpartition(-sim, k - 1, axis=1)[:, :k]                 # (b, k)
            top_sim = np.take_along_axis(sim, top, axis=1).astype(np.float64)
            # Subtracting the row max keeps exp() finite for tiny temperatures; the shift
            # cancels when the votes are normalised.
            w = np.exp((top_sim - top_sim.max(axis=1, keepdims=True)) / self.temperature)
            votes = np.zeros((top.shape[0], n_classes))
            np.add.at(votes, (np.arange(top.shape[0])[:, None], self._y_index[top]), w)
            out[start:start + self.batch_size] = votes / votes.sum(axis=1, keepdims=True)
        return out

    def predict(self, X) -> np.ndarray:
        """Class with the largest vote, (n,)."""
        check_is_fitted(self)
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]
