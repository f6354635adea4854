"""Price models on log price: a facts-only linear regression (the Oslo lecture's baseline), facts-only
gradient boosting, and gradient boosting on the facts plus what the photos show. Each comes with an
80 % prediction interval calibrated on out-of-fold residuals (split-conformal on cross-fitted
predictions) and the features that moved each estimate most.

Two places where a small data set would fool the model are fitted out of fold on purpose:
category codes such as zipcodes are target-encoded with scikit-learn's TargetEncoder, whose
fit_transform cross-fits (a row's code is never encoded with its own price); and the photo
features (thousands of embedding dimensions for a few hundred listings) are projected onto one
"photo score" by ridge regression whose training rows are likewise scored out of fold."""
from __future__ import annotations

import json
import math
import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.impute import SimpleImputer
from sklearn.linear_model import Ridge, RidgeCV
from sklearn.model_selection import KFold
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler, TargetEncoder
from threadpoolctl import threadpool_limits

from .data import Listings
from .photos import ListingPhotos

KINDS = {
    "linear": "facts only, linear regression on log price",
    "boosted": "facts only, gradient boosting",
    "photos": "facts and photo features, gradient boosting",
}
COVERAGE = 0.8
FOLDS = 5
MISSING = "(missing)"
VALUE_FORMAT = 1


def _with_logs(x):
    """Each column and its log (floor area and price are closer to linear in logs)."""
    x = np.asarray(x, dtype=float)
    return np.hstack([x, np.log1p(np.clip(x, 0, None))])


def _boosting(seed: int) -> HistGradientBoostingRegressor:
    # Chosen once for a few hundred rows, not tuned on the folds: shallow trees, many leaves' worth
    # of shrinkage, a leaf needs 10 listings.
    return HistGradientBoostingRegressor(learning_rate=0.05, max_iter=300, max_leaf_nodes=15, min_samples_leaf=10,
                                         l2_regularization=1.0, random_state=seed)


class PhotoScore(TransformerMixin, BaseEstimator):
    """Projects pooled photo features onto one number, their ridge-regression estimate of log price
    (standardised inputs, the penalty chosen by efficient leave-one-out on the training rows).
    `fit_transform` returns out-of-fold scores, so that the model downstream learns how far to
    trust the photos from scores made without each row's own price."""

    def __init__(self, folds: int = FOLDS, random_state: int = 0):
        self.folds = folds
        self.random_state = random_state

    @staticmethod
    def _model():
        return make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(1, 6, 11)))

    def fit(self, X, y):
        self.model_ = self._model().fit(np.asarray(X, dtype=float), y)
        return self

    def transform(self, X):
        return self.model_.predict(np.asarray(X, dtype=float))[:, None]

    def fit_transform(self, X, y=None, **params):
        X = np.asarray(X, dtype=float)
        y = np.asarray(y, dtype=float)
        oof = np.empty(len(X))
        folds = min(self.folds, len(X))
        for tr, te in KFold(folds, shuffle=True, random_state=self.random_state).split(X):
            oof[te] = self._model().fit(X[tr], y[tr]).predict(X[te])
        self.model_ = self._model().fit(X, y)
        return oof[:, None]

    def get_feature_names_out(self, input_features=None):
        return np.array(["photo_score"])


@dataclass
class FeatureSpec:
    """The raw input columns of every model, in order: numeric facts, categorical facts, the pooled
    photo features that feed the photo score, and the attribute maxima."""

    numeric: list[str]
    categorical: list[str]
    photo_columns: list[str] = field(default_factory=list)
    attribute_columns: list[str] = field(default_factory=list)
    rooms: list[str] = field(default_factory=list)

    @property
    def n_facts(self) -> int:
        return len(self.numeric) + len(self.categorical)

    def facts_matrix(self, listings: Listings) -> np.ndarray:
        X = np.empty((len(listings), self.n_facts), dtype=object)
        for j, c in enumerate(self.numeric):
            X[:, j] = listings.numeric[c] if c in listings.numeric else np.nan
        for j, c in enumerate(self.categorical):
            col = listings.categorical.get(c) or [None] * len(listings)
            X[:, len(self.numeric) + j] = [MISSING if v is None else v for v in col]
        return X

    def matrix(self, listings: Listings, photos: ListingPhotos | None) -> np.ndarray:
        facts = self.facts_matrix(listings)
        if not self.photo_columns:
            return facts
        want = self.photo_columns + self.attribute_columns
        if photos is None:
            return np.hstack([facts, np.full((len(listings), len(want)), np.nan)]).astype(object)
        idx = {c: j for j, c in enumerate(photos.columns)}
        missing = [c for c in want if c not in idx]
        if missing:
            raise ValueError(f"the photo features lack {len(missing)} columns the model was fitted on "
                             f"(first: {missing[0]}): a different tagging model?")
        return np.hstack([facts, photos.matrix[:, [idx[c] for c in want]]]).astype(object)

    def groups(self, kind: str) -> list[str]:
        """The names contributions are reported under, one per output column block of `kind`."""
        names = list(self.numeric) + list(self.categorical)
        if kind == "photos":
            names += ["photos"] + [c.removesuffix("_max") + " in photos" for c in self.attribute_columns]
        return names

    def to_dict(self) -> dict:
        return {"numeric": self.numeric, "categorical": self.categorical,
                "photo_columns": len(self.photo_columns), "attribute_columns": self.attribute_columns,
                "rooms": self.rooms, "photo_pooling": "per listing: mean embedding, mean embedding per room "
                "(the listing's mean where it has none), mean room-type probabilities, maximum of each attribute"}


