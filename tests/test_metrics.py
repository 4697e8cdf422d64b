"""salsdk.metrics: hand-computed values on tiny maps, invariances, agreement with literal MIT-code ports, errors."""
from __future__ import annotations

import math

import numpy as np
import pytest

from salsdk import metrics as M
from salsdk.errors import InputError

LN2 = math.log(2.0)


@pytest.fixture(scope="module")
def smooth_map() -> np.ndarray:
    """A 24x32 smooth random map (sum of Gaussians) with fixations on its brightest ~5% and a few random ones."""
    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[0:24, 0:32]
    m = np.zeros((24, 32))
    for _ in range(4):
        cy, cx, sd = rng.uniform(0, 24), rng.uniform(0, 32), rng.uniform(2, 6)
        m += rng.uniform(0.5, 1.0) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sd**2))
    return m


@pytest.fixture(scope="module")
def smooth_fixations(smooth_map) -> np.ndarray:
    rng = np.random.default_rng(8)
    f = (smooth_map >= np.quantile(smooth_map, 0.95)).astype(np.uint8)
    f[rng.integers(0, 24, 6), rng.integers(0, 32, 6)] = 1
    return f


# ------------------------------------------------------------------------------------------------------ CC


def test_cc_hand_computed():
    # a = [1 2; 3 4], b = [1 3; 2 4]; both have mean 2.5.
    # deviations a: -1.5 -0.5 0.5 1.5 ; b (same pixel order): -1.5 0.5 -0.5 1.5
    # sum of products = 2.25 - 0.25 - 0.25 + 2.25 = 4 ; sum of squares of each = 2.25+0.25+0.25+2.25 = 5
    # CC = 4 / sqrt(5 * 5) = 0.8
    assert M.cc([[1, 2], [3, 4]], [[1, 3], [2, 4]]) == pytest.approx(0.8, abs=1e-12)
    # reversed order: deviations of b = -a's  ->  CC = -1
    assert M.cc([[1, 2], [3, 4]], [[4, 3], [2, 1]]) == pytest.approx(-1.0, abs=1e-12)


def test_cc_properties(smooth_map):
    assert M.cc(smooth_map, smooth_map) == pytest.approx(1.0, abs=1e-12)
    other = np.roll(smooth_map, 5, axis=1)
    base = M.cc(smooth_map, other)
    assert M.cc(3.0 * smooth_map + 7.0, other) == pytest.approx(base, abs=1e-12)  # affine invariant
    assert M.cc(other, smooth_map) == pytest.approx(base, abs=1e-12)  # symmetric
    assert math.isnan(M.cc(np.ones((3, 3)), smooth_map[:3, :3]))  # constant map: undefined


# ------------------------------------------------------------------------------------------------------ KL


def test_kl_hand_computed():
    # pred = [1 1; 1 1] -> 0.25 each; gt = [2 0; 0 2] -> [0.5 0; 0 0.5]
    # KL = 2 * 0.5 * ln(eps + 0.5 / (0.25 + eps)) + 2 * 0 * ln(eps + 0) = ln 2  (the zero terms are exactly 0)
    assert M.kl_div([[1, 1], [1, 1]], [[2, 0], [0, 2]]) == pytest.approx(LN2, abs=1e-12)
    # pred = [3 1; 0 0] -> [.75 .25 0 0]; gt = [1 1; 0 0] -> [.5 .5 0 0]
    # KL = .5 ln(.5/.75) + .5 ln(.5/.25) = .5 ln(2/3 * 2) = .5 ln(4/3) = 0.1438410362...
    assert M.kl_div([[3, 1], [0, 0]], [[1, 1], [0, 0]]) == pytest.approx(0.5 * math.log(4 / 3), abs=1e-12)


