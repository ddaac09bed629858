"""features: the paper's representation test. D's conv features (each layer max-pooled to 4x4,
concatenated) feed a regularised linear L2-SVM trained on a few labels per class; accuracy is
measured on held-out images, for the trained D and for a randomly initialised D alike."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from analysis.features import d_features
from analysis.figures import save_json
from analysis.sources import per_class_sample, random_discriminator
from runtime.files import atomic_write_bytes
from train.plot import figure_png

C_GRID = (1e-4, 1e-3, 1e-2, 1e-1)


def svm_accuracy(train_x, train_y, test_x, test_y, c: float | None, seed: int) -> tuple[float, float]:
    """A linear L2-SVM (squared hinge, L2 penalty) on standardised features.

    With c=None the regularisation is chosen by 3-fold cross-validation on the training split
    alone. Returns (held-out accuracy, C used).
    """
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC

    model = make_pipeline(StandardScaler(), LinearSVC(loss="squared_hinge", penalty="l2",
                                                      max_iter=5000, random_state=seed))
    if c is None:
        folds = min(3, int(np.bincount(train_y).min()))
        if folds >= 2:
            search = GridSearchCV(model, {"linearsvc__C": C_GRID}, cv=folds)
            search.fit(train_x, train_y)
            c = float(search.best_params_["linearsvc__C"])
        else:
            c = 0.01
    model.set_params(linearsvc__C=c)
    model.fit(train_x, train_y)
    return float((model.predict(test_x) == test_y).mean()), c


def feature_classification(d, cfg, data: str, out: Path, labels_per_class: int = 1000,
                           test_per_class: int = 500, c: float | None = None, seed: int = 0,
                           device: str = "cpu") -> dict:
    images, labels, classes = per_class_sample(data, cfg.nc, labels_per_class + test_per_class, seed)
    # within each class block, the first labels_per_class train and the rest test
    k = labels_per_class + test_per_class
    is_train = np.tile(np.arange(k) < labels_per_class, len(classes))
    result = {"analysis": "features", "data": data, "classes": classes,
              "labels_per_class": labels_per_class, "test_per_class": test_per_class,
              "chance": 1 / len(classes), "feature_dim": 240 * cfg.ndf}
    for name, net in (("trained_d", d), ("random_d", random_discriminator(cfg, seed))):
        feats = d_features(net, images, device=device)
        accuracy, used_c = svm_accuracy(feats[is_train], labels[is_train], feats[~is_train],
                                         labels[~is_train], c, seed)
        result[f"accuracy_{name}"] = accuracy
        result[f"svm_C_{name}"] = used_c
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out / "features.png", _bar_chart(result))
    result["figure"] = "features.png"
    save_json(out / "features.json", result)
    return result


def _bar_chart(result: dict) -> bytes:

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 3.2), dpi=100)
    values = [result["accuracy_trained_d"], result["accuracy_random_d"]]
    ax.bar(["trained D", "random D"], values, color=["tab:blue", "tab:gray"])
    ax.axhline(result["chance"], color="k", linestyle=":", label="chance")
    for i, v in enumerate(values):
        ax.text(i, v + 0.01, f"{v:.1%}", ha="center")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("held-out accuracy")
    ax.set_title(f"L2-SVM on D features, {result['labels_per_class']} labels/class")
    ax.legend(loc="lower right")
    fig.tight_layout()
    return figure_png(fig)
