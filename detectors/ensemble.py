"""The default streaming ensemble, vectorised over series: robust baselines, five tests (spike, level
shift, trend, variance change, stuck value) on up to three views of each series (the values, and
the values against the same phase of earlier days / weeks), one calibrated score.

Every statistic is causal (a point is scored against medians and scales of the points *before* it)
and is either a moving median over a bounded window (kept as a per-series tail buffer) or a linear
exponential recursion (carried as filter state). Both continue exactly across calls, so scores do not
depend on how a stream is cut into blocks: scoring 1 point at a time, 1,000 at a time, or a prefix of
the stream gives the same numbers. The only Python-level loop runs over the (rare) candidate alerts
to follow each series' anomalous episodes (onset, firing, recovery).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

import bottleneck as bn
import numpy as np
from forewarn.detectors.calibrate import GGTail
from scipy.signal import lfilter

COMPONENTS = ("spike", "level", "trend", "variance", "stuck")
_MAD_TO_SIGMA = 1.4826
# smallest typical size of each test statistic: where deviations sit at the scale floor (a flat or
# noise-free stretch), rounding noise must not be amplified into signal by the calibration
_RMS_FLOOR = (0.3, 0.3, 0.3, 0.3, 0.3)
_TAIL = GGTail()
_PRIOR_N = 30.0


@dataclass(frozen=True)
class EnsembleParams:
    """Parameters of the default ensemble; the defaults are the ones chosen on the synthetic corpus.

    >>> EnsembleParams().window
    96
    """

    window: int = 96  # points in the robust scale (moving median of absolute deviations)
    base: int = 8  # points in the local baseline (moving median) each point is compared with
    short: int = 6  # points in the level-shift test's recent median
    long: int = 30  # points in the trend / variance test's recent window
    z_cap: float = 10.0  # a test statistic counts at most this much when learning its typical size
    half_life: float = 2000.0  # points of memory of the score calibration
    warmup: int = 120  # points seen before any alert may fire
    # An alert opens an *episode* that stays firing while the score keeps returning above the
    # release level (the square root of the threshold's tail probability: half its surprise) and
    # ends after ``quiet`` points below it; the next alert needs a recovery first. Nothing grows
    # with history: a new anomaly after a recovery alerts again ``quiet`` points later at most.
    quiet: int = 12
    max_episode: int = 360  # an episode ends after this many points: what lasts is the new normal
    refractory: int = 0  # > 0: at least this many points between two alerts of one series
    # a young series' calibration rests on few points: until it has seen ``ramp * warmup`` points
    # its tail probability must be smaller in proportion (half as old: half the threshold's)
    ramp: float = 2.0
    threshold: float = 0.995  # alert when the calibrated score reaches this (Settings.detectors.threshold)
    components: tuple[str, ...] = COMPONENTS
    rate_view: bool = False  # also test the point-to-point changes (counters, random walks)
    seasons: int = 3  # past periods whose median predicts the current point in a seasonal branch
    # a view has a say where its robust scale is at most this times the best view's
    seasonal_gain: float = 2.0
    max_period: int = 2016  # longest period (points) kept in memory: weekly at 5-minute steps
    # when every view with a say finds a point at least this unusual and a seasonal view finds it
    # ``seasonal_margin`` times rarer than the threshold, that seasonal view decides (1.0: the least
    # surprised view always decides)
    agree: float = 0.9
    seasonal_margin: float = 10.0
    # > 0: a seasonal view decides a *spike* only on series it explains, where its mean squared
    # residual has been at most this fraction of the series' own variance (a drifting sensor's
    # "same time yesterday" predicts little, a square daily wave's almost everything). Opt-in:
    # measured, not the default (see docs/detectors-history.md)
    seasonal_fit: float = 0.0
    # spikes beyond ``z_cap`` become routine after this many of them in the calibration memory
    routine_after: float = 10.0
    # Where the sampling step is known (``forewarn detect``), the threshold is a rarity per this
    # many seconds of the series rather than per point: a 1-minute series must be 5 times rarer
    # per point, an hourly one may be up to ``max_per_step`` times less rare, and a faster one at
    # most that many times rarer (see ``for_step``). 0: per point, whatever the step.
    per_s: float = 300.0
    max_per_step: float = 12.0
    # Where the step is known, an episode also ends after ``quiet_s`` seconds back in band when
    # that is fewer than ``quiet`` points (at least ``min_quiet``): on an hourly series twelve
    # points are half a day, and a second incident the same morning deserves its own alert.
    quiet_s: float = 3600.0
    min_quiet: int = 6
    # True where a cold-start detector watches each series while this one learns (the flows): an
    # anomaly already going on when the series becomes warm was that detector's to report, so only
    # a stretch of unusual scores that begins after the warm-up alerts. False (``forewarn detect``,
    # which has no other detector): it alerts at the first warm point.
    handover: bool = False

    def __post_init__(self) -> None:
        if self.window < 8 or self.short < 2 or self.long < self.short:
            raise ValueError("need window >= 8 and 2 <= short <= long")
        if not 0 < self.threshold <= 1:
            raise ValueError("threshold must be in (0, 1]")
        if self.quiet < 1 or self.refractory < 0 or self.max_episode < 1:
            raise ValueError("need quiet >= 1, max_episode >= 1 and refractory >= 0")
        if self.per_s < 0 or self.max_per_step < 1 or self.quiet_s < 0 or self.min_quiet < 1:
            raise ValueError("need per_s >= 0, max_per_step >= 1, quiet_s >= 0 and min_quiet >= 1")
        if not 0 <= self.agree <= 1 or self.seasonal_margin < 1:
            raise ValueError("need 0 <= agree <= 1 and seasonal_margin >= 1")
        unknown = set(self.components) - set(COMPONENTS)
        if unknown or not self.components:
            raise ValueError(f"unknown components {sorted(unknown)}; choose from {COMPONENTS}")


NO_GUARD = -2  # an episode too short to move the baselines ended: no way back to guard
_NEVER = np.iinfo(np.int64).max // 2
COUNT_MAX_MEAN = 30.0  # above this mean a count is near enough to Gaussian for the robust tests
COUNT_MIN_POINTS = 30.0  # (weighted) points before a series is judged as counts
SPARSE_MIN_ZERO = 0.75  # share of exact zeros (weighted) that makes a series mostly zero
SPARSE_MIN_NONZERO = 5.0  # (weighted) non-zero points of a mostly-zero series before their sizes count
SPARSE_MIN_SD = 0.1  # log-size spread at least this (sizes within 10 % are not "unusual")
SPARSE_TESTS = (0, 3)  # the tests a mostly-zero series' usual blips fool: spike and variance


@dataclass
class SparseModel:
    """Series that are exactly 0 most of the time (intermittent: errors, rare jobs, idle queues).

    ``like``: (series, points) bool, mostly 0 before this point; ``p``: the upper tail probability
    of this point's size among the series' earlier non-zero values (log-normal; 1 at a 0)."""

    like: np.ndarray
    p: np.ndarray


@dataclass
class CountModel:
    """Small whole counts of some series: rate (``mu``) and variance learnt before each point."""

    like: np.ndarray  # (series, points) bool: judged as counts
    mu: np.ndarray
    var: np.ndarray
    xe: np.ndarray  # recent values then the new ones, (series, tail + points)
    tl: int

    @property
    def any(self) -> bool:
        return bool(self.like.any())

    def tail(self, need: np.ndarray, width: int, nb: int) -> np.ndarray:
        """Two-sided tail probability of the sum of the last ``width`` values at the ``need`` points
        (rows are ``nb`` views per series; every view gets its series' count tail)."""
        from scipy.stats import nbinom, poisson

        k = self.like.shape[1]
        sums = bn.move_sum(self.xe, width, min_count=1, axis=1)[:, self.tl : self.tl + k]
        r, cidx = np.nonzero(need)
        sr = r // nb
        m = width * self.mu[sr, cidx]
        v = width * self.var[sr, cidx]
        obs = sums[sr, cidx]
        out = np.ones(need.shape)
        over = v > m * 1.05
        with np.errstate(invalid="ignore", divide="ignore"):
            n_nb = np.where(over, m * m / np.where(over, v - m, 1.0), 1.0)
            p_nb = np.where(over, m / np.where(over, v, 1.0), 0.5)
            hi = np.where(over, nbinom.sf(obs - 1, n_nb, p_nb), poisson.sf(obs - 1, m))
            lo = np.where(over, nbinom.cdf(obs, n_nb, p_nb), poisson.cdf(obs, m))
        out[r, cidx] = np.nan_to_num(np.fmin(1.0, 2.0 * np.fmin(hi, lo)), nan=1.0)
        return out


@dataclass
class ScoreBlock:
    """Scores of a block of points, arrays shaped (series, points)."""

    score: np.ndarray  # calibrated score in [0, 1]; held just below the threshold where it cannot alert
    raw: np.ndarray  # calibrated score before the warm-up / episode hold
    alert: np.ndarray  # bool: an episode starts here (a new alert)
    component: np.ndarray  # int index into ``components`` of the strongest test
    expected: np.ndarray  # the baseline the point was compared with
    observed: np.ndarray  # what was compared: the value, or the recent median for level / trend
    lower: np.ndarray  # expected band: a value outside it would trip the spike test
    upper: np.ndarray
    # the view that decided: 0 the values themselves, then the rate view if on, then one per period
    branch: np.ndarray | None = None
    views: tuple[str, ...] = ("recent values",)
    components: tuple[str, ...] = field(default=COMPONENTS)
    firing: np.ndarray | None = None  # bool: inside an episode (from its alert until it recovers)
    # bool: firing points still outside the band the episode left (its onset included); the
    # ``quiet`` points that close an episode fire but no longer deviate
    active: np.ndarray | None = None


def _ew(values: np.ndarray, last: np.ndarray, lam: float) -> np.ndarray:
    """Exponentially weighted sum ``y_t = lam*y_(t-1) + v_t`` along axis 1, continuing from ``last``."""
    out, _ = lfilter([1.0], [1.0, -lam], values, axis=1, zi=lam * last[:, None])
    return out


def _ew_before(values: np.ndarray, state: np.ndarray, col: int, lam: float) -> np.ndarray:
    """The exponentially weighted sum *before* each point (what was learnt when it came), continuing
    from and then updating column ``col`` of ``state``."""
    y = _ew(values, state[:, col], lam)
    out = np.concatenate([state[:, col : col + 1], y[:, :-1]], axis=1)
    state[:, col] = y[:, -1]
    return out


class EnsembleCore:
    """State and vectorised update of the default ensemble for a fixed set of S series.

    >>> import numpy as np
    >>> core = EnsembleCore(2)
    >>> rng = np.random.default_rng(0)
    >>> x = np.sin(np.arange(400) / 50.0) + rng.normal(0, 0.1, (2, 400))
    >>> x[1, 300] += 2.0
    >>> block = core.update(x)
    >>> bool(block.alert[0].any()), int(np.argmax(block.alert[1]))
    (False, 300)
    """

    def __init__(
        self, n_series: int, params: EnsembleParams | None = None, periods: tuple[int, ...] = ()
    ) -> None:
        self.params = params or EnsembleParams()
        p = self.params
        self.n_series = n_series
        self.periods = tuple(int(q) for q in periods if 2 <= int(q) <= p.max_period)
        self._rate = 1 if p.rate_view else 0
        self._branches = 1 + self._rate + len(self.periods)
        self._hist = p.seasons * max(self.periods, default=0)
        self.views = (
            ("recent values",)
            + ("point-to-point changes",) * self._rate
            + tuple(f"the same phase of the last {p.seasons} {q}-point periods" for q in self.periods)
        )
        self._tail = p.window + 2 * p.long + p.base + 1
        self._ztail = max(8, p.window)
        self._lam = 0.5 ** (1.0 / p.half_life)
        self._zcap = p.z_cap
        # per-test tail probability at which the combined score reaches the threshold
        self._p_alert = max(1.0 - p.threshold ** (1.0 / len(p.components)), 1e-300)
        self._comp_idx = np.array([COMPONENTS.index(c) for c in p.components])
        self.state: dict[str, np.ndarray] = self._empty(n_series)

    # -- state ---------------------------------------------------------------------------------
    def _empty(self, n: int) -> dict[str, np.ndarray]:
        c, b = len(COMPONENTS), self._branches
        return {
            "tail_x": np.full((n, b, self._tail), np.nan),
            "tail_dev": np.full((n, b, self._tail), np.nan),
            "ew_w": np.zeros((n, b, c)),
            "ew_s1": np.zeros((n, b, c)),
            "tail_z": np.full((n, b, 2 * self._ztail), np.nan),
            "run": np.zeros((n, 1)),
            "rep_n": np.zeros((n, 1)),
            "rep_w": np.zeros((n, 1)),
            "ew_s2": np.zeros((n, b, c)),
            "ew_big": np.zeros((n, b)),
            # weight, sum, sum of squares of x; then weight and sum of squares of each view
            "ew_fit": np.zeros((n, 3 + 2 * b)),
            # weight, sum, sum of squares of the values, and weight of those that are whole counts
            "ew_cnt": np.zeros((n, 4)),
            # weight of the values, of the zeros, of the non-zeros; sum and sum of squares of the
            # non-zeros' log sizes
            "ew_sparse": np.zeros((n, 5)),
            "history": np.full((n, self._hist), np.nan),
            "last": np.full((n, 1), np.nan),
            "seen": np.zeros(n, dtype=np.int64),
            # episodes: 1 while firing; points since the last point above the release level
            # (firing) and since the last alert
            "firing": np.zeros(n, dtype=np.int8),
            "since_above": np.full(n, np.iinfo(np.int64).max // 2, dtype=np.int64),
            "since_alert": np.full(n, np.iinfo(np.int64).max // 2, dtype=np.int64),
            # the open episode: its age (points), the view that alerted and that view's normal
            # band at the alert, which the series must return into before the episode can end
            "ep_age": np.zeros(n, dtype=np.int64),
            "ep_view": np.zeros(n, dtype=np.int64),
            "ep_band": np.zeros((n, 2)),
            "since_end": np.full(n, np.iinfo(np.int64).max // 2, dtype=np.int64),
            "since_hot": np.full(n, np.iinfo(np.int64).max // 2, dtype=np.int64),
            # points seen when the current stretch above the release level began
            "hot_from": np.zeros(n, dtype=np.int64),
        }

    def add_series(self, n: int) -> None:
        """Grow by ``n`` fresh series (a series that starts mid-stream starts from empty state)."""
        new = self._empty(n)
        self.state = {k: np.concatenate([v, new[k]]) for k, v in self.state.items()}
        self.n_series += n

    def take(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        return {k: v[rows].copy() for k, v in self.state.items()}

    def put(self, rows: np.ndarray, sub: dict[str, np.ndarray]) -> None:
        for k, v in sub.items():
            self.state[k][rows] = v

    # -- scoring -------------------------------------------------------------------------------
    def update(self, values: np.ndarray, rows: np.ndarray | None = None) -> ScoreBlock:
        """Learn and score ``values`` (series, points) in time order; ``rows`` picks a subset of series."""
        x = np.asarray(values, dtype=np.float64)
        if x.ndim != 2:
            raise ValueError("values must be 2-D (series, points)")
        if rows is None:
            if x.shape[0] != self.n_series:
                raise ValueError(f"expected {self.n_series} series, got {x.shape[0]}")
            st = self.state
        else:
            st = self.take(rows)
        x = np.where(np.isfinite(x), x, np.nan)
        if x.shape[1] == 0:  # nothing new: nothing learnt, nothing scored
            e = np.zeros(x.shape)
            return ScoreBlock(
                e, e, e.astype(bool), e.astype(np.intp), e, e, e, e, e.astype(np.intp),
                self.views, firing=e.astype(bool), active=e.astype(bool),
            )  # fmt: skip
        block = self._score(st, x)
        if rows is not None:
            self.put(rows, st)
        return block

    def _score(self, st: dict[str, np.ndarray], x: np.ndarray) -> ScoreBlock:
        n, k = x.shape
        nb = self._branches
        # stuck: how many times in a row the previous value repeated exactly (a frozen sensor or
        # exporter), counted on the series itself and shared by all views; series that often repeat
        # (small counts) learn that it is routine
        same = x == np.concatenate([st["tail_x"][:, 0, -1:], x[:, :-1]], axis=1)
        j = np.arange(k)
        last_reset = np.maximum.accumulate(np.where(same, -1, j), axis=1)
        run = np.where(last_reset >= 0, j - last_reset, st["run"] + j + 1).astype(np.float64)
        st["run"] = run[:, -1:].copy()
        # chance of a run this long if each point repeats its predecessor with the series' own
        # (exponentially weighted) repeat rate: exact for the geometric law, no fitting needed
        okx = np.isfinite(x)
        rep = _ew((same & okx).astype(np.float64), st["rep_n"][:, 0], self._lam)
        wts = _ew(okx.astype(np.float64), st["rep_w"][:, 0], self._lam)
        prep = np.concatenate([st["rep_n"], rep[:, :-1]], axis=1)
        pwts = np.concatenate([st["rep_w"], wts[:, :-1]], axis=1)
        st["rep_n"], st["rep_w"] = rep[:, -1:].copy(), wts[:, -1:].copy()
        rate_rep = (prep + 0.5) / (pwts + 1.0)
        p_stuck = np.where(okx & (run <= self.params.window), rate_rep**run, 1.0)
        run = np.where(okx, run, np.nan)
        branches, preds = [x], [np.zeros_like(x)]
        if self._rate:
            # the change since the previous point: counters become rates, random walks become steps
            prev = np.concatenate([st["last"], x[:, :-1]], axis=1)
            branches.append(x - prev)
            preds.append(prev)
            st["last"] = x[:, -1:].copy()
        if self.periods:
            # seasonal branches: each point minus the median of the same phase in the last periods
            h = self._hist
            he = np.concatenate([st["history"], x], axis=1)
            for q in self.periods:
                lags = np.stack([he[:, h - j * q : h - j * q + k] for j in range(1, self.params.seasons + 1)])
                with np.errstate(all="ignore"):
                    pred = bn.nanmedian(lags, axis=0)
                preds.append(pred)
                branches.append(x - pred)
            st["history"] = he[:, -h:]
        counts = self._counts(st, x)
        sparse = self._sparse(st, x)
        keys = ("tail_x", "tail_dev", "ew_w", "ew_s1", "ew_s2", "tail_z", "ew_big")
        flat = {key: st[key].reshape(n * nb, -1) for key in keys}
        xb = np.stack(branches, axis=1).reshape(n * nb, k)
        raw, comp, expected, observed, band, scale, band_pt = (
            a.reshape(n, nb, k)
            for a in self._tests(
                flat, xb, np.repeat(run, nb, axis=0), np.repeat(p_stuck, nb, axis=0), nb, counts, sparse
            )
        )
        for key in flat:
            st[key] = flat[key].reshape(st[key].shape)
        # A view (recent points, changes, or the same phase of earlier periods) has a say where it is
        # competitive: its recent robust scale is at most ``seasonal_gain`` times the best view's.
        # Seasonal views count once 64 points, the span that decided the periods, were seen. A point
        # must be surprising under every view that has a say: a recurring pattern (a nightly batch
        # job) is not an incident, and a past incident does not echo a period later. Where every
        # view finds the point at least ``agree`` unusual and the surest seasonal view finds it
        # ``seasonal_margin`` times rarer than the threshold asks, that view decides: a square daily
        # wave jumping higher than ever is only half-excused by the plain view, whose calibration
        # learnt the daily edges as routine.
        grown = (st["seen"][:, None] + np.cumsum(np.isfinite(x), axis=1))[:, None, :] >= 64
        grown[:, : 1 + self._rate] = True
        eligible = np.isfinite(raw) & np.isfinite(scale) & grown
        if self._rate:  # changes are noisier than levels (sqrt 2 for white noise): they must win clearly
            scale = scale.copy()
            scale[:, 1] *= 4.0
        best = np.min(np.where(eligible, scale, np.inf), axis=1, keepdims=True)
        say = eligible & (scale <= self.params.seasonal_gain * best)
        say[:, 0] |= ~eligible[:, 0]
        rv = np.nan_to_num(raw, nan=0.0)
        least = np.zeros((n, 1, k), dtype=np.intp)  # one view: it decides
        if nb > 1:
            least = np.argmin(np.where(say, rv, np.inf), axis=1)[:, None]
        sel = least
        if self.params.agree < 1.0 and self.periods:
            p = self.params
            seas = say & (rv >= 1.0 - (1.0 - p.threshold) / p.seasonal_margin)
            if p.seasonal_fit > 0:
                seas &= (comp != 0) | self._explained(st, x, np.stack(branches, axis=1))
            seas[:, : 1 + self._rate] = False
            most = np.argmax(np.where(seas, rv, -np.inf), axis=1)[:, None]
            override = (np.take_along_axis(rv, least, axis=1) >= p.agree) & seas.any(axis=1, keepdims=True)
            sel = np.where(override, most, least)

        def pick(a: np.ndarray) -> np.ndarray:
            return a[:, 0] if nb == 1 else np.take_along_axis(a, sel, axis=1)[:, 0]

        offset = pick(np.stack(preds, axis=1))
        exp_x = pick(expected) + offset
        obs_x = np.where(np.isfinite(x), pick(observed) + offset, x)
        raw_x = np.where(np.isfinite(x), pick(raw), 0.0)
        views = np.stack(branches, axis=1)
        score, alert, firing, active = self._episodes(
            st, raw_x, np.isfinite(x), views, sel[:, 0], pick(expected), pick(band_pt)
        )
        bw = pick(band)
        return ScoreBlock(
            score=score,
            raw=raw_x,
            alert=alert,
            component=pick(comp),
            expected=exp_x,
            observed=obs_x,
            lower=exp_x - bw,
            upper=exp_x + bw,
            branch=sel[:, 0],
            views=self.views,
            firing=firing,
            active=active,
        )

    def _tests(
        self,
        st: dict[str, np.ndarray],
        x: np.ndarray,
        run: np.ndarray,
        p_stuck: np.ndarray,
        nb: int = 1,
        counts: CountModel | None = None,
        sparse: SparseModel | None = None,
    ) -> tuple[np.ndarray, ...]:
        """The four tests and their calibration on rows of ``x``; updates tails and filter state."""
        p = self.params
        n, k = x.shape
        tl, w, m, m2 = self._tail, p.window, p.short, p.long
        xe = np.concatenate([st["tail_x"], x], axis=1)
        b = p.base
        med = bn.move_median(xe, b, min_count=(b + 1) // 2, axis=1)
        base = med[:, tl - 1 : tl + k - 1]  # local baseline of each new point: median of the points before it
        dev = np.abs(x - base)
        deve = np.concatenate([st["tail_dev"], dev], axis=1)
        mc = max(4, w // 4)
        mad = bn.move_median(deve, w, min_count=mc, axis=1)
        mdev = bn.move_mean(deve, w, min_count=mc, axis=1)
        # scales never go below a billionth of the series' own magnitude (rows come in groups of
        # ``nb`` views of one series; the first is the series itself): rounding noise is not signal
        mag = np.abs(np.nan_to_num(xe.reshape(-1, nb, xe.shape[1])[:, :1, :]))
        tiny = np.broadcast_to(1e-9 * (1.0 + mag), (mag.shape[0], nb, xe.shape[1])).reshape(xe.shape)
        scale_e = np.where(np.isnan(mad), np.nan, np.fmax(np.fmax(_MAD_TO_SIGMA * mad, mdev), tiny))
        scale = scale_e[:, tl - 1 : tl + k - 1]
        new = slice(tl, tl + k)

        z = np.full((len(COMPONENTS), n, k), np.nan)
        z[0] = dev / scale
        short_med = bn.move_median(xe, m, min_count=(m + 1) // 2, axis=1)
        long_med = bn.move_median(xe, m2, min_count=(m2 + 1) // 2, axis=1)
        ref_m = slice(tl - m, tl - m + k)
        ref_m2 = slice(tl - m2, tl - m2 + k)
        # level: the last ``short`` points against the ``base`` points just before them
        z[1] = np.abs(short_med[:, new] - med[:, ref_m]) / scale_e[:, ref_m] * np.sqrt(m)
        # trend: the last ``long`` points against the ``long`` points before them
        z[2] = np.abs(long_med[:, new] - long_med[:, ref_m2]) / scale_e[:, ref_m2] * np.sqrt(m2)
        # variance: the recent spread against the usual one, as a log ratio in units of its noise
        # (a median of ``long`` absolute deviations varies by about 1.2/sqrt(long) in log terms);
        # both spreads use the scale's own estimator (the larger of the scaled median and the mean
        # absolute deviation), so mostly-zero or coarsely quantised series, whose median deviation
        # is 0, do not read as a collapse of the spread
        mc2 = (m2 + 1) // 2
        recent_med = bn.move_median(deve, m2, min_count=mc2, axis=1)[:, new]
        recent = np.fmax(_MAD_TO_SIGMA * recent_med, bn.move_mean(deve, m2, min_count=mc2, axis=1)[:, new])
        z[3] = np.abs(np.log((recent + tiny[:, new]) / scale_e[:, ref_m2])) * (np.sqrt(m2) / 1.2)
        # where most deviations are exactly 0 (sparse counts) the usual spread comes from rare events,
        # and a quiet stretch without one is routine: only a wider spread counts there
        z[3] = np.where((mad[:, ref_m2] == 0) & (recent < scale_e[:, ref_m2]), 0.0, z[3])
        # a series that mostly stopped moving (a heap limit between two resizes, a disk after its
        # clean-up) has no spread left to compare: a frozen value is the stuck test's
        z[3] = np.where((recent_med == 0) & (recent < scale_e[:, ref_m2]), 0.0, z[3])
        z[4] = np.where(run <= w, np.log1p(run), 0.0)  # frozen for longer than the window: the new normal

        # Calibration: each test statistic's own distribution so far, as a generalised Gaussian whose
        # scale and tail shape come from exponentially weighted first and second moments (values
        # capped while learning). Gaussian-like series keep Gaussian tails; spiky ones get the heavy
        # tails they have, so their everyday bursts are not surprising.
        # Level and trend statistics are large all the time on smooth, swinging series: while
        # learning, they are capped relative to their own recent median (the ``window`` values
        # before), so routine swings are learnt as routine and a sudden change is not.
        zt = self._ztail
        tz = st["tail_z"].reshape(n, 2, zt).transpose(1, 0, 2)
        zl = np.concatenate([tz, z[1:3]], axis=2)  # (2, rows, tail + k)
        st["tail_z"] = zl[:, :, -zt:].transpose(1, 0, 2).reshape(n, 2 * zt)
        zref = bn.move_median(zl, zt, min_count=zt // 4, axis=2)[:, :, zt - 1 : -1]
        cap = np.full_like(z, self._zcap)
        cap[1:3] = self._zcap * np.fmax(zref, 0.6745) / 0.6745

        ok = np.isfinite(z)
        zc = np.where(ok, np.minimum(z, cap), 0.0)
        lam = self._lam
        pval = np.ones_like(z)
        spike_limit = np.full((n, k), np.nan)
        for c in range(len(COMPONENTS)):
            ww = _ew(ok[c].astype(np.float64), st["ew_w"][:, c], lam)
            ws1 = _ew(zc[c], st["ew_s1"][:, c], lam)
            ws2 = _ew(zc[c] ** 2, st["ew_s2"][:, c], lam)
            pw = np.concatenate([st["ew_w"][:, c : c + 1], ww[:, :-1]], axis=1)
            ps1 = np.concatenate([st["ew_s1"][:, c : c + 1], ws1[:, :-1]], axis=1)
            ps2 = np.concatenate([st["ew_s2"][:, c : c + 1], ws2[:, :-1]], axis=1)
            st["ew_w"][:, c], st["ew_s1"][:, c], st["ew_s2"][:, c] = ww[:, -1], ws1[:, -1], ws2[:, -1]
            with np.errstate(invalid="ignore", divide="ignore"):
                f = _RMS_FLOOR[c]
                # a prior worth ``_PRIOR_N`` points of Laplace-tailed statistics keeps young
                # series (few points learnt) from trusting thin early tails
                m1 = np.fmax((ps1 + _PRIOR_N * 1.0) / (pw + _PRIOR_N), 0.8 * f)
                m2 = np.fmax((ps2 + _PRIOR_N * 2.0) / (pw + _PRIOR_N), f * f)
                pval[c] = _TAIL.tail(z[c], m1, m2)
                if c == 4:  # both the fitted tail and the geometric law must find the run unusual
                    pval[c] = np.fmax(pval[c], p_stuck)
                if c == 0:  # the deviation a spike needs to reach the threshold: the honest band
                    spike_limit = _TAIL.limit(m1, m2, self._p_alert)
                    pval[0] = self._beyond_cap(st, z[0], ok[0], pval[0], pw)
            pval[c][(pw < 5.0) | ~ok[c]] = 1.0
        if counts is not None and counts.any:
            # small whole counts: a point must also be unlikely as a count (see ``_counts``); the
            # level, trend and variance tests judge the sum of their recent window
            rows = np.repeat(counts.like, nb, axis=0)
            for c, width in ((0, 1), (1, p.short), (2, p.long), (3, p.long)):
                need = rows & (pval[c] < 0.01)
                if need.any():
                    pval[c] = np.where(need, np.fmax(pval[c], counts.tail(need, width, nb)), pval[c])
        if sparse is not None:
            # mostly-zero series: the scale of their deviations comes from rare events, so any
            # blip is far out; a point must also be a larger blip than the series' usual ones
            rows = np.repeat(sparse.like, nb, axis=0)
            pm = np.repeat(sparse.p, nb, axis=0)
            for c in SPARSE_TESTS:
                pval[c] = np.where(rows, np.fmax(pval[c], pm), pval[c])
        pc = pval[self._comp_idx]
        which = np.argmin(pc, axis=0)
        pmin = np.take_along_axis(pc, which[None], axis=0)[0]
        raw = (1.0 - pmin) ** len(self._comp_idx)  # Šidák: chance that none of the tests is this extreme
        component = self._comp_idx[which]

        # Expected value and band of the strongest test, in the series' units.
        # level / trend compare medians: their observed value is the recent median and their band
        # shrinks with the number of points in it
        expected = np.select([component == 1, component == 2], [med[:, ref_m], long_med[:, ref_m2]], base)
        observed = np.select([component == 1, component == 2], [short_med[:, new], long_med[:, new]], x)
        shrink = np.select([component == 1, component == 2], [np.sqrt(m), np.sqrt(m2)], 1.0)
        band_pt = np.where(np.isfinite(spike_limit), spike_limit, 3.0) * scale
        band = band_pt / shrink
        st["tail_x"] = xe[:, -tl:]
        st["tail_dev"] = deve[:, -tl:]
        return raw, component, expected, observed, band, scale, band_pt

    def _counts(self, st: dict[str, np.ndarray], x: np.ndarray) -> CountModel | None:
        """Which points belong to series of small whole counts (errors per bucket, restarts), with
        the rate and dispersion learnt before each point.

        Robust medians break down on such series: a Poisson(0.1) count is 0 most of the time, so
        three errors in six buckets move the recent median from 0 to 1, dozens of scales. A count
        is judged instead by the negative binomial (Poisson when not overdispersed) of the series'
        own exponentially weighted mean and variance: a point, or the sum of a test's recent window,
        must also be that unlikely as a count. This only ever lowers surprise.
        """
        c = st["ew_cnt"]
        ok = np.isfinite(x)
        x0 = np.where(ok, x, 0.0)
        whole = ok & (x0 >= 0) & (x0 == np.round(x0))

        def before(col: int, v: np.ndarray) -> np.ndarray:
            return _ew_before(v, c, col, self._lam)

        w, s1, s2, wi = before(0, ok * 1.0), before(1, x0), before(2, x0 * x0), before(3, whole * 1.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            mu = s1 / w
            var = np.fmax(s2 / w - mu * mu, 0.0)
        # counts scatter at least about as much as a Poisson law: a constant or a quantised gauge
        # (replicas, a level) is not judged as a count
        like = ok & whole & (w >= COUNT_MIN_POINTS) & (wi >= 0.999 * w) & (mu < COUNT_MAX_MEAN)
        like &= (mu > 0) & (var >= 0.5 * mu)
        if not like.any():
            return None
        tail = st["tail_x"][:, 0, :]  # the series' own recent values (view 0)
        return CountModel(like, mu, var, np.concatenate([tail, x], axis=1), tail.shape[1])

    def _sparse(self, st: dict[str, np.ndarray], x: np.ndarray) -> SparseModel | None:
        """Which points belong to mostly-zero series, and how unusual each point's size is among
        the series' earlier non-zero values (exponentially weighted, as the calibration)."""
        from scipy.special import ndtr

        c = st["ew_sparse"]
        ok = np.isfinite(x)
        x0 = np.where(ok, x, 0.0)
        nz = ok & (x0 != 0)
        lg = np.log(np.abs(np.where(nz, x0, 1.0)))

        def before(col: int, v: np.ndarray) -> np.ndarray:
            return _ew_before(v, c, col, self._lam)

        w, wz, wn = before(0, ok * 1.0), before(1, (ok & ~nz) * 1.0), before(2, nz * 1.0)
        s1, s2 = before(3, lg), before(4, lg * lg)
        like = ok & (w >= COUNT_MIN_POINTS) & (wz >= SPARSE_MIN_ZERO * w) & (wn >= SPARSE_MIN_NONZERO)
        if not like.any():
            return None
        with np.errstate(invalid="ignore", divide="ignore"):
            mu = s1 / wn
            sd = np.fmax(np.sqrt(np.fmax(s2 / wn - mu * mu, 0.0)), SPARSE_MIN_SD)
            p = np.where(nz, ndtr(-(lg - mu) / sd), 1.0)
        return SparseModel(like, np.nan_to_num(p, nan=1.0))

    def _explained(self, st: dict[str, np.ndarray], x: np.ndarray, views: np.ndarray) -> np.ndarray:
        """Per point and view: whether the view's mean square (a seasonal residual) has been at most
        ``seasonal_fit`` times the series' own variance, both exponentially weighted like the
        calibration over the points before this one (at least 64 of them)."""
        n, nb, k = views.shape
        f = st["ew_fit"]

        def before(col: int, v: np.ndarray) -> np.ndarray:
            y = _ew(v, f[:, col], self._lam)
            out = np.concatenate([f[:, col : col + 1], y[:, :-1]], axis=1)
            f[:, col] = y[:, -1]
            return out

        ok = np.isfinite(x)
        x0 = np.where(ok, x, 0.0)
        w, s1, s2 = before(0, ok * 1.0), before(1, x0), before(2, x0 * x0)
        out = np.zeros((n, nb, k), dtype=bool)
        with np.errstate(invalid="ignore", divide="ignore"):
            var = s2 / w - (s1 / w) ** 2
            for b in range(1, nb):
                r = views[:, b]
                okr = np.isfinite(r)
                r0 = np.where(okr, r, 0.0)
                wr, sr = before(3 + 2 * b, okr * 1.0), before(4 + 2 * b, r0 * r0)
                out[:, b] = (wr >= 64) & (sr / wr <= self.params.seasonal_fit * var)
        return out

    def _beyond_cap(
        self, st: dict[str, np.ndarray], z: np.ndarray, ok: np.ndarray, p: np.ndarray, pw: np.ndarray
    ) -> np.ndarray:
        """Spikes beyond the learning cap: the fitted tail never sees them (they are capped), so a
        series with routine 20-sigma blips would page on every one. Their own exponentially
        weighted count, less ``routine_after`` events (a few incidents do not make incidents
        normal), sets a floor on the tail probability that falls as ``(cap / z)^2``."""
        big = (z >= self._zcap) & ok
        wb = _ew(big.astype(np.float64), st["ew_big"][:, 0], self._lam)
        prev = np.concatenate([st["ew_big"], wb[:, :-1]], axis=1)
        st["ew_big"][:, 0] = wb[:, -1]
        with np.errstate(invalid="ignore", divide="ignore"):
            rate = np.fmax(prev - self.params.routine_after, 0.0) / (pw + _PRIOR_N)
            floor = rate * (self._zcap / np.fmax(z, self._zcap)) ** 2
        return np.where(big, np.fmax(p, floor), p)

    def _episodes(
        self,
        st: dict[str, np.ndarray],
        raw: np.ndarray,
        ok: np.ndarray,
        views: np.ndarray,
        sel: np.ndarray,
        expected: np.ndarray,
        band: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Alerts (episode onsets), firing flags and which firing points still deviate; the score
        stays just below the threshold where it cannot alert (warm-up, an episode already firing,
        the refractory gap).

        An episode opens where the score reaches the threshold on a warm series that is not firing.
        It remembers the normal band of the view that alerted (``expected`` ± ``band``, in that
        view's units: where a point would not have been a spike) and stays open while points fall
        outside it. The scores cannot say that: the baselines adapt to a lasting shift within tens
        of points, and the return to normal is itself a change, so a long outage would end its
        episode early and its recovery would alert again. The episode ends after ``quiet`` points
        back inside the band, or after ``max_episode`` points (what lasts that long is the new
        normal). Only candidate points (above the release level) and open episodes are visited.
        """
        p = self.params
        n, k = raw.shape
        seen = st["seen"][:, None] + np.cumsum(ok, axis=1)
        release = 1.0 - min(0.5, (1.0 - p.threshold) ** 0.5)
        alert = np.zeros((n, k), dtype=bool)
        firing = np.zeros((n, k), dtype=bool)
        deviating = np.zeros((n, k), dtype=bool)
        since_alert = st["since_alert"].copy()
        since_active = st["since_above"].copy()
        age = st["ep_age"].copy()
        fire = st["firing"].astype(bool)

        def extent(r: int, c0: int) -> int:
            """Follow row r's open episode from column c0: the column where it ends (its last firing
            point), or k when it is still open after the block; updates the row's state."""
            v = views[r, int(st["ep_view"][r]), c0:]
            lo, hi = st["ep_band"][r]
            slack = 0.25 * (hi - lo)  # noise and drift around the old normal do not keep it open
            with np.errstate(invalid="ignore"):
                active = (v < lo - slack) | (v > hi + slack)
            idx = np.arange(len(v))
            last = np.maximum.accumulate(np.where(active, idx, -1 - since_active[r]))
            gap = idx - last
            over = (age[r] + idx + 1 >= p.max_episode) | (gap >= p.quiet)
            end = int(np.argmax(over)) if over.any() else len(v)
            firing[r, c0 : c0 + min(end + 1, len(v))] = True
            deviating[r, c0 : c0 + min(end + 1, len(v))] = active[: end + 1]
            if end < len(v):
                fire[r] = False
                # only an episode long enough to move the baselines has a way back to guard
                end_col[r] = c0 + end if age[r] + end + 1 >= 2 * p.base else NO_GUARD
                return c0 + end
            since_active[r] = gap[-1]
            age[r] += len(v)
            return k

        free = np.zeros(n, dtype=np.int64)  # first column where each row may open an episode
        end_col = np.full(n, -1, dtype=np.int64)  # column where the row's last episode ended
        since_end = st["since_end"]
        guard = max(p.window, 2 * p.long)
        for r in np.flatnonzero(fire).tolist():
            free[r] = extent(r, 0) + 1
        last_alert = np.full(n, -1, dtype=np.int64)
        since_hot = st["since_hot"]
        hot_from = st["hot_from"]
        last_hot = np.full(n, -1, dtype=np.int64)  # last column above the release level
        cand_r, cand_c = np.nonzero(raw >= release)
        for r, c in zip(cand_r.tolist(), cand_c.tolist(), strict=True):
            cool = c - last_hot[r] if last_hot[r] >= 0 else since_hot[r] + c + 1
            last_hot[r] = c
            if cool > 1:
                hot_from[r] = seen[r, c]
            if c < free[r]:
                # inside an open episode that only its band still holds (the scores have been
                # below the release level for ``quiet`` points): a new alert well outside the band
                # is a new anomaly (a 40x spike in a noisier regime), not the same one going on
                lo, hi = st["ep_band"][r]
                v = views[r, int(st["ep_view"][r]), c]
                if cool <= p.quiet or raw[r, c] < p.threshold or lo - (hi - lo) <= v <= hi + (hi - lo):
                    continue
                firing[r, c:] = False  # the open episode ends here; the new one follows
                deviating[r, c:] = False
            # the way back after an episode is a change too: while the baselines still remember
            # the episode, only a point well outside the band it left from (the old normal) alerts
            ended = c - end_col[r] if end_col[r] >= 0 else since_end[r] + c + 1
            if end_col[r] != NO_GUARD and ended <= guard:
                lo, hi = st["ep_band"][r]
                v = views[r, int(st["ep_view"][r]), c]
                if lo - 0.5 * (hi - lo) <= v <= hi + 0.5 * (hi - lo):
                    continue
            young = min(1.0, seen[r, c] / (p.ramp * p.warmup)) if p.ramp > 0 else 1.0
            gap = c - last_alert[r] if last_alert[r] >= 0 else since_alert[r] + c + 1
            if (
                raw[r, c] >= 1.0 - (1.0 - p.threshold) * young
                and seen[r, c] > p.warmup
                and gap > p.refractory
                and (hot_from[r] > p.warmup or not p.handover)
            ):
                alert[r, c] = True
                last_alert[r] = c
                fire[r] = True
                st["ep_view"][r] = sel[r, c]
                st["ep_band"][r] = (expected[r, c] - band[r, c], expected[r, c] + band[r, c])
                since_active[r] = 0
                age[r] = 0
                free[r] = extent(r, c) + 1
                deviating[r, c] = True
        st["since_alert"] = np.where(last_alert >= 0, k - 1 - last_alert, since_alert + k)
        st["since_hot"] = np.where(last_hot >= 0, k - 1 - last_hot, since_hot + k)
        st["since_end"] = np.where(
            end_col >= 0, k - 1 - end_col, np.where(end_col == NO_GUARD, _NEVER, since_end + k)
        )
        st["since_above"] = since_active
        st["ep_age"] = age
        st["firing"] = fire.astype(np.int8)
        st["seen"] = seen[:, -1].copy() if k else st["seen"]
        below = max(p.threshold - 1e-9, 0.0)  # still below the threshold when printed with 9 decimals
        score = np.where(alert | (raw < p.threshold), raw, below)
        return score, alert, firing, deviating

    def memory_bytes(self) -> int:
        """Bytes of model state held per series."""
        return int(sum(v.nbytes for v in self.state.values()) // max(self.n_series, 1))


def seasonal_periods(step_s: float, max_period: int = EnsembleParams.max_period) -> tuple[int, ...]:
    """Daily and weekly periods in points for a sampling step, where they fit in memory.

    >>> seasonal_periods(300), seasonal_periods(1800), seasonal_periods(10), seasonal_periods(float("nan"))
    ((288, 2016), (48, 336), (), ())
    """
    if not np.isfinite(step_s) or step_s <= 0:
        return ()
    out = []
    for span in (86400.0, 7 * 86400.0):
        q = span / step_s
        if 4 <= round(q) <= max_period and abs(q - round(q)) < 0.05 * q:
            out.append(round(q))
    return tuple(out)


def step_of(timestamps: np.ndarray) -> float:
    """Typical sampling step (seconds): the median positive difference of the first timestamps."""
    d = np.diff(np.asarray(timestamps, dtype=np.float64)[:64])
    d = d[np.isfinite(d) & (d > 0)]
    return float(np.median(d)) if len(d) >= 8 else float("nan")


def step_factor(params: EnsembleParams, step_s: float) -> float:
    """How many times more often than per point a series sampled every ``step_s`` seconds may
    alert, for ``params.threshold`` to be a rarity per ``params.per_s`` seconds (1: per point).

    A per-point tail probability alone alerts more often per day on faster series: 0.5 % of the
    points is 7 alerts a day at 1-minute steps and one every 8 days at hourly ones, so one
    threshold was too eager on minute data and too timid on hourly data (measured on both real
    corpora: docs/detectors.md). An unknown step keeps the threshold per point.

    >>> p = EnsembleParams()
    >>> step_factor(p, 60), step_factor(p, 3600), round(step_factor(p, 1), 4), step_factor(p, float("nan"))
    (0.2, 12.0, 0.0833, 1.0)
    """
    if not params.per_s > 0 or not np.isfinite(step_s) or step_s <= 0:
        return 1.0
    factor = min(max(step_s / params.per_s, 1.0 / params.max_per_step), params.max_per_step)
    return min(factor, 0.5 / (1.0 - params.threshold)) if params.threshold < 1 else factor


def for_step(params: EnsembleParams, step_s: float) -> EnsembleParams:
    """``params`` for a series sampled every ``step_s`` seconds: the per-point threshold that
    :func:`step_factor` asks for, and ``quiet`` cut to ``quiet_s`` seconds where that is fewer
    points. An unknown step changes nothing.

    >>> p = for_step(EnsembleParams(), 3600)
    >>> p.threshold, p.quiet, for_step(EnsembleParams(), 60).threshold, for_step(EnsembleParams(), 60).quiet
    (0.94, 6, 0.999, 12)
    """
    f = step_factor(params, step_s)
    if f != 1.0:
        params = replace(params, threshold=round(1.0 - (1.0 - params.threshold) * f, 12))
    if params.quiet_s > 0 and np.isfinite(step_s) and step_s > 0:
        params = replace(
            params, quiet=min(params.quiet, max(params.min_quiet, round(params.quiet_s / step_s)))
        )
    return params


def per_time_score(score: np.ndarray, params: EnsembleParams, step_s: float) -> np.ndarray:
    """Per-point scores of a series sampled every ``step_s`` seconds rescaled so that they reach
    ``params.threshold`` exactly where the per-point score reaches :func:`for_step`'s threshold:
    the tail probability ``1 - score`` is raised to the power that maps one threshold onto the
    other, so 0 and 1 keep their meaning and the order of the scores is kept.

    >>> per_time_score(np.array([0.0, 0.94, 0.99, 1.0]), EnsembleParams(), 3600).round(4).tolist()
    [0.0, 0.995, 0.9998, 1.0]
    """
    stepped = for_step(params, step_s).threshold
    if stepped == params.threshold or not 0 < params.threshold < 1 or not 0 < stepped < 1:
        return score
    power = np.log1p(-params.threshold) / np.log1p(-stepped)
    with np.errstate(divide="ignore"):
        return 1.0 - np.power(np.clip(1.0 - score, 0.0, 1.0), power)


def clock_step(timestamps: np.ndarray) -> float:
    """:func:`step_of` where the timestamps are a wall clock (Unix seconds after 1973), NaN where
    they are a row number (1, 2, 3, ...), for which a rarity per minute has no meaning.

    >>> clock_step(1_600_000_000 + 60.0 * np.arange(20)), clock_step(np.arange(1.0, 21.0))
    (60.0, nan)
    """
    ts = np.asarray(timestamps, dtype=np.float64)[:64]
    ts = ts[np.isfinite(ts)]
    return step_of(timestamps) if len(ts) and np.median(ts) >= 1e8 else float("nan")


def params_dict(params: EnsembleParams) -> dict:
    d = asdict(params)
    d["components"] = list(params.components)
    return d
