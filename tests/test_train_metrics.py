import math

import pytest

from greenlm.train.metrics import classification_metrics


def test_binary_metrics_match_hand_computation():
    labels = [1, 1, 1, 0, 0, 0, 0, 1]
    preds = [1, 0, 1, 0, 0, 1, 0, 1]
    # tp=3 fn=1 fp=1 tn=3
    m = classification_metrics(labels, preds, 2)
    assert m["accuracy"] == pytest.approx(6 / 8)
    f1_pos = 2 * (3 / 4) * (3 / 4) / (3 / 4 + 3 / 4)
    f1_neg = 2 * (3 / 4) * (3 / 4) / (3 / 4 + 3 / 4)
    assert m["macro_f1"] == pytest.approx((f1_pos + f1_neg) / 2)
    mcc = (3 * 3 - 1 * 1) / math.sqrt((3 + 1) * (3 + 1) * (3 + 1) * (3 + 1))
    assert m["mcc"] == pytest.approx(mcc)


def test_three_class_mcc_and_f1():
    labels = [0, 0, 1, 1, 2, 2]
    preds = [0, 1, 1, 1, 2, 0]
    m = classification_metrics(labels, preds, 3)
    # per class: 0: p=1/2 r=1/2; 1: p=2/3 r=1; 2: p=1 r=1/2
    f1 = [0.5, 2 * (2 / 3) / (2 / 3 + 1), 2 * 0.5 / 1.5]
    assert m["macro_f1"] == pytest.approx(sum(f1) / 3)
    # Gorodkin: c=4, s=6, t=[2,2,2], p=[2,3,1]
    num = 4 * 6 - (2 * 2 + 3 * 2 + 1 * 2)
    den = math.sqrt((36 - (4 + 9 + 1)) * (36 - 12))
    assert m["mcc"] == pytest.approx(num / den)


def test_constant_prediction_has_zero_mcc():
    assert classification_metrics([0, 1, 0, 1], [1, 1, 1, 1], 2)["mcc"] == 0.0
