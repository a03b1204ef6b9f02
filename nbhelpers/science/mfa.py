"""Mixture of factor analyzers (MFA): log-density, sampling and EM training.

Each of the K components is a factor analyzer (paper appendix B.1)

    x = A_k z + mu_k + eta,    z ~ N(0, I_l),    eta ~ N(0, D_k),

so x ~ N(mu_k, C_k) with C_k = A_k A_k^T + D_k, D_k diagonal (``isotropic``: D_k = sigma_k^2 I).
Shapes throughout: K components, d data dimensions, l latent dimensions, n samples.

The d x d covariance is never formed. With L_k = I_l + A_k^T D_k^-1 A_k = U_k U_k^T (Cholesky) and
V_k = D_k^-1 A_k U_k^-T [d, l], a residual r = x - mu_k has w = V_k^T r = U_k^-1 A_k^T D_k^-1 r, the
posterior mean E[z | x, k] = L_k^-1 A_k^T D_k^-1 r = U_k^-T w, and Woodbury and the matrix
determinant lemma give

    r^T C_k^-1 r = r^T D_k^-1 r - ||w||^2,
    log det C_k = sum log D_k + 2 sum log diag U_k.

Expanding r = x - mu_k turns every term that touches all (sample, component) pairs into a matrix
product of the samples [n, d] with a [d, K (l + 1)] or [d, K] matrix:

    w = V_k^T x - V_k^T mu_k,
    r^T D_k^-1 r = (x * x) . D_k^-1 - 2 x . (D_k^-1 mu_k) + mu_k^T D_k^-1 mu_k,

and the EM statistics become sums of h x, h x^2 and x (h E[z])^T, centred afterwards. No [K, n, d]
residual is formed, so a pass reads the data once instead of once per component (EM ~8x faster
than with explicit residuals at N = 10,000, K = 20, d = 12288 on one CPU thread; bench/README.md).
The expansion cancels numbers ~|x|^2 / D: at d = 12288 and D = 1e-4 that would cost ~5 nats in
float32, so this arithmetic is always done in float64 (~1e-13 relative), whatever dtype the
parameters are stored in. ``density_terms`` holds the per-component quantities, cached until the
parameters change; ``BayesClassifier`` evaluates its class densities with them.

Every computation is batched over components ([K, ...] tensors, no Python loop over k) and
chunked over samples so that one [chunk, d] temporary stays under ``CHUNK_BYTES`` (smaller on CPU).
A fit starts from k-means clusters of a sample of the data and a PCA per cluster, computed on the fit's
device (``nbhelpers.science.mfa_init``).
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from nbhelpers.core.checks import check_int as _check_int
from nbhelpers.core.device import resolve_device
from nbhelpers.core.progress import finish_early, tqdm
from nbhelpers.science.mfa_init import cluster_start

__all__ = ["MFA", "DensityTerms", "VALID_INITS", "CHUNK_BYTES", "CPU_CHUNK_BYTES"]

VALID_INITS = ("kmeans", "sklearn-kmeans", "random", "current")
CHUNK_BYTES = 256 * 2**20  # cap on the size of one [chunk, d] float64 temporary
# on CPU, temporaries below glibc's largest dynamic mmap threshold (32 MiB) are recycled by malloc
# instead of being mapped afresh: ~20x fewer page faults and ~2x faster EM at d = 12288
CPU_CHUNK_BYTES = 16 * 2**20
LOG_2PI = math.log(2 * math.pi)
WORK_DTYPE = torch.float64  # the expanded quadratic forms cancel digits: never evaluate them in float32
_DTYPES = {"float32": torch.float32, "float64": torch.float64}

ArrayLike = Tensor | np.ndarray
DataLike = ArrayLike | Callable[[], Iterable[ArrayLike]] | Sequence[ArrayLike]


def _resolve_dtype(dtype: torch.dtype | str) -> torch.dtype:
    """torch.float32/float64 or their names; anything else raises with the valid choices."""
    if isinstance(dtype, str) and dtype in _DTYPES:
        return _DTYPES[dtype]
    if dtype in _DTYPES.values():
        return dtype
    raise ValueError(f"unsupported dtype {dtype!r}: use torch.float32 or torch.float64 ('float32'/'float64')")


def _check_scale(data: _Data) -> None:
    """Refuse data whose squares, summed over the samples and dimensions as EM sums them, overflow float64."""
    if data.max_abs == 0.0:
        return
    headroom = math.log(torch.finfo(WORK_DTYPE).max) - math.log(data.n * data.dim)
    if 2 * math.log(data.max_abs) >= headroom:
        raise ValueError(
            f"the data reach |x| = {data.max_abs:.3g}: squared and summed over n={data.n} samples of "
            f"d={data.dim} dimensions they overflow float64; rescale them (e.g. pixels to [0, 1]) before "
            "fitting"
        )


@dataclass
class _Stats:
    """Float64 sufficient statistics of one E-step, centred at the current means (r = x - mu_k).

    Shapes: s0 [K] responsibility mass, sr [K, d] sum h r, srr [K, d] sum h r^2 (elementwise),
    srz [K, d, l] sum h r E[z]^T, sz [K, l] sum h E[z], szz [K, l, l] sum h E[z] E[z]^T,
    worst_x [m, d] the m <= K worst-explained samples.
    """

    loglik: float  # summed log-likelihood of the data under the current parameters
    s0: Tensor
    sr: Tensor
    srr: Tensor
    srz: Tensor
    sz: Tensor
    szz: Tensor
    worst_x: Tensor


@dataclass(frozen=True)
class DensityTerms:
    """Float64 per-component quantities of an MFA's parameters behind every density evaluation.

    Shapes: mu [K, d]; inv_D [K, d] = 1 / D; U [K, l, l] lower Cholesky factor of I + A^T D^-1 A;
    V [K, d, l] = D^-1 A U^-T; W [d, K l + K] = [V (component-major) | (D^-1 mu)^T];
    mu_v [K, l] = V^T mu; mu_quad [K] = mu^T D^-1 mu; log_norm [K] = -(d log 2 pi + log det C) / 2.
    """

    mu: Tensor
    inv_D: Tensor
    U: Tensor
    V: Tensor
    W: Tensor
    mu_v: Tensor
    mu_quad: Tensor
    log_norm: Tensor


class _Data:
    """Training data seen as a re-iterable sequence of [c, d] chunks in a given dtype and device.

    ``x`` is a [n, d] tensor or array, a sequence of [c, d] chunks, or a callable returning a
    fresh iterable of chunks on each call (for sets that do not fit in memory).
    """

    def __init__(self, x: DataLike, dim: int, batch_size: int, dtype: torch.dtype, device: torch.device):
        self.dim, self.batch_size, self.dtype, self.device = dim, batch_size, dtype, device
        if isinstance(x, (Tensor, np.ndarray)):
            if x.ndim != 2:
                raise ValueError(f"x must be 2-D [n, d], got shape {tuple(x.shape)}")
            array = x
            self._factory: Callable[[], Iterable[ArrayLike]] = lambda: (
                array[i : i + batch_size] for i in range(0, len(array), batch_size)
            )
        elif callable(x):
            self._factory = x
        elif isinstance(x, Sequence) and not isinstance(x, (str, bytes)):
            self._factory = lambda: iter(x)
        else:
            raise ValueError(
                f"x must be a [n, d] tensor/array, a sequence of [c, d] chunks or a callable returning an "
                f"iterable of chunks; got {type(x).__name__}"
            )
        # tensors, arrays and sequences give the same chunks on every pass; a callable may not
        self._fixed = not callable(x)
        self.max_abs = 0.0
        self.n = 0
        for chunk in self.chunks():  # a first pass validates every chunk
            self.n += len(chunk)
            if len(chunk):
                low, high = torch.aminmax(chunk)  # no [c, d] temporary, unlike chunk.abs()
                self.max_abs = max(self.max_abs, -float(low), float(high))

    def chunks(self) -> Iterator[Tensor]:
        """Validated [c, d] chunks, converted to the model's dtype and device."""
        for i, chunk in enumerate(self._factory()):
            chunk = torch.as_tensor(chunk).to(device=self.device, dtype=self.dtype)
            if chunk.ndim != 2 or chunk.shape[1] != self.dim:
                raise ValueError(
                    f"data chunk {i} has shape {tuple(chunk.shape)}; expected [c, {self.dim}] (the model's d)"
                )
            if not torch.isfinite(chunk).all():
                raise ValueError(f"data chunk {i} contains NaN or inf values: clean the data before fitting")
            yield chunk

    def subset(self, m: int, seed: int) -> Tensor:
        """[m, d] rows (in the data's order) drawn without replacement with a seeded generator, in the
        data's dtype on its device. Each chunk is converted by its copy into one buffer (no converted
        temporary, no gather of a chunk taken whole); data the first pass checked are not checked again."""
        rows = np.sort(np.random.default_rng(seed).choice(self.n, size=m, replace=False))
        out = torch.empty(m, self.dim, dtype=self.dtype, device=self.device)
        offset = 0
        for i, chunk in enumerate(self._factory()):
            chunk = torch.as_tensor(chunk)
            if chunk.ndim != 2 or chunk.shape[1] != self.dim:
                raise ValueError(
                    f"data chunk {i} has shape {tuple(chunk.shape)}; expected [c, {self.dim}] (the model's d)"
                )
            lo, hi = np.searchsorted(rows, [offset, offset + len(chunk)])
            if hi - lo == len(chunk):
                out[lo:hi] = chunk
            elif hi > lo:
                out[lo:hi] = chunk[torch.as_tensor(rows[lo:hi] - offset, device=chunk.device)]
            offset += len(chunk)
        if offset != self.n:
            raise ValueError(f"the data gave {offset} rows on a second pass, {self.n} on the first")
        if not self._fixed and not torch.isfinite(out).all():
            raise ValueError("the data contain NaN or inf values: clean the data before fitting")
        return out