def test_kl_epsilon_convention_is_mit():
    # pred = [1 0] -> [1 0]; gt = [1 1] -> [.5 .5]. The second pixel has pred 0, so the eps convention decides:
    # MIT KLdiv.m: .5 ln(eps + .5/(1+eps)) + .5 ln(eps + .5/(0+eps)) = .5 ln .5 + .5 (ln .5 - ln eps)
    #            = ln .5 - .5 ln(2.220446049250313e-16) = -0.693147 + 18.021827 = 17.328680...
    # (KDSalBox's KL with its default minimum_value=1e-20 would give .5 ln .5 + .5 ln(.5/1e-20) = 22.68.)
    eps = 2.220446049250313e-16
    assert M.EPS == eps
    expected = 0.5 * math.log(eps + 0.5 / (1 + eps)) + 0.5 * math.log(eps + 0.5 / eps)
    assert expected == pytest.approx(math.log(0.5) - 0.5 * math.log(eps), rel=1e-12)
    assert M.kl_div([[1, 0]], [[1, 1]]) == pytest.approx(expected, rel=1e-12)
    assert M.kl_div([[1, 0]], [[1, 1]]) == pytest.approx(17.32868, abs=1e-5)
    # a larger eps regularises more
    assert M.kl_div([[1, 0]], [[1, 1]], eps=1e-7) < M.kl_div([[1, 0]], [[1, 1]])


def test_kl_matches_literal_mit_formula(smooth_map):
    pred, gt = smooth_map, np.roll(smooth_map, 3, axis=0) ** 2
    p, q = pred / pred.sum(), gt / gt.sum()
    expected = np.sum(q * np.log(2.2204e-16 + q / (p + 2.2204e-16)))
    assert M.kl_div(pred, gt) == pytest.approx(expected, rel=1e-9)


def test_kl_properties(smooth_map):
    assert M.kl_div(smooth_map, smooth_map) == pytest.approx(0.0, abs=1e-12)
    other = np.roll(smooth_map, 4, axis=1)
    base = M.kl_div(smooth_map, other)
    assert base > 0
    assert M.kl_div(5.0 * smooth_map, 0.1 * other) == pytest.approx(base, rel=1e-12)  # scale invariant
    assert M.kl_div(other, smooth_map) != pytest.approx(base, rel=1e-6)  # not symmetric
    assert M.kl_div(np.zeros((2, 2)), np.zeros((2, 2))) == 0.0  # all-zero maps stay zero, as in MIT


# ----------------------------------------------------------------------------------------------------- SIM


def test_sim_hand_computed():
    # a = [0 1; 1 2]: min-max -> [0 .5; .5 1], sum 2 -> [0 .25; .25 .5]
    # b = [1 1; 0 0]: min-max -> same, sum 2 -> [.5 .5; 0 0]
    # min(a, b) = [0 .25; 0 0] -> SIM = 0.25
    assert M.sim([[0, 1], [1, 2]], [[1, 1], [0, 0]]) == pytest.approx(0.25, abs=1e-12)
    # a = [1 1 2 0] -> range [.5 .5 1 0], sum 2 -> [.25 .25 .5 0]; b = [1 2 1 0] -> [.25 .5 .25 0]
    # min = [.25 .25 .25 0] -> 0.75
    assert M.sim([[1, 1, 2, 0]], [[1, 2, 1, 0]]) == pytest.approx(0.75, abs=1e-12)
    # disjoint supports -> 0
    assert M.sim([[1, 0], [0, 0]], [[0, 0], [0, 1]]) == pytest.approx(0.0, abs=1e-12)


def test_sim_properties(smooth_map):
    assert M.sim(smooth_map, smooth_map) == pytest.approx(1.0, abs=1e-12)
    other = np.roll(smooth_map, 6, axis=0)
    base = M.sim(smooth_map, other)
    assert 0 < base < 1
    assert M.sim(2.0 * smooth_map + 1.0, other) == pytest.approx(base, abs=1e-12)  # affine invariant
    assert M.sim(other, smooth_map) == pytest.approx(base, abs=1e-12)  # symmetric
    # for non-negative maps with min 0 it is the plain histogram intersection of the sum-normalised maps
    a, b = smooth_map - smooth_map.min(), other - other.min()
    assert base == pytest.approx(np.minimum(a / a.sum(), b / b.sum()).sum(), abs=1e-12)
    # a constant map is the uniform distribution: SIM = sum(min(1/4, q)) with q = [.5 .5 0 0] -> 0.5
    assert M.sim(np.full((2, 2), 3.0), [[1, 1], [0, 0]]) == pytest.approx(0.5, abs=1e-12)


# ----------------------------------------------------------------------------------------------------- NSS


