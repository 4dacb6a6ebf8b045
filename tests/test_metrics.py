import numpy as np
import pytest
from sklearn.metrics import average_precision_score, top_k_accuracy_score

from grounding.evaluation import metrics


def test_ranks_count_ties_in_the_correct_labels_favour():
    scores = np.array([[0.5, 0.5, 0.1], [0.2, 0.7, 0.7], [0.9, 0.0, 0.1]])
    assert metrics.ranks(scores, np.array([1, 2, 2])).tolist() == [1, 1, 2]
    assert metrics.topk_accuracy(scores, np.array([1, 2, 2]), 1) == pytest.approx(2 / 3)


def test_topk_matches_sklearn_on_random_scores():
    rng = np.random.default_rng(0)
    for trial in range(20):
        n, c = rng.integers(5, 60), rng.integers(3, 12)
        scores = rng.random((n, c))
        targets = rng.integers(0, c, n)
        for k in [k for k in (1, 2, 5) if k < c]:
            expected = top_k_accuracy_score(targets, scores, k=k, labels=np.arange(c))
            assert metrics.topk_accuracy(scores, targets, k) == pytest.approx(expected)


def test_single_class_and_empty_class():
    predictions, targets = np.array([0, 0, 0]), np.array([0, 0, 0])
    assert metrics.per_class_recall(predictions, targets, 1).tolist() == [1.0]
    recall = metrics.per_class_recall(np.array([0, 1, 0]), np.array([0, 0, 0]), 3)
    assert recall[0] == pytest.approx(2 / 3) and np.isnan(recall[1]) and np.isnan(recall[2])
    # the empty classes are left out of the mean, not counted as zero
    assert metrics.mean_per_class_recall(np.array([0, 1, 0]), np.array([0, 0, 0]), 3) == pytest.approx(2 / 3)
    assert np.isnan(metrics.topk_accuracy(np.zeros((0, 3)), np.zeros(0, int)))


def test_mean_per_class_recall_by_hand():
    # class 0: 2 of 2 right; class 1: 1 of 3 right  -> (1 + 1/3) / 2
    predictions, targets = np.array([0, 0, 1, 0, 0]), np.array([0, 0, 1, 1, 1])
    assert metrics.mean_per_class_recall(predictions, targets, 2) == pytest.approx(2 / 3)


def test_confusion_and_most_confused():
    predictions, targets = np.array([1, 1, 0, 2, 1]), np.array([0, 0, 0, 2, 2])
    matrix = metrics.confusion_matrix(predictions, targets, 3)
    assert matrix.tolist() == [[1, 2, 0], [0, 0, 0], [0, 1, 1]]
    assert metrics.most_confused(matrix, ["a", "b", "c"]) == [("a", "b", 2), ("c", "b", 1)]


def test_calibration_by_hand():
    confidence = np.array([0.95, 0.95, 0.15, 0.15])
    correct = np.array([1.0, 0.0, 0.0, 0.0])
    result = metrics.calibration(confidence, correct, bins=10)
    # two bins, each half the data: |0.95 - 0.5| and |0.15 - 0|
    assert result["ece"] == pytest.approx(0.5 * 0.45 + 0.5 * 0.15)
    assert [b["count"] for b in result["bins"]] == [2, 2]
    perfect = metrics.calibration(np.array([1.0, 1.0]), np.array([1.0, 1.0]))
    assert perfect["ece"] == pytest.approx(0.0)


def test_average_precision_matches_sklearn_with_ties():
    rng = np.random.default_rng(1)
    for trial in range(200):
        n = rng.integers(2, 40)
        scores = rng.integers(0, 4, n).astype(float) if trial % 2 else rng.random(n)
        relevant = rng.random(n) < 0.3
        if relevant.any():
            assert metrics.average_precision(scores, relevant) == pytest.approx(
                average_precision_score(relevant, scores), abs=1e-12)
    assert np.isnan(metrics.average_precision(np.array([0.3, 0.2]), np.array([False, False])))


def test_average_precision_by_hand():
    # ranking: rel, not, rel  ->  (1/1 + 2/3) / 2
    assert metrics.average_precision(np.array([0.9, 0.8, 0.7]), np.array([1, 0, 1])) == pytest.approx(5 / 6)
    mean_ap, per_label = metrics.mean_average_precision(
        np.array([[0.9, 0.1], [0.8, 0.2], [0.7, 0.3]]), np.array([[1, 0], [0, 0], [1, 0]]))
    assert mean_ap == pytest.approx(5 / 6) and np.isnan(per_label[1])


def test_bootstrap_interval_brackets_the_mean():
    correct = (np.random.default_rng(2).random(400) < 0.7).astype(float)
    lo, hi = metrics.bootstrap_interval(correct, 500)
    assert lo < correct.mean() < hi and hi - lo < 0.12
    assert metrics.bootstrap_interval(np.ones(5)) == (1.0, 1.0)