class MFA(torch.nn.Module):
    """Mixture of K factor analyzers in d dimensions with l latent factors each.

    Parameters are buffers (they move with ``.to(device)`` and live in ``state_dict``):
    ``log_pi`` [K] normalised log mixing weights, ``mu`` [K, d] means, ``A`` [K, d, l] factor
    loadings and ``log_D`` [K, d] log noise variances (equal within a component if ``isotropic``).
    A fresh model has uniform weights, zero means and loadings, and unit noise.
    """

    log_pi: Tensor
    mu: Tensor
    A: Tensor
    log_D: Tensor

    def __init__(
        self,
        n_components: int,
        dim: int,
        latent_dim: int,
        *,
        isotropic: bool = False,
        dtype: torch.dtype | str = torch.float64,
        device: torch.device | str = "cpu",
    ):
        super().__init__()
        K = _check_int("n_components", n_components, 1)
        d = _check_int("dim", dim, 2)
        l = _check_int("latent_dim", latent_dim, 1)  # noqa: E741 (the paper's symbol)
        if l >= d:
            raise ValueError(f"latent_dim={l} must be smaller than dim={d}: use fewer latent factors")
        dtype, device = _resolve_dtype(dtype), resolve_device(device)
        self.isotropic = bool(isotropic)
        self.history_: list[float] = []
        self.register_buffer("log_pi", torch.full((K,), -math.log(K), dtype=dtype, device=device))
        self.register_buffer("mu", torch.zeros(K, d, dtype=dtype, device=device))
        self.register_buffer("A", torch.zeros(K, d, l, dtype=dtype, device=device))
        self.register_buffer("log_D", torch.zeros(K, d, dtype=dtype, device=device))

    @classmethod
    def from_parameters(
        cls,
        mu: ArrayLike,
        A: ArrayLike,
        D: ArrayLike,
        pi: ArrayLike | None = None,
        *,
        isotropic: bool = False,
        dtype: torch.dtype | str = torch.float64,
        device: torch.device | str = "cpu",
    ) -> MFA:
        """A model with the given parameters.

        ``mu`` [K, d], ``A`` [K, d, l], ``D`` [K, d] noise variances (or [K] when ``isotropic``),
        ``pi`` [K] mixing weights (normalised here; default uniform).
        """
        mu_t, A_t, D_t = (torch.as_tensor(v, dtype=torch.float64) for v in (mu, A, D))
        if mu_t.ndim != 2 or A_t.ndim != 3 or A_t.shape[:2] != mu_t.shape:
            raise ValueError(
                f"need mu [K, d] and A [K, d, l]; got {tuple(mu_t.shape)} and {tuple(A_t.shape)}"
            )
        K, d, l = A_t.shape  # noqa: E741
        if isotropic and D_t.shape == (K,):
            D_t = D_t[:, None].expand(K, d)
        if D_t.shape != (K, d):
            raise ValueError(
                f"D must have shape [K, d] = [{K}, {d}] (or [K] if isotropic), got {tuple(D_t.shape)}"
            )
        for name, value in (("mu", mu_t), ("A", A_t), ("D", D_t)):
            if not torch.isfinite(value).all():
                raise ValueError(f"{name} contains NaN or inf values: every parameter must be finite")
        if not (D_t > 0).all():
            raise ValueError("noise variances D must be positive")
        if isotropic and not torch.allclose(D_t, D_t[:, :1].expand(K, d)):
            raise ValueError("isotropic=True needs D equal within each component: pass D as [K] variances")
        pi_t = torch.full((K,), 1.0 / K, dtype=torch.float64) if pi is None else torch.as_tensor(pi).double()
        if pi_t.shape != (K,) or not (pi_t > 0).all():
            raise ValueError(f"pi must hold {K} positive weights, got {pi_t.tolist()}")
        model = cls(K, d, l, isotropic=isotropic, dtype=dtype, device=device)
        model._set(pi_t.log() - pi_t.sum().log(), mu_t, A_t, D_t.log())
        return model

    # ------------------------------------------------------------------ shapes and helpers
    @property
    def K(self) -> int:
        """Number of components."""
        return self.mu.shape[0]

    @property
    def d(self) -> int:
        """Data dimension."""
        return self.mu.shape[1]

    @property
    def l(self) -> int:  # noqa: E743 (the paper's symbol)
        """Latent dimension of each factor analyzer."""
        return self.A.shape[2]

    @property
    def dtype(self) -> torch.dtype:
        """Floating-point type of the parameters and of every computation but the EM sums."""
        return self.mu.dtype

    @property
    def device(self) -> torch.device:
        """Device holding the parameters."""
        return self.mu.device

    def extra_repr(self) -> str:
        return f"K={self.K}, d={self.d}, l={self.l}, isotropic={self.isotropic}, dtype={self.dtype}"

    def covariance(self, k: int) -> Tensor:
        """Dense [d, d] covariance A_k A_k^T + D_k of component k (for tests and small d only)."""
        if not 0 <= k < self.K:
            raise ValueError(f"component index {k} out of range: the model has {self.K} components")
        return self.A[k] @ self.A[k].T + torch.diag(self.log_D[k].exp())

    @torch.no_grad()
    def _set(self, log_pi: Tensor, mu: Tensor, A: Tensor, log_D: Tensor) -> None:
        """Copy new parameters (any dtype/device) into the buffers."""
        for buffer, value in ((self.log_pi, log_pi), (self.mu, mu), (self.A, A), (self.log_D, log_D)):
            buffer.copy_(value)

    def _rows_per_chunk(self) -> int:
        """Samples per chunk so that a [chunk, d] float64 temporary stays under the byte cap of the device."""
        cap = CPU_CHUNK_BYTES if self.device.type == "cpu" else CHUNK_BYTES
        return max(1, cap // (self.d * WORK_DTYPE.itemsize))

    def _check_x(self, x: ArrayLike) -> Tensor:
        """[n, d] input as a float64 tensor on the model's device (differentiable)."""
        x = torch.as_tensor(x)
        if x.ndim != 2 or x.shape[1] != self.d:
            raise ValueError(f"x must have shape [n, {self.d}] (the model's dim); got {tuple(x.shape)}")
        if not torch.isfinite(x).all():
            raise ValueError("x contains NaN or inf values")
        return x.to(device=self.device, dtype=WORK_DTYPE)

    def density_terms(self) -> DensityTerms:
        """The float64 quantities of the current parameters (``DensityTerms``), cached until a
        parameter buffer is changed in place through torch, replaced or moved (after edits that torch
        does not see, through ``.data`` or numpy, call ``clear_cache``)."""
        buffers = (self.mu, self.A, self.log_D)
        if any(b.is_inference() for b in buffers):
            # made under torch.inference_mode: no version counter to key a cache on
            return self._compute_density_terms()
        # The buffers themselves (held, so that a replacement cannot reuse their memory and address) and
        # their version counters, which in-place edits through torch advance.
        versions = tuple((b._version, b.device, b.dtype) for b in buffers)
        cached = getattr(self, "_density_cache", None)
        if (
            cached is not None
            and all(old is new for old, new in zip(cached[0], buffers, strict=True))
            and cached[1] == versions
        ):
            return cached[2]
        # outside inference mode, so that terms cached during a prediction can serve a later backward pass
        with torch.inference_mode(False):
            terms = self._compute_density_terms()
        self._density_cache = (buffers, versions, terms)
        return terms

    def clear_cache(self) -> None:
        """Forget the cached ``density_terms`` (needed only after editing buffers behind torch's back)."""
        self._density_cache = None

    def _compute_density_terms(self) -> DensityTerms:
        K, d, l = self.K, self.d, self.l  # noqa: E741
        with torch.no_grad():
            A, log_D, mu = (v.to(WORK_DTYPE) for v in (self.A, self.log_D, self.mu))
            inv_D = torch.exp(-log_D)
            A_D = A * inv_D[:, :, None]
            eye = torch.eye(l, dtype=WORK_DTYPE, device=self.device).expand(K, l, l)
            U = torch.linalg.cholesky(A.mT @ A_D + eye)  # [K, l, l], L = I + A^T D^-1 A = U U^T
            V = A_D @ torch.linalg.solve_triangular(U, eye, upper=False).mT
            mu_D = mu * inv_D
            W = torch.cat([V.permute(1, 0, 2).reshape(d, K * l), mu_D.T], dim=1).contiguous()
            logdet = log_D.sum(1) + 2 * U.diagonal(dim1=1, dim2=2).log().sum(1)
            terms = DensityTerms(
                mu=mu,
                inv_D=inv_D,
                U=U,
                V=V,
                W=W,
                mu_v=torch.einsum("kd,kdl->kl", mu, V),
                mu_quad=(mu * mu_D).sum(1),
                log_norm=-0.5 * (d * LOG_2PI + logdet),
            )
        return terms

    def _chunk_terms(self, x: Tensor, terms: DensityTerms) -> tuple[Tensor, Tensor, Tensor]:
        """For float64 x [c, d]: log-densities [K, c], w = V^T (x - mu) [K, c, l] and x * x [c, d]."""
        K, l = self.K, self.l  # noqa: E741
        xW = x @ terms.W  # [c, K l + K]: the one pass over the data for w and the cross term
        xx = x * x
        w = xW[:, : K * l].reshape(len(x), K, l).permute(1, 0, 2) - terms.mu_v[:, None]
        r_D_r = (xx @ terms.inv_D.T - 2 * xW[:, K * l :]).T + terms.mu_quad[:, None]  # [K, c]
        return terms.log_norm[:, None] - 0.5 * (r_D_r - w.square().sum(2)), w, xx

    # ------------------------------------------------------------------ density and sampling
    def component_log_prob(self, x: ArrayLike, *, dtype: torch.dtype | None = None) -> Tensor:
        """log N(x_i; mu_k, A_k A_k^T + D_k) for x [n, d] -> [n, K], without the mixing weights.

        Differentiable w.r.t. x; x may be float32 or float64. Computed in float64 and returned in
        ``dtype`` (default: the model's).
        """
        x = self._check_x(x)
        terms = self.density_terms()
        parts = [self._chunk_terms(xc, terms)[0] for xc in x.split(self._rows_per_chunk())]
        return torch.cat(parts, dim=1).mT.to(dtype or self.dtype)

    def _log_joint(self, x: ArrayLike) -> Tensor:
        """log pi_k + log N(x_i; mu_k, C_k) for x [n, d] -> [n, K] in float64, whatever the model's dtype
        (float32 would round log-densities of -1e7 to whole nats before the mixture sums them)."""
        return self.component_log_prob(x, dtype=WORK_DTYPE) + self.log_pi.to(WORK_DTYPE)

    def log_prob(self, x: ArrayLike) -> Tensor:
        """Mixture log-density log sum_k pi_k N(x_i; mu_k, C_k) for x [n, d] -> [n]."""
        return torch.logsumexp(self._log_joint(x), dim=1).to(self.dtype)

    def responsibilities(self, x: ArrayLike) -> Tensor:
        """Posterior component probabilities p(k | x_i) for x [n, d] -> [n, K] (rows sum to 1)."""
        return torch.softmax(self._log_joint(x), dim=1).to(self.dtype)

    @torch.no_grad()
    def sample(
        self, n: int, *, with_noise: bool = True, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        """Draw n samples: x [n, d] and their component index [n].

        ``with_noise=False`` returns the noiseless points mu_k + A_k z on the components' subspaces.
        Random numbers come from ``generator`` (on its own device, so a CPU generator gives the
        same samples for a CPU and a CUDA model) or from torch's global generator.
        """
        n = _check_int("n", n, 1)
        rng_device = generator.device if generator is not None else self.device
        pi = self.log_pi.double().exp().to(rng_device)
        index = torch.multinomial(pi, n, replacement=True, generator=generator)
        z = torch.randn(n, self.l, generator=generator, device=rng_device, dtype=self.dtype).to(self.device)
        index = index.to(self.device)
        x = self.mu[index]
        if with_noise:
            eps = torch.randn(n, self.d, generator=generator, device=rng_device, dtype=self.dtype)
            x += eps.to(self.device) * torch.exp(0.5 * self.log_D[index])
        # gathering A per sample makes [c, d, l]: chunk to bound its memory
        rows = max(1, CHUNK_BYTES // (self.d * self.l * self.mu.element_size()))
        for start in range(0, n, rows):
            part = slice(start, start + rows)
            x[part] += torch.bmm(self.A[index[part]], z[part, :, None])[:, :, 0]
        return x, index

    # ------------------------------------------------------------------ EM
    def fit(
        self,
        x: DataLike,
        *,
        n_iter: int = 20,
        init: str = "kmeans",
        batch_size: int = 4096,
        min_variance: float = 1e-4,
        tol: float | None = None,
        seed: int = 0,
        progress: bool = True,
        init_points: int = 10000,
    ) -> MFA:
        """Fit by EM (Ghahramani & Hinton 1996; MPPCA of Tipping & Bishop 1999 when ``isotropic``).

        ``x``: [n, d] tensor/array, a sequence of [c, d] chunks, or a callable returning a fresh
        iterable of chunks (data that do not fit in memory); it may live on any device.
        ``init``: "kmeans" (k-means in torch on the model's device, of ``init_points`` random samples
        projected on their 64 principal directions, as steps 1-2 of ``mfa_init.kmeans``),
        "sklearn-kmeans" (scikit-learn's KMeans, 3 restarts on the samples themselves, and its PCA, on the
        host: the start used before, ~10 EM iterations' time at d = 12288, bench/README.md), "random" (K
        random samples as centres) or "current" (continue from the present parameters). Every fresh init
        fits a PCA per cluster: A from the top-l directions scaled by the square root of their eigenvalue's
        excess over the residual variance, D from the residual variance.
        Each iteration accumulates the full-data sufficient statistics chunk by chunk (``batch_size``
        rows per chunk, all in float64), then updates [A mu] jointly in
        float64; D is floored at ``min_variance``. A component whose responsibility
        mass falls below min(l + 1, 0.1 n / K) samples is re-initialised at the worst-explained
        samples, with a warning. EM stops early when the mean log-likelihood improves by less than
        ``tol`` nats per sample.

        Sets ``history_``: mean log-likelihood per sample after initialisation (entry 0) and after
        each iteration. Returns self.
        """
        if init not in VALID_INITS:
            raise ValueError(f"unknown init {init!r}: valid choices are {', '.join(map(repr, VALID_INITS))}")
        n_iter = _check_int("n_iter", n_iter, 0)
        batch_size = _check_int("batch_size", batch_size, 1)
        init_points = _check_int("init_points", init_points, 1)
        seed = _check_int("seed", seed, 0)
        if not min_variance > 0:
            raise ValueError(f"min_variance must be positive, got {min_variance!r}")
        if tol is not None and not tol >= 0:
            raise ValueError(f"tol must be None or >= 0, got {tol!r}")
        data = _Data(x, self.d, batch_size, WORK_DTYPE, self.device)
        if self.K > data.n:
            raise ValueError(
                f"n_components={self.K} exceeds the number of samples n={data.n}: use fewer components"
            )
        if init != "current" and data.n < max(2, self.l):
            raise ValueError(
                f"MFA.fit needs at least max(2, latent_dim) = {max(2, self.l)} samples to find "
                f"latent_dim={self.l} factors, got n={data.n}: give more samples or a smaller latent_dim"
            )
        _check_scale(data)
        try:
            self._fit(data, n_iter, init, seed, min_variance, tol, progress, init_points)
        except (torch.linalg.LinAlgError, np.linalg.LinAlgError) as err:
            raise FloatingPointError(
                f"MFA.fit: a linear-algebra step failed ({err}); the data (largest |x| = {data.max_abs:.3g}) "
                "may be badly scaled: rescale them (e.g. pixels to [0, 1]) or raise min_variance"
            ) from err
        return self

    def _fit(
        self,
        data: _Data,
        n_iter: int,
        init: str,
        seed: int,
        min_variance: float,
        tol: float | None,
        progress: bool,
        init_points: int,
    ) -> None:
        """``fit``'s initialisation and EM iterations on validated arguments."""
        if init != "current":
            subset = data.subset(min(data.n, max(init_points, self.K)), seed)
            self._initialise(subset, init, seed, min_variance)

        min_mass = min(self.l + 1.0, 0.1 * data.n / self.K)
        self.history_ = []
        with tqdm(total=n_iter, desc="MFA EM", disable=not progress) as bar:
            for iteration in range(n_iter + 1):
                stats = self._e_step(data, with_stats=iteration < n_iter)
                loglik = stats.loglik / data.n
                if not math.isfinite(loglik):
                    raise FloatingPointError(
                        f"MFA EM: non-finite log-likelihood at iteration {iteration}; "
                        "check the data scale or raise min_variance"
                    )
                self.history_.append(loglik)
                bar.set_postfix(loglik=f"{loglik:.6g}", refresh=False)
                converged = tol is not None and iteration > 0 and loglik - self.history_[-2] < tol
                if iteration == n_iter or converged:
                    break
                self._m_step(stats, min_variance, min_mass, iteration)
                bar.update()
            finish_early(bar)  # converged before n_iter

    def _initialise(self, x: Tensor, init: str, seed: int, min_variance: float) -> None:
        """Cluster x [m, d] (float64, on the model's device) and fit a PPCA per cluster
        (``mfa_init.cluster_start``): A [d, l] from each cluster's top-l directions scaled by the square
        root of their eigenvalue's excess over the residual variance, D [d] the residual variance (its mean
        over d - l, the PPCA noise estimate, when isotropic); pi is the cluster's share of x."""
        K, d, l = self.K, self.d, self.l  # noqa: E741
        mean, variance, eigval, directions, counts = cluster_start(
            x, K, l, init, seed, self._rows_per_chunk()
        )
        explained = torch.einsum("kl,kld->kd", eigval, directions.square())
        residual = (variance - explained).clamp_min(min_variance)  # [K, d]
        sigma2 = residual.sum(1, keepdim=True) / (d - l)  # [K, 1] the PPCA noise estimate
        excess = (eigval - sigma2).clamp_min(min_variance)  # [K, l]
        A = directions.mT * excess.sqrt()[:, None, :]  # [K, d, l]
        D = sigma2.expand(K, d) if self.isotropic else residual
        weights = counts.clamp_min(1.0)
        self._set((weights / weights.sum()).log(), mean, A, D.log())

    @torch.no_grad()
    def _e_step(self, data: _Data, with_stats: bool) -> _Stats:
        """One pass over the data: summed log-likelihood and (``with_stats``) the sufficient statistics."""
        K, d, l = self.K, self.d, self.l  # noqa: E741
        terms = self.density_terms()
        zeros = {"dtype": WORK_DTYPE, "device": self.device}
        s0, sz, szz = torch.zeros(K, **zeros), torch.zeros(K, l, **zeros), torch.zeros(K, l, l, **zeros)
        # uncentred sums: sx [K, d] = sum h x, sxx [K, d] = sum h x^2, sxz [d, K l] = sum x (h E[z])^T
        sx, sxx, sxz = torch.zeros(K, d, **zeros), torch.zeros(K, d, **zeros), torch.zeros(d, K * l, **zeros)
        loglik = torch.zeros((), **zeros)
        worst_x, worst_ll = self.mu.new_empty(0, d, dtype=WORK_DTYPE), self.mu.new_empty(0, dtype=WORK_DTYPE)
        log_pi = self.log_pi.to(WORK_DTYPE)[:, None]
        for chunk in data.chunks():
            for xc in chunk.split(self._rows_per_chunk()):
                log_comp, w, xx = self._chunk_terms(xc, terms)
                joint = log_comp + log_pi
                ll = torch.logsumexp(joint, dim=0)  # [c]
                loglik += ll.sum()
                if not with_stats:
                    continue
                worst_ll, order = torch.cat([worst_ll, ll]).sort()
                worst_x, worst_ll = torch.cat([worst_x, xc])[order[:K]], worst_ll[:K]
                h = torch.exp(joint - ll)  # [K, c] responsibilities
                Ez = torch.linalg.solve_triangular(terms.U.mT, w.mT, upper=True)  # [K, l, c] = U^-T w
                hEz = Ez * h[:, None]
                s0 += h.sum(1)
                sz += hEz.sum(2)
                szz += torch.bmm(hEz, Ez.mT)
                sx.addmm_(h, xc)
                sxx.addmm_(h, xx)
                sxz.addmm_(xc.T, hEz.permute(2, 0, 1).reshape(len(xc), K * l))
        # centre at the current means, r = x - mu: the M-step works in that frame
        mu = terms.mu
        sr = sx - s0[:, None] * mu
        srr = sxx - 2 * mu * sx + s0[:, None] * mu.square()
        srz = sxz.reshape(d, K, l).permute(1, 0, 2) - mu[:, :, None] * sz[:, None, :]
        return _Stats(loglik.item(), s0, sr, srr, srz, sz, szz, worst_x)

    @torch.no_grad()
    def _m_step(self, st: _Stats, min_variance: float, min_mass: float, iteration: int) -> None:
        """Closed-form M-step in float64 from centred statistics, batched over components.

        In the centred frame r = x - mu_old the augmented loading [A, mu_new - mu_old] maps
        [z; 1] to r, so  [A, delta] = R M^-1  with R = [srz, sr] and M = sum h E[[z; 1][z; 1]^T];
        D = (srr - diag([A, delta] R^T)) / s0, averaged over d for isotropic noise.
        """
        K, d, l = self.K, self.d, self.l  # noqa: E741
        terms = self.density_terms()  # of the parameters the E-step used (cached)
        mu_old, U = terms.mu, terms.U
        cov_z = torch.cholesky_inverse(U)  # [K, l, l] posterior covariance of z
        collapsed = st.s0 < min_mass
        s0 = st.s0.clamp_min(torch.finfo(torch.float64).tiny)
        M = torch.empty(K, l + 1, l + 1, dtype=torch.float64, device=self.device)
        M[:, :l, :l] = s0[:, None, None] * cov_z + st.szz
        M[:, :l, l] = M[:, l, :l] = st.sz
        M[:, l, l] = s0
        M[collapsed] = torch.eye(l + 1, dtype=torch.float64, device=self.device)  # replaced below
        R = torch.cat([st.srz, st.sr[:, :, None]], dim=2)  # [K, d, l + 1]
        A_aug = torch.cholesky_solve(R.mT, torch.linalg.cholesky(M)).mT  # [K, d, l + 1] = R M^-1
        D = (st.srr - (A_aug * R).sum(2)) / s0[:, None]
        if self.isotropic:
            D = D.mean(1, keepdim=True).expand(K, d)
        D = D.clamp_min(min_variance).contiguous()
        A, mu = A_aug[:, :, :l], mu_old + A_aug[:, :, l]
        pi = s0 / s0.sum()
        if collapsed.any():
            bad = collapsed.nonzero()[:, 0]
            donor = int(torch.argmax(st.s0))
            mu[bad] = st.worst_x[: len(bad)].double()
            A[bad], D[bad] = A[donor].clone(), D[donor].clone()
            pi[bad] = 1.0 / K
            pi = pi / pi.sum()
            warnings.warn(
                f"MFA EM iteration {iteration}: component(s) {bad.tolist()} collapsed (responsibility mass "
                f"below {min_mass:.3g} samples); re-initialised them at the worst-explained samples",
                RuntimeWarning,
                stacklevel=3,
            )
        new = (pi.log(), mu, A, D.log())
        if not all(torch.isfinite(v).all() for v in new):
            raise FloatingPointError(
                f"MFA EM produced non-finite parameters at iteration {iteration}: the data may be badly "
                "scaled; try a larger min_variance or dtype=torch.float64"
            )
        self._set(*new)

    # ------------------------------------------------------------------ persistence (``mfa_files``)
    def save(self, path: str | os.PathLike) -> Path:
        """Write the model to a safetensors file (config and ``history_`` in its metadata), atomically."""
        from nbhelpers.science.mfa_files import save_mfa

        return save_mfa(self, path)

    @classmethod
    def load(cls, path: str | os.PathLike, map_location: torch.device | str = "cpu") -> MFA:
        """Read a model written by ``save`` (no code is executed) onto ``map_location``.

        The file's metadata and every parameter are checked (shapes against the metadata, finite values,
        normalised mixing weights, positive noise variances); a file that fails raises ``ValueError`` naming
        it and what is wrong.
        """
        from nbhelpers.science.mfa_files import load_mfa

        return load_mfa(path, map_location, cls)