def test_nss_hand_computed():
    s = [[1, 2], [3, 4]]
    # mean 2.5; population std = sqrt((2.25 + .25 + .25 + 2.25) / 4) = sqrt(1.25) = 1.118034
    # fixation on the 4: (4 - 2.5) / 1.118034 = 1.341641
    assert M.nss(s, [[0, 0], [0, 1]]) == pytest.approx(1.5 / math.sqrt(1.25), abs=1e-12)
    # fixations on 4 and 1: (1.5 + -1.5) / 2 / std = 0
    assert M.nss(s, [[1, 0], [0, 1]]) == pytest.approx(0.0, abs=1e-12)
    # Matlab std (ddof=1) = sqrt(5 / 3) = 1.290994 -> 1.5 / 1.290994 = 1.161895
    assert M.nss(s, [[0, 0], [0, 1]], ddof=1) == pytest.approx(1.5 / math.sqrt(5 / 3), abs=1e-12)
    # fixation maps may be 0/255 images or booleans: any non-zero pixel is a fixation
    assert M.nss(s, np.array([[0, 0], [0, 255]], np.uint8)) == pytest.approx(1.5 / math.sqrt(1.25), abs=1e-12)
    assert M.nss(s, np.array([[False, False], [False, True]])) == pytest.approx(1.341641, abs=1e-6)


def test_nss_properties(smooth_map, smooth_fixations):
    base = M.nss(smooth_map, smooth_fixations)
    assert base > 1
    assert M.nss(10.0 * smooth_map - 3.0, smooth_fixations) == pytest.approx(base, abs=1e-12)
    assert M.nss(-smooth_map, smooth_fixations) == pytest.approx(-base, abs=1e-12)
    assert math.isnan(M.nss(np.ones((2, 2)), [[1, 0], [0, 0]]))


# ------------------------------------------------------------------------------------------------ AUC-Judd


def test_auc_judd_hand_computed():
    s = [[6, 5, 4], [3, 2, 1]]
    # fixations on 6 and 3 (n_fix 2, n_pixels 6, 4 negatives); thresholds 6, 3:
    #   t=6: TP 1/2, pixels >= 6: 1 -> FP (1-1)/4 = 0
    #   t=3: TP 2/2, pixels >= 3: 4 -> FP (4-2)/4 = 0.5
    # curve (0,0) (0,.5) (.5,1) (1,1): area 0 + .5*(.5+1)/2 + .5*1 = .375 + .5 = 0.875
    # (the rank AUC is 6/8 = .75; Judd interpolates linearly between fixation thresholds, as MIT does)
    assert M.auc_judd(s, [[1, 0, 0], [1, 0, 0]], jitter=False) == pytest.approx(0.875, abs=1e-12)
    # fixations on 6 and 5: (0,0) (0,.5) (0,1) (1,1) -> 1
    assert M.auc_judd(s, [[1, 1, 0], [0, 0, 0]], jitter=False) == pytest.approx(1.0, abs=1e-12)
    # fixations on 1 and 2 (worst): t=2 -> TP .5, FP (5-1)/4 = 1; t=1 -> TP 1, FP (6-2)/4 = 1
    # curve (0,0) (1,.5) (1,1) (1,1): area 1 * .25 = 0.25
    assert M.auc_judd(s, [[0, 0, 0], [0, 1, 1]], jitter=False) == pytest.approx(0.25, abs=1e-12)


def test_auc_judd_matches_literal_mit_loop(smooth_map, smooth_fixations):
    s = (smooth_map - smooth_map.min()) / (smooth_map.max() - smooth_map.min())
    S, F = s.ravel(), smooth_fixations.ravel() > 0
    sth = np.sort(S[F])[::-1]
    n_fix, n_pix = sth.size, S.size
    tp, fp = np.zeros(n_fix + 2), np.zeros(n_fix + 2)
    tp[-1] = fp[-1] = 1
    for i, t in enumerate(sth, start=1):
        above = np.sum(S >= t)
        tp[i], fp[i] = i / n_fix, (above - i) / (n_pix - n_fix)
    expected = np.sum((fp[1:] - fp[:-1]) * (tp[1:] + tp[:-1]) / 2)
    assert M.auc_judd(smooth_map, smooth_fixations, jitter=False) == pytest.approx(expected, abs=1e-12)