def build_pipeline(kind: str, spec: FeatureSpec, seed: int = 0) -> Pipeline:
    nn, nc = len(spec.numeric), len(spec.categorical)
    num = list(range(nn))
    cat = list(range(nn, nn + nc))
    encoder = TargetEncoder(target_type="continuous", cv=KFold(FOLDS, shuffle=True, random_state=seed))
    parts = []
    if kind == "linear":
        if num:
            parts.append(("num", make_pipeline(SimpleImputer(strategy="median"), FunctionTransformer(_with_logs),
                                               StandardScaler()), num))
        if cat:
            parts.append(("cat", encoder, cat))
        return Pipeline([("features", ColumnTransformer(parts, sparse_threshold=0)), ("model", Ridge(alpha=1.0))])
    if num:
        parts.append(("num", "passthrough", num))
    if cat:
        parts.append(("cat", encoder, cat))
    if kind == "photos":
        k = spec.n_facts
        parts.append(("photo", PhotoScore(random_state=seed), list(range(k, k + len(spec.photo_columns)))))
        k += len(spec.photo_columns)
        if spec.attribute_columns:
            parts.append(("attr", "passthrough", list(range(k, k + len(spec.attribute_columns)))))
    elif kind != "boosted":
        raise ValueError(f"unknown model kind '{kind}' (one of {', '.join(KINDS)})")
    return Pipeline([("features", ColumnTransformer(parts, sparse_threshold=0)), ("model", _boosting(seed))])


def _as_float(X) -> np.ndarray:
    return np.asarray(X, dtype=float)


def conformal_halfwidth(residuals: np.ndarray, coverage: float = COVERAGE) -> float:
    """The split-conformal quantile of absolute log residuals: ceil((n+1) coverage)-th smallest,
    so that a new listing's price falls inside with probability >= coverage."""
    r = np.sort(np.abs(residuals[np.isfinite(residuals)]))
    if len(r) == 0:
        return float("nan")
    k = min(len(r), math.ceil((len(r) + 1) * coverage))
    return float(r[k - 1])


def out_of_fold(kind: str, spec: FeatureSpec, X: np.ndarray, y: np.ndarray, seed: int = 0,
                folds: int = FOLDS) -> np.ndarray:
    """Predictions of log price for each row by a model fitted without it."""
    pred = np.full(len(y), np.nan)
    for tr, te in KFold(min(folds, len(y)), shuffle=True, random_state=seed).split(X):
        pred[te] = build_pipeline(kind, spec, seed).fit(X[tr], y[tr]).predict(X[te])
    return pred


@dataclass
class Estimate:
    """One listing's estimate: the value, its interval, what it rests on, and why."""

    listing_id: str
    value: float | None
    low: float | None
    high: float | None
    basis: str  # "facts and photos", "facts only" or "" (no estimate)
    drivers: list[tuple[str, float]] = field(default_factory=list)  # (feature, effect in log price)
    note: str = ""

    def to_dict(self, price: float | None = None) -> dict:
        row = {"listing_id": self.listing_id, "value": _round(self.value), "value_low": _round(self.low),
               "value_high": _round(self.high), "basis": self.basis}
        if price is not None and math.isfinite(price):
            row["price"] = price
            row["price_to_value"] = round(price / self.value, 4) if self.value else None
        for k in range(3):
            name, effect = self.drivers[k] if k < len(self.drivers) else (None, None)
            row[f"driver_{k + 1}"] = None if name is None else f"{name} {math.expm1(effect) * 100:+.0f} %"
        row["note"] = self.note
        return row