def test_auc_judd_properties(smooth_map, smooth_fixations):
    perfect = smooth_fixations.astype(float)  # the fixation map itself ranks every fixation first
    assert M.auc_judd(perfect, smooth_fixations) == pytest.approx(1.0, abs=1e-9)
    base = M.auc_judd(smooth_map, smooth_fixations, jitter=False)
    assert 0.9 < base < 1.0
    assert M.auc_judd(4.0 * smooth_map + 2.0, smooth_fixations, jitter=False) == pytest.approx(base, abs=1e-12)
    # the jitter is seeded: same seed, same value; and it barely moves a smooth map's score
    j = M.auc_judd(smooth_map, smooth_fixations, seed=3)
    assert j == M.auc_judd(smooth_map, smooth_fixations, seed=3)
    assert j == pytest.approx(base, abs=1e-3)
    assert math.isnan(M.auc_judd(np.ones((3, 3)), np.eye(3), jitter=False))


# ----------------------------------------------------------------------------------- AUC-Borji and shuffled


def _mit_fixed_step_auc(sth: np.ndarray, curfix: np.ndarray, n_neg: int, step: float) -> float:
    """Literal port of the per-split loop of MIT AUC_Borji.m / AUC_shuffled.m."""
    top = max(sth.max(), curfix.max())
    threshes = [k * step for k in range(int(math.floor(top / step + 1e-10)), -1, -1)]
    tp, fp = [0.0], [0.0]
    for t in threshes:
        tp.append(np.sum(sth >= t) / sth.size)
        fp.append(np.sum(curfix >= t) / n_neg)
    tp.append(1.0)
    fp.append(1.0)
    tp_a, fp_a = np.array(tp), np.array(fp)
    return float(np.sum((fp_a[1:] - fp_a[:-1]) * (tp_a[1:] + tp_a[:-1]) / 2))


def test_fixed_step_roc_hand_computed():
    # fixation values [1.0, 0.35], negatives [0.75, 0.0]; thresholds 1.0, 0.9, ..., 0.1, 0:
    #   t = 1.0 .. 0.8 : TP .5 (only 1.0), FP 0
    #   t = 0.7 .. 0.4 : TP .5,            FP .5 (0.75)
    #   t = 0.3 .. 0.1 : TP 1,             FP .5
    #   t = 0          : TP 1,             FP 1
    # curve (0,0) (0,.5) (.5,.5) (.5,1) (1,1): area 0 + .5*.5 + 0 + .5*1 = 0.75 (= rank AUC 3/4 here)
    assert M._auc_fixed_step(np.array([1.0, 0.35]), np.array([0.75, 0.0]), 0.1) == pytest.approx(0.75, abs=1e-12)
    # thresholds include the maximum itself (Matlab 0:step:max), e.g. 0:.1:.3 has 4 entries
    assert M._step_thresholds(0.3, 0.1) == pytest.approx([0.3, 0.2, 0.1, 0.0])
    assert len(M._step_thresholds(1.0, 0.1)) == 11


def test_auc_shuffled_hand_computed():
    # values already in [0, 1] (min 0, max 1), so min-max normalisation leaves them unchanged
    s = [[1.0, 0.75, 0.55], [0.35, 0.15, 0.0]]
    fix = [[1, 0, 0], [1, 0, 0]]  # 1.0 and 0.35
    other = [[0, 1, 0], [0, 0, 1]]  # 0.75 and 0.0: n_other = n_fix = 2, so every split uses both -> deterministic
    # same sweep as test_fixed_step_roc_hand_computed -> 0.75 for every split and every seed
    assert M.auc_shuffled(s, fix, other) == pytest.approx(0.75, abs=1e-12)
    assert M.auc_shuffled(s, fix, other, seed=123, n_splits=7) == pytest.approx(0.75, abs=1e-12)
    # min-max normalisation: an affine copy gives the same
    assert M.auc_shuffled(10 * np.array(s) + 5, fix, other) == pytest.approx(0.75, abs=1e-12)


def test_auc_shuffled_penalises_centre_bias():
    # a centre-bias map, fixations at the centre, "other images' fixations" also at the centre -> ~0.5,
    # although AUC-Judd for the same map is high
    yy, xx = np.mgrid[0:21, 0:21]
    centre = np.exp(-((yy - 10) ** 2 + (xx - 10) ** 2) / 20.0)
    rng = np.random.default_rng(0)
    fix, other = np.zeros((21, 21)), np.zeros((21, 21))
    fix[rng.integers(7, 14, 15), rng.integers(7, 14, 15)] = 1
    other[rng.integers(7, 14, 40), rng.integers(7, 14, 40)] = 1
    assert M.auc_judd(centre, fix) > 0.9
    assert M.auc_shuffled(centre, fix, other) == pytest.approx(0.5, abs=0.1)


def test_auc_shuffled_matches_literal_mit_loop(smooth_map, smooth_fixations):
    rng_other = np.random.default_rng(5)
    other = np.zeros_like(smooth_fixations)
    other[rng_other.integers(0, 24, 200), rng_other.integers(0, 32, 200)] = 1
    s = (smooth_map - smooth_map.min()) / (smooth_map.max() - smooth_map.min())
    S = s.ravel()
    sth = S[smooth_fixations.ravel() > 0]
    ind = np.flatnonzero(other.ravel())
    n_neg = min(sth.size, ind.size)
    rng = np.random.default_rng(11)
    aucs = [_mit_fixed_step_auc(sth, S[rng.permutation(ind)[:n_neg]], n_neg, 0.1) for _ in range(100)]
    got = M.auc_shuffled(smooth_map, smooth_fixations, other, seed=11)
    assert got == pytest.approx(np.mean(aucs), abs=1e-12)


def test_auc_borji_matches_literal_mit_loop(smooth_map, smooth_fixations):
    s = (smooth_map - smooth_map.min()) / (smooth_map.max() - smooth_map.min())
    S = s.ravel()
    sth = S[smooth_fixations.ravel() > 0]
    r = np.random.default_rng(42).integers(0, S.size, size=(sth.size, 100))  # the documented draws
    randfix = S[r]
    expected = np.mean([_mit_fixed_step_auc(sth, randfix[:, i], sth.size, 0.1) for i in range(100)])
    assert M.auc_borji(smooth_map, smooth_fixations, seed=42) == pytest.approx(expected, abs=1e-12)


def test_auc_borji_expected_value_of_binary_map():
    # S is 1 on the 10 fixated pixels of a 10x10 map and 0 elsewhere. Per split, with q = fraction of the random
    # negatives that land on a fixation: TP = 1 at every threshold, FP = q for t > 0 and 1 at t = 0, so the curve
    # is (0,0) (q,1) (1,1) with area q/2 + (1 - q) = 1 - q/2. E[q] = 10/100, so E[AUC] = 0.95; with 100 splits of
    # 10 draws the standard error of the mean is about sqrt(.1 * .9 / 1000) / 2 = 0.005.
    f = np.zeros((10, 10))
    f[np.arange(10), (3 * np.arange(10)) % 10] = 1
    vals = [M.auc_borji(f, f, seed=seed) for seed in range(5)]
    assert np.mean(vals) == pytest.approx(0.95, abs=0.01)
    assert all(0.9 <= v <= 1.0 for v in vals)


def test_auc_borji_seeding(smooth_map, smooth_fixations):
    a = M.auc_borji(smooth_map, smooth_fixations, seed=1)
    assert a == M.auc_borji(smooth_map, smooth_fixations, seed=1)
    assert a == M.auc_borji(smooth_map, smooth_fixations, seed=np.random.default_rng(1))
    assert a != M.auc_borji(smooth_map, smooth_fixations, seed=2)
    assert M.auc_borji(3 * smooth_map + 1, smooth_fixations, seed=1) == pytest.approx(a, abs=1e-12)
    assert 0.8 < a < 1.0
    assert math.isnan(M.auc_borji(np.ones((3, 3)), np.eye(3)))


# ---------------------------------------------------------------------------------------- information gain


def test_info_gain_hand_computed():
    s = [[2, 1], [1, 0]]  # min-max -> [1 .5; .5 0], sum 2 -> [.5 .25; .25 0]
    b = [[1, 1], [1, 0]]  # min-max -> [1 1; 1 0], sum 3 -> [1/3 1/3; 1/3 0]
    # one fixation at (0,0): log2(.5) - log2(1/3) = log2(1.5) = 0.5849625 bits
    assert M.info_gain(s, [[1, 0], [0, 0]], b) == pytest.approx(math.log2(1.5), abs=1e-12)
    # fixations at (0,0) and (0,1): mean(log2(1.5), log2(.75)) = .5 log2(1.125) = 0.0849625
    assert M.info_gain(s, [[1, 1], [0, 0]], b) == pytest.approx(0.5 * math.log2(1.125), abs=1e-12)
    # fixation on a pixel the map gives 0: log2(eps + 0) - log2(1/3) = -52 + log2(3) = -50.415 (eps matters)
    assert M.info_gain(s, [[0, 0], [0, 1]], [[1, 1], [1, 1]]) == pytest.approx(
        math.log2(M.EPS) - math.log2(M.EPS + 0.25), abs=1e-9)
    assert M.info_gain(s, [[0, 0], [1, 0]], b) == pytest.approx(math.log2(0.25 / (1 / 3)), abs=1e-12)