def _round(v: float | None):
    return None if v is None or not math.isfinite(v) else float(round(v))


@dataclass
class ValueModel:
    """Fitted price models and what they need at prediction time; saved as a folder (value.json,
    models.pkl)."""

    spec: FeatureSpec
    models: dict[str, Pipeline]
    halfwidth: dict[str, float]  # log-price half-width of the 80 % interval: per blend group and per kind
    info: dict
    background: dict[str, np.ndarray] = field(default_factory=dict)  # kind -> transformed rows for contributions

    def save(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        with open(path / "models.pkl.tmp", "wb") as f:
            pickle.dump({"models": self.models, "background": self.background, "spec": self.spec}, f)
        os.replace(path / "models.pkl.tmp", path / "models.pkl")
        meta = {"format": VALUE_FORMAT, "kind": "estatelens value model", "features": self.spec.to_dict(),
                "interval": {"coverage": COVERAGE, "log_halfwidth": self.halfwidth,
                             "method": "split-conformal on the blend's 5-fold out-of-fold log residuals"},
                **self.info}
        (path / "value.json").write_text(json.dumps(meta, indent=2, default=_json_default) + "\n")
        return path

    def blend(self, with_photos: bool) -> dict[str, float]:
        """The weight of each model in the estimate of a listing with (or without) readable photos."""
        return self.info["blend"]["with_photos" if with_photos else "facts_only"]

    def predict(self, listings: Listings, photos: ListingPhotos | None = None, drivers: int = 3) -> list[Estimate]:
        """An estimate per listing: the blend of the models fitted (weights from their out-of-fold
        estimates) with the photo model where the listing has readable photos, the facts models'
        blend otherwise (said in `basis`); notes for missing or out-of-range facts."""
        X = self.spec.matrix(listings, photos)
        uses_photos = self.blend(True).get("photos", 0) > 0
        has_photos = (photos.n_photos > 0) if (photos is not None and uses_photos) \
            else np.zeros(len(listings), dtype=bool)
        out: list[Estimate | None] = [None] * len(listings)
        for group in (True, False):
            rows = np.flatnonzero(has_photos == group)
            weights = {k: w for k, w in self.blend(group).items() if w > 0}
            if len(rows) == 0:
                continue
            if not weights:  # a photos-only model and a listing without a readable photo
                for i in rows:
                    out[i] = Estimate(listings.ids[i], None, None, None, "", note="no readable photo, and the "
                                      "model has no facts to value it from")
                continue
            pred = np.zeros(len(rows))
            effects: dict[str, np.ndarray] = {}
            with threadpool_limits(1):
                for kind, w in weights.items():
                    Xk = X[rows] if kind == "photos" else X[rows][:, :self.spec.n_facts]
                    # The feature step once (the photo score is a ridge over thousands of columns),
                    # for the estimate and for its contributions.
                    pipe = self.models[kind]
                    Z = _as_float(pipe.named_steps["features"].transform(Xk))
                    base = pipe.named_steps["model"].predict(Z)
                    pred += w * base
                    if drivers:
                        c = self.contributions(kind, Z, base)
                        for g, name in enumerate(self.spec.groups(kind)):
                            effects[name] = effects.get(name, 0) + w * c[:, g]
            q = self.halfwidth["with_photos" if group else "facts_only"]
            names = list(effects)
            E = np.stack([effects[n] for n in names], 1) if effects else None
            for j, i in enumerate(rows):
                top = []
                if E is not None:
                    order = np.argsort(-np.abs(E[j]))[:drivers]
                    top = [(names[g], float(E[j, g])) for g in order]
                out[i] = Estimate(listings.ids[i], math.exp(pred[j]), math.exp(pred[j] - q), math.exp(pred[j] + q),
                                  "facts and photos" if group else "facts only", top,
                                  "; ".join(self.fact_notes(listings, i)))
        return out  # type: ignore[return-value]

    def fact_notes(self, listings: Listings, i: int) -> list[str]:
        """Why an estimate may be poor: a fact missing, outside what the model was fitted on, or a
        category it never saw."""
        notes = []
        ranges = self.info.get("data", {}).get("ranges", {})
        seen = self.info.get("data", {}).get("categories", {})
        for c in self.spec.numeric:
            v = listings.numeric[c][i] if c in listings.numeric else float("nan")
            lo, hi = ranges.get(c, (None, None))
            if not math.isfinite(v):
                notes.append(f"{c} missing")
            elif lo is not None and not (lo - 0.25 * (hi - lo) <= v <= hi + 0.25 * (hi - lo)):
                notes.append(f"{c} {v:g} is outside the fitted range {lo:g}-{hi:g}")
        for c in self.spec.categorical:
            v = (listings.categorical.get(c) or [None] * len(listings))[i]
            if v is None:
                notes.append(f"{c} missing")
            elif c in seen and v not in seen[c]:
                notes.append(f"{c} {v} not seen in fitting (read as average)")
        return notes

    def contributions(self, kind: str, Z: np.ndarray, base: np.ndarray) -> np.ndarray:
        """(N, groups) effect of each feature group on log price: the prediction `base` minus its
        mean over background listings with that group's value swapped in (interventional, one
        group at a time; exact for the linear model). `Z`: the rows after the feature step."""
        B = self.background[kind]
        model = self.models[kind].named_steps["model"]
        blocks = self._output_blocks(kind)
        effects = np.zeros((len(Z), len(blocks)))
        for g, cols in enumerate(blocks):
            rep = np.repeat(Z, len(B), axis=0)
            rep[:, cols] = np.tile(B[:, cols], (len(Z), 1))
            effects[:, g] = base - model.predict(rep).reshape(len(Z), len(B)).mean(1)
        return effects

    def _output_blocks(self, kind: str) -> list[list[int]]:
        """For each name of spec.groups(kind), its columns after the feature step."""
        nn, nc = len(self.spec.numeric), len(self.spec.categorical)
        if kind == "linear":  # numeric: each value then each log; categorical after
            return [[j, nn + j] for j in range(nn)] + [[2 * nn + j] for j in range(nc)]
        blocks = [[j] for j in range(nn + nc)]
        if kind == "photos":
            blocks += [[nn + nc + j] for j in range(1 + len(self.spec.attribute_columns))]
        return blocks


def _json_default(o):
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(type(o))


def data_summary(listings: Listings, spec: FeatureSpec, photos: ListingPhotos | None) -> dict:
    price = listings.price[np.isfinite(listings.price)]
    ranges = {c: (float(np.nanmin(v)), float(np.nanmax(v))) for c, v in listings.numeric.items()
              if c in spec.numeric and np.isfinite(v).any()}
    cats = {c: sorted({x for x in listings.categorical[c] if x is not None}) for c in spec.categorical}
    return {"listings": len(price), "price_median": float(np.median(price)) if len(price) else None,
            "price_range": [float(price.min()), float(price.max())] if len(price) else None,
            "ranges": ranges, "categories": cats,
            "listings_with_photos": int((photos.n_photos > 0).sum()) if photos is not None else 0,
            "photos": int(photos.n_photos.sum()) if photos is not None else 0}


def fit_value_model(listings: Listings, photos: ListingPhotos | None = None, *, seed: int = 0,
                    kinds: Sequence[str] | None = None, info: dict | None = None) -> ValueModel:
    """Fits each kind on the listings with a price (the photo kind on those with readable photos),
    blend weights and interval half-widths from their out-of-fold estimates, and a background
    sample for contributions."""
    priced = np.flatnonzero(np.isfinite(listings.price))
    if len(priced) < 2 * FOLDS:
        raise ValueError(f"{len(priced)} listings with a price: at least {2 * FOLDS} are needed to fit and "
                         "calibrate a price model")
    L = listings.subset(priced)
    y = np.log(L.price)
    spec = FeatureSpec(sorted(L.numeric), sorted(L.categorical))
    if photos is not None:
        photos = photos.for_ids(L.ids)
        spec.photo_columns = [c for c in photos.columns if not c.endswith("_max")]
        spec.attribute_columns = [c for c in photos.columns if c.endswith("_max")]
    if spec.n_facts == 0 and photos is None:
        raise ValueError("no fact columns and no photos: nothing to value the listings from")
    kinds = list(kinds or (["linear", "boosted"] + (["photos"] if photos is not None else [])))
    X = spec.matrix(L, photos)
    models, halfwidth, background, cv, oof = {}, {}, {}, {}, {}
    rng = np.random.default_rng(seed)
    # One thread: on a few hundred rows the boosting's OpenMP threads cost more than they give
    # (6x slower on 2 busy cores).
    with threadpool_limits(1):
        for kind in kinds:
            fitted = _fit_kind(kind, spec, X, y, photos, seed, rng)
            if fitted is not None:
                models[kind], oof[kind], background[kind] = fitted
                cv[kind] = metrics(L.price, np.exp(oof[kind]))
                halfwidth[kind] = conformal_halfwidth(y - oof[kind])
    if not models:
        raise ValueError("no model could be fitted (too few listings with photos or prices)")
    blend = {}
    for group, names in (("with_photos", list(models)), ("facts_only", [k for k in models if k != "photos"])):
        rows = np.flatnonzero(np.all([np.isfinite(oof[k]) for k in names], axis=0)) if names else []
        blend[group] = blend_weights(np.stack([oof[k][rows] for k in names], 1), y[rows], names) if names else {}
        if names:
            mixed = sum(w * oof[k][rows] for k, w in blend[group].items())
            halfwidth[group] = conformal_halfwidth(y[rows] - mixed)
            cv[f"blend_{group}"] = metrics(L.price[rows], np.exp(mixed))
    summary = data_summary(L, spec, photos)
    meta = {"data": summary, "cross_validation": {"folds": FOLDS, "seed": seed, "metrics": cv},
            "kinds": {k: KINDS[k] for k in models}, "blend": blend, **(info or {})}
    return ValueModel(spec, models, halfwidth, meta, background)


def blend_weights(P: np.ndarray, y: np.ndarray, names: Sequence[str]) -> dict[str, float]:
    """Non-negative weights summing to 1 that best combine the columns of P (out-of-fold log-price
    estimates, one column per model) into y: stacking, so that a model that adds nothing gets
    weight 0 and two that err differently are averaged."""
    from scipy.optimize import nnls

    # The sum-to-one constraint as a heavily weighted extra row.
    A = np.vstack([P, np.full((1, P.shape[1]), 1e3)])
    b = np.concatenate([y, [1e3]])
    w, _ = nnls(A, b)
    w = w / w.sum() if w.sum() > 0 else np.full(len(names), 1 / len(names))
    return {k: round(float(x), 4) for k, x in zip(names, w)}


def _fit_kind(kind: str, spec: FeatureSpec, X: np.ndarray, y: np.ndarray, photos: ListingPhotos | None, seed: int,
              rng: np.random.Generator):
    """(fitted pipeline, out-of-fold log-price estimates (NaN on rows it is not fitted on),
    background rows for contributions) of one kind, or None where it cannot be fitted (too few
    listings with photos; no facts)."""
    rows = np.arange(len(y))
    if kind == "photos":
        rows = np.flatnonzero(photos.n_photos > 0)
        if len(rows) < 2 * FOLDS:
            return None
    elif spec.n_facts == 0:
        return None
    Xk = X[rows] if kind == "photos" else X[rows][:, :spec.n_facts]
    oof = np.full(len(y), np.nan)
    oof[rows] = out_of_fold(kind, spec, Xk, y[rows], seed)
    pipe = build_pipeline(kind, spec, seed).fit(Xk, y[rows])
    pick = rng.choice(len(rows), size=min(64, len(rows)), replace=False)
    background = _as_float(pipe.named_steps["features"].transform(Xk[pick]))
    return pipe, oof, background


def metrics(actual: np.ndarray, predicted: np.ndarray, low: np.ndarray | None = None,
            high: np.ndarray | None = None) -> dict:
    """Median and mean absolute percentage error, R^2 on log price and (with an interval) coverage."""
    ok = np.isfinite(predicted) & np.isfinite(actual)
    a, p = actual[ok], predicted[ok]
    ape = np.abs(p - a) / a
    la, lp = np.log(a), np.log(p)
    r2 = 1 - np.sum((la - lp) ** 2) / max(1e-12, np.sum((la - la.mean()) ** 2))
    out = {"n": int(ok.sum()), "median_ape": float(np.median(ape)), "mean_ape": float(np.mean(ape)),
           "r2_log": float(r2)}
    if low is not None and high is not None:
        out["coverage"] = float(np.mean((actual[ok] >= low[ok]) & (actual[ok] <= high[ok])))
    return out


def load_value_model(path: str | os.PathLike) -> ValueModel:
    path = Path(path)
    meta_file = path / "value.json"
    if not meta_file.is_file():
        raise FileNotFoundError(f"{path}: not a value model (no value.json; make one with `estatelens value fit`)")
    meta = json.loads(meta_file.read_text())
    if meta.get("format") != VALUE_FORMAT:
        raise ValueError(f"{path}: value model format {meta.get('format')}, this estatelens reads {VALUE_FORMAT}")
    with open(path / "models.pkl", "rb") as f:
        saved = pickle.load(f)  # noqa: S301 - a model folder is trusted like a bundle's weights
    info = {k: v for k, v in meta.items() if k not in ("format", "kind", "features", "interval")}
    return ValueModel(saved["spec"], saved["models"], meta["interval"]["log_halfwidth"], info, saved["background"])