def test_info_gain_properties(smooth_map, smooth_fixations):
    assert M.info_gain(smooth_map, smooth_fixations, smooth_map) == pytest.approx(0.0, abs=1e-12)
    uniform = np.ones_like(smooth_map)
    gain = M.info_gain(smooth_map + 0.05, smooth_fixations, uniform)
    assert gain > 0
    assert M.info_gain(2 * smooth_map + 0.1, smooth_fixations, uniform) == pytest.approx(gain, abs=1e-12)
    # antisymmetric in (saliency, baseline)
    other = np.roll(smooth_map, 7, axis=1) + 0.01
    assert M.info_gain(other, smooth_fixations, smooth_map + 0.01) == pytest.approx(
        -M.info_gain(smooth_map + 0.01, smooth_fixations, other), abs=1e-12)


# -------------------------------------------------------------------------------------------------- R², RMSE


def test_r2_and_rmse_hand_computed():
    gt = [[1, 2], [3, 4]]  # mean 2.5, SS_tot = 2.25 + .25 + .25 + 2.25 = 5
    pred = [[1, 2], [3, 5]]  # residuals 0 0 0 -1, SS_res = 1
    assert M.r2(pred, gt) == pytest.approx(1 - 1 / 5, abs=1e-12)  # 0.8
    assert M.rmse(pred, gt) == pytest.approx(math.sqrt(1 / 4), abs=1e-12)  # 0.5
    assert M.r2(np.full((2, 2), 2.5), gt) == pytest.approx(0.0, abs=1e-12)  # predicting the mean
    # pred = [4 3; 2 1]: residuals -3 -1 1 3 -> SS_res = 20 -> R² = 1 - 20/5 = -3 ; RMSE = sqrt(20/4) = sqrt 5
    assert M.r2([[4, 3], [2, 1]], gt) == pytest.approx(-3.0, abs=1e-12)
    assert M.rmse([[4, 3], [2, 1]], gt) == pytest.approx(math.sqrt(5), abs=1e-12)


def test_r2_and_rmse_properties(smooth_map):
    assert M.r2(smooth_map, smooth_map) == 1.0
    assert M.rmse(smooth_map, smooth_map) == 0.0
    other = np.roll(smooth_map, 2, axis=0)
    # not scale invariant, unlike CC (R² is not CC²)
    assert M.r2(2 * other, smooth_map) != pytest.approx(M.r2(other, smooth_map), abs=1e-3)
    assert M.cc(2 * other, smooth_map) == pytest.approx(M.cc(other, smooth_map), abs=1e-12)
    assert M.rmse(other, smooth_map) == pytest.approx(M.rmse(smooth_map, other), abs=1e-15)
    assert math.isnan(M.r2(smooth_map[:2, :2], np.ones((2, 2))))


# ------------------------------------------------------------------------------------------------ agreement


def test_agreement_hand_computed():
    b = np.arange(100, dtype=float).reshape(10, 10)
    # top 2% of 100 pixels = 2 pixels: the 98 and the 99. Population std of 0..99 = sqrt((100^2 - 1) / 12)
    # = sqrt(833.25) = 28.8661; mean 49.5 -> NSS = ((98 - 49.5) + (99 - 49.5)) / 2 / 28.8661 = 49 / 28.8661 = 1.6975
    res = M.agreement(b, b)
    assert set(res) == {"cc", "kl", "sim", "nss_like"}
    assert res["cc"] == pytest.approx(1.0, abs=1e-12)
    assert res["kl"] == pytest.approx(0.0, abs=1e-12)
    assert res["sim"] == pytest.approx(1.0, abs=1e-12)
    assert res["nss_like"] == pytest.approx(49 / math.sqrt(833.25), abs=1e-12)
    # an affine copy: CC, SIM and NSS are unchanged, KL is not (an offset changes the distribution)
    res2 = M.agreement(2 * b + 50, b)
    assert res2["cc"] == pytest.approx(1.0, abs=1e-12)
    assert res2["sim"] == pytest.approx(1.0, abs=1e-12)
    assert res2["nss_like"] == pytest.approx(res["nss_like"], abs=1e-12)
    assert res2["kl"] > 0.01
    # ties at the cut are all fixations: a constant reference makes every pixel a fixation -> NSS of a = 0
    assert M.agreement(b, np.ones((10, 10)))["nss_like"] == pytest.approx(0.0, abs=1e-12)


def test_agreement_quantization_like_noise(smooth_map):
    rng = np.random.default_rng(0)
    step = (smooth_map.max() - smooth_map.min()) / 255
    q = np.round(smooth_map / step) * step  # 8-bit quantized copy
    noisy = np.clip(smooth_map + rng.normal(0, 0.2, smooth_map.shape), 0, None)
    good, bad = M.agreement(q, smooth_map), M.agreement(noisy, smooth_map)
    # KL stays small but not tiny: pixels rounded to 0 where the reference has mass m cost m * ln(m / eps) each
    assert good["cc"] > 0.999 and good["sim"] > 0.99 and good["kl"] < 0.02
    assert bad["cc"] < good["cc"] and bad["sim"] < good["sim"] and bad["kl"] > good["kl"]
    assert bad["nss_like"] < good["nss_like"]


# --------------------------------------------------------------------------------------------------- errors


TWO_MAP_METRICS = [M.cc, M.kl_div, M.sim, M.r2, M.rmse, M.agreement]
FIXATION_METRICS = [M.nss, M.auc_judd, M.auc_borji]


@pytest.mark.parametrize("fn", TWO_MAP_METRICS)
def test_shape_mismatch(fn):
    with pytest.raises(ValueError, match=r"shape \(2, 2\).*shape \(2, 3\)"):
        fn(np.ones((2, 2)), np.ones((2, 3)))


@pytest.mark.parametrize("fn", TWO_MAP_METRICS)
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite(fn, bad):
    a = np.ones((2, 2))
    a[0, 1] = bad
    with pytest.raises(ValueError, match="non-finite"):
        fn(a, np.ones((2, 2)))
    with pytest.raises(ValueError, match="non-finite"):
        fn(np.ones((2, 2)), a)


@pytest.mark.parametrize("fn", FIXATION_METRICS)
def test_fixation_errors(fn):
    s = np.arange(6.0).reshape(2, 3)
    with pytest.raises(InputError, match="no fixations"):
        fn(s, np.zeros((2, 3)))
    with pytest.raises(InputError, match="shape"):
        fn(s, np.ones((3, 2)))
    with pytest.raises(InputError, match="non-finite"):
        fn(s, [[1, np.nan, 0], [0, 0, 0]])
    with pytest.raises(InputError, match="non-finite"):
        fn([[1, np.nan, 0], [0, 0, 0]], [[1, 0, 0], [0, 0, 0]])


def test_other_fixation_and_baseline_errors():
    s, f = np.arange(6.0).reshape(2, 3), [[1, 0, 0], [0, 0, 0]]
    with pytest.raises(InputError, match="no fixations"):
        M.auc_shuffled(s, f, np.zeros((2, 3)))
    with pytest.raises(InputError, match="other_fixations has shape"):
        M.auc_shuffled(s, f, np.ones((3, 2)))
    with pytest.raises(InputError, match="no fixations"):
        M.auc_shuffled(s, np.zeros((2, 3)), f)
    with pytest.raises(InputError, match="baseline has shape"):
        M.info_gain(s, f, np.ones((3, 2)))
    with pytest.raises(InputError, match="no fixations"):
        M.info_gain(s, np.zeros((2, 3)), s)
    with pytest.raises(InputError, match="non-finite"):
        M.info_gain(s, f, np.full((2, 3), np.inf))


def test_other_errors():
    with pytest.raises(InputError, match="every pixel is fixated"):
        M.auc_judd([[1, 2], [3, 4]], np.ones((2, 2)))
    with pytest.raises(InputError, match="negative"):
        M.kl_div([[1, -1]], [[1, 1]])
    with pytest.raises(InputError, match="negative"):
        M.agreement([[1, 1]], [[1, -1]])
    with pytest.raises(InputError, match="2-D"):
        M.cc(np.ones(4), np.ones(4))
    with pytest.raises(InputError, match="squeeze"):
        M.nss(np.ones((1, 1, 2, 2)), np.ones((1, 1, 2, 2)))
    with pytest.raises(InputError, match="empty"):
        M.cc(np.ones((0, 3)), np.ones((0, 3)))
    with pytest.raises(InputError, match="real-valued"):
        M.cc([["a", "b"]], [["c", "d"]])
    with pytest.raises(InputError, match="n_splits"):
        M.auc_borji([[1, 2]], [[1, 0]], n_splits=0)
    with pytest.raises(InputError, match="step"):
        M.auc_shuffled([[1, 2]], [[1, 0]], [[0, 1]], step=0)
    with pytest.raises(InputError, match="top_fraction"):
        M.agreement([[1, 2]], [[1, 2]], top_fraction=0)
    with pytest.raises(InputError, match="ddof"):
        M.nss([[1, 2]], [[1, 0]], ddof=2)
    with pytest.raises(InputError, match="eps"):
        M.kl_div([[1, 2]], [[1, 2]], eps=-1.0)


def test_inputs_are_not_modified(smooth_map, smooth_fixations):
    s, f = smooth_map.copy(), smooth_fixations.copy()
    for fn in (M.nss, M.auc_judd, M.auc_borji):
        fn(s, f)
    M.auc_shuffled(s, f, f)
    M.info_gain(s, f, s)
    M.agreement(s, s)
    assert np.array_equal(s, smooth_map) and np.array_equal(f, smooth_fixations)


def test_accepts_lists_ints_and_float32():
    a = np.array([[1, 2], [3, 4]], dtype=np.uint8)
    assert M.cc(a, a.astype(np.float32)) == pytest.approx(1.0)
    assert isinstance(M.cc([[1, 2], [3, 4]], [[1, 3], [2, 4]]), float)
    assert isinstance(M.auc_judd(a, [[0, 0], [0, 1]]), float)


def test_fidelity_gate_compares_only_the_image_content_of_letterboxed_inputs(smooth_map):
    """Letterbox bands (constant input, easy to reproduce) must not inflate the agreement of a gated artifact;
    the model output here is twice the input resolution, as UMSI's is."""
    from salsdk.geometry import Geometry
    from salsdk.quantize.fidelity import LETTERBOX_NOTE, compare_outputs

    reference = np.zeros((1, 1, 48, 32))
    reference[0, 0, 12:36] = smooth_map  # content rows 12..36 of the output; bands above and below
    reference[0, 0, :12] = reference[0, 0, 36:] = np.linspace(0, 3, 32)  # a strong pattern in the bands
    candidate = reference.copy()
    candidate[0, 0, 12:36] = smooth_map[::-1]  # the content itself is wrong
    geometry = [Geometry(original_hw=(60, 80), input_hw=(24, 16), content=(6, 0, 12, 16), letterbox=True)]
    whole = compare_outputs([reference], [candidate], ["x"], 0.99)
    content = compare_outputs([reference], [candidate], ["x"], 0.99, geometry=geometry)
    assert whole.cc_min > 0.5 and whole.notes == []
    assert content.cc_min == pytest.approx(M.cc(smooth_map[::-1], smooth_map)) and content.notes == [LETTERBOX_NOTE]
    full_geometry = [Geometry(original_hw=(24, 16), input_hw=(24, 16), content=(0, 0, 24, 16))]
    assert compare_outputs([reference], [candidate], ["x"], 0.99, geometry=full_geometry).cc_min == whole.cc_min


def test_auc_borji_of_a_single_fixation_is_nan_as_in_the_mit_code():
    saliency = np.arange(12.0).reshape(3, 4)
    one = np.zeros((3, 4))
    one[2, 3] = 1
    assert math.isnan(M.auc_borji(saliency, one))
    one[0, 0] = 1
    assert not math.isnan(M.auc_borji(saliency, one))


def test_only_positive_entries_are_fixations():
    """MIT uses ``fixationMap > 0``: negative entries of a fixation map are not fixations."""
    saliency = np.arange(12.0).reshape(3, 4)
    positive = np.zeros((3, 4))
    positive[2, 2:] = 1
    with_negatives = positive.copy()
    with_negatives[0, :2] = -1
    for metric in (M.nss, M.auc_judd, M.auc_borji):
        assert metric(saliency, with_negatives) == metric(saliency, positive)
    with pytest.raises(InputError, match="no fixations"):
        M.nss(saliency, -np.ones((3, 4)))
