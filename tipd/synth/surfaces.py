"""Surface models: the true topography of H:Si(100)-2×1, Au(111) and Cu(111), seen through one
apex of radius σ.

A :class:`Sample` is an effectively infinite, persistent sample: its lattice and terraces are
closed-form functions of position, and its point features (adatoms, dangling bonds, vacancies,
impurity clusters) are drawn lazily per 40 nm tile from a seeded generator, so the virtual
microscope can move anywhere and find the same surface again. Craters left by tip crashes are
added while scanning. Rendering is analytic: every component is a sum of Gaussians, cosines or
error functions whose convolution with a Gaussian apex is known in closed form, so the blur of
the tip costs nothing extra and nothing aliases.

Heights are in nm. Figures (DESIGN.md): H:Si dimer rows 0.768 nm apart, dimers 0.384 nm along
the row, single steps 0.136 nm with rows turning 90° on each terrace; Au(111) lattice 0.288 nm,
herringbone ridges ~6.3 nm apart zig-zagging every ~25 nm, steps 0.235 nm; Cu(111) lattice
0.255 nm, steps 0.208 nm, surface-state standing waves of period π/k_F ≈ 1.5 nm.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from functools import lru_cache

import numpy as np
from scipy import fft
from scipy.special import erf

from tipd.synth.geometry import ScanGrid

TILE_NM = 40.0
TWO_KAPPA_PER_NM = 20.0  #: 2κ, nm⁻¹ (κ ≈ 10 nm⁻¹ for a ≈4.5 eV work function)
CU_KF_PER_NM = 2.1  #: Cu(111) surface-state Fermi wavevector, nm⁻¹ (λ_F/2 ≈ 1.5 nm)


# --------------------------------------------------------------------------- lattices


@dataclass(frozen=True)
class Lattice:
    """A periodic corrugation as Fourier terms: ``h(p) = 2 Re Σ_k c_k exp(i G_k · R(θ) p)``.

    ``G`` has shape ``(K, 2)`` (nm⁻¹, in the lattice's own frame) and ``c`` shape ``(K,)``
    (complex, nm); only one of each ±G pair is kept.
    """

    G: np.ndarray
    c: np.ndarray

    @classmethod
    def from_cell(
        cls,
        a1: tuple[float, float],
        a2: tuple[float, float],
        basis: list[tuple[float, float, float]],
        lobe_nm: float,
        nmax: int = 6,
    ) -> Lattice:
        """Gaussian lobes of σ ``lobe_nm`` at ``basis`` positions ``(x, y, height)`` (nm) in the
        cell spanned by ``a1, a2`` (nm). Peak heights are roughly the basis heights."""
        A = np.array([a1, a2], dtype=float)
        area = abs(np.linalg.det(A))
        B = 2 * math.pi * np.linalg.inv(A).T  # reciprocal vectors as rows
        terms_G, terms_c = [], []
        for m in range(-nmax, nmax + 1):
            for n in range(-nmax, nmax + 1):
                if (m, n) <= (0, 0):  # keep one of each ±G pair, skip G = 0
                    continue
                g = m * B[0] + n * B[1]
                g2 = float(g @ g)
                envelope = 2 * math.pi * lobe_nm**2 / area * math.exp(-(lobe_nm**2) * g2 / 2)
                c = sum(h * np.exp(-1j * (g[0] * x + g[1] * y)) for x, y, h in basis) * envelope
                if abs(c) > 1e-5:
                    terms_G.append(g)
                    terms_c.append(c)
        return cls(np.array(terms_G, dtype=float).reshape(-1, 2), np.array(terms_c, dtype=complex))

    @classmethod
    def rows(cls, period_nm: float, height_nm: float, lobe_nm: float, nmax: int = 6) -> Lattice:
        """1-D rows: Gaussian ridges of σ ``lobe_nm`` and height ``height_nm`` every
        ``period_nm`` along the lattice's x axis, running along y.

        The 1-D Fourier series of the comb, ``c_m = h √(2π) σ / a · exp(-σ² G_m² / 2)`` at
        ``G_m = 2π m / a``. (A 2-D cell with a very long second period, as ``from_cell`` would
        build it, divides every term by that period and truncates the ridges' length: its rows
        are invisible.)"""
        terms_G, terms_c = [], []
        for m in range(1, nmax + 1):
            g = 2 * math.pi * m / period_nm
            c = height_nm * math.sqrt(2 * math.pi) * lobe_nm / period_nm
            c *= math.exp(-(lobe_nm**2) * g**2 / 2)
            if c > 1e-5:
                terms_G.append((g, 0.0))
                terms_c.append(c)
        return cls(np.array(terms_G, dtype=float).reshape(-1, 2), np.array(terms_c, dtype=complex))

    @classmethod
    def hexagonal(cls, spacing_nm: float, height_nm: float) -> Lattice:
        """Close-packed (111) lattice: first shell of cosines, peak-to-valley ≈ ``height_nm``."""
        k = 4 * math.pi / (math.sqrt(3) * spacing_nm)
        G = np.array(
            [[k * math.cos(a), k * math.sin(a)] for a in (0, math.pi / 3, 2 * math.pi / 3)]
        )
        return cls(G, np.full(3, height_nm / 9, dtype=complex))

    def render(
        self, grid: ScanGrid, theta: float, offset: tuple[float, float], blur: float
    ) -> np.ndarray:
        """Heights (nm), shape ``(rows, cols)``, through an apex of imaging radius ``blur`` (nm).

        Each Fourier component is damped as Tersoff and Hamann (1985) found for an s-wave tip:
        ``exp(-(√(G² + 4κ²) - 2κ) · L)`` with ``L = 2κ σ²``, which equals a Gaussian blur of σ
        for long periods but keeps more of the short ones (so a tip that loses the atoms still
        shows the rows). Terms above the frame's Nyquist frequency are dropped.
        """
        if not len(self.c):
            return np.zeros((len(grid.v), len(grid.u)))
        rot = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
        G = self.G @ rot.T  # G in sample coordinates: G_s · p = G · R(-θ) p
        eu, ev = grid.axes
        gu, gv = G @ eu, G @ ev
        du, dv = grid.pixel_nm
        keep = (np.abs(gu) < 0.95 * math.pi / du) & (np.abs(gv) < 0.95 * math.pi / dv)
        k2 = TWO_KAPPA_PER_NM
        c = self.c * np.exp(-(np.sqrt(np.einsum("ij,ij->i", G, G) + k2**2) - k2) * k2 * blur**2)
        keep &= np.abs(c) > 2e-5
        if not keep.any():
            return np.zeros((len(grid.v), len(grid.u)))
        G, c, gu, gv = G[keep], c[keep], gu[keep], gv[keep]
        origin = np.array(grid.centre_nm) + np.array(offset)
        phase0 = G @ origin
        P = c * np.exp(1j * (phase0 + np.outer(grid.shift, gu) + np.outer(grid.v, gv)))
        Q = np.exp(1j * np.outer(gu, grid.u))
        # phases in float64, the product in complex64: heights to ~1e-7 relative, twice as fast
        PQ = P.astype(np.complex64) @ Q.astype(np.complex64)
        result: np.ndarray = 2 * PQ.real.astype(np.float64)
        return result


@lru_cache(maxsize=64)
def hsi_lattice(buckling: float = 0.0) -> Lattice:
    """H:Si(100)-2×1 dimer rows along the lattice y axis.

    Rows 0.768 nm apart (x), dimers every 0.384 nm along the row (y); each dimer two atom lobes
    0.23 nm apart across the row. ``buckling`` (0–1) makes one atom of each dimer brighter,
    alternating along the row (the asymmetric, zig-zag appearance).
    """
    a, b, half = 0.768, 0.384, 0.115
    h = 0.05
    atoms = [
        (-half, 0.0, h * (1 + buckling)),
        (half, 0.0, h * (1 - buckling)),
        (-half, b, h * (1 - buckling)),
        (half, b, h * (1 + buckling)),
    ]
    lobes = Lattice.from_cell((a, 0.0), (0.0, 2 * b), atoms, lobe_nm=0.07, nmax=8)
    # the dimer row itself: a broad ridge per dimer, deep trenches between rows
    ridge = Lattice.from_cell((a, 0.0), (0.0, b), [(0.0, 0.0, 0.12)], lobe_nm=0.16, nmax=3)
    return Lattice(np.concatenate([lobes.G, ridge.G]), np.concatenate([lobes.c, ridge.c]))


# --------------------------------------------------------------------------- steps


@dataclass(frozen=True)
class Steps:
    """A train of roughly parallel, meandering monatomic steps.

    The terrace index is ``floor(s)`` with ``s = (p·n + Σ a_j sin(k_j p·t + φ_j) - offset) /
    spacing``; each terrace lies ``height_nm`` below the previous one (a vicinal surface).
    ``spacing_nm = inf`` means a single terrace.
    """

    angle: float = 0.0  #: direction of the step normal, rad
    spacing_nm: float = math.inf
    offset_nm: float = 0.0
    height_nm: float = 0.235
    wiggle: tuple[tuple[float, float, float], ...] = ()  #: (amplitude nm, k nm⁻¹, phase)
    width_nm: float = 0.15  #: intrinsic half-width of a step edge, nm

    def coordinate(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """``s`` of each point: integer crossings are step edges."""
        n = (math.cos(self.angle), math.sin(self.angle))
        a = x * n[0] + y * n[1]
        t = -x * n[1] + y * n[0]
        for amp, k, phase in self.wiggle:
            a = a + amp * np.sin(k * t + phase)
        return (a - self.offset_nm) / self.spacing_nm

    def coordinate_on(self, grid: ScanGrid, offset: tuple[float, float]) -> np.ndarray:
        """:meth:`coordinate` of every pixel of ``grid`` seen from an apex at ``offset``, shape
        ``(rows, cols)``. The same numbers, computed as outer sums and products of per-row and
        per-column terms (``sin(a + b) = sin a cos b + cos a sin b``), which is much cheaper."""
        rows, cols = len(grid.v), len(grid.u)
        if not math.isfinite(self.spacing_nm):
            return np.zeros((rows, cols))
        n = np.array([math.cos(self.angle), math.sin(self.angle)])
        t = np.array([-n[1], n[0]])
        eu, ev = grid.axes
        origin = np.array(grid.centre_nm) + np.array(offset)

        def split(d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            # d · p = d · origin + (d · eu)(u + shift) + (d · ev) v = row term + column term
            row = float(d @ origin) + float(d @ eu) * grid.shift + float(d @ ev) * grid.v
            return row, float(d @ eu) * grid.u

        a_row, a_col = split(n)
        t_row, t_col = split(t)
        s = a_row[:, None] + a_col[None, :]
        for amp, k, phase in self.wiggle:
            r = k * t_row + phase
            c = k * t_col
            s += amp * (np.outer(np.sin(r), np.cos(c)) + np.outer(np.cos(r), np.sin(c)))
        result: np.ndarray = (s - self.offset_nm) / self.spacing_nm
        return result

    def render(self, s: np.ndarray, blur: float) -> tuple[np.ndarray, np.ndarray]:
        """``(height nm, terrace index)`` from coordinates ``s``, edges blurred by the apex."""
        if not math.isfinite(self.spacing_nm):
            zero = np.zeros_like(s)
            return zero, zero.astype(np.int64)
        nearest = np.round(s)
        d = (s - nearest) * self.spacing_nm  # signed distance to the nearest edge, nm
        width = math.hypot(self.width_nm, blur)
        level = nearest - 1 + 0.5 * (1 + erf(d / (math.sqrt(2) * width)))
        return -self.height_nm * level, np.floor(s).astype(np.int64)

    def edge_distance(self, s: np.ndarray) -> np.ndarray:
        """Unsigned distance (nm) from each point to the nearest step edge."""
        if not math.isfinite(self.spacing_nm):
            return np.full_like(s, np.inf)
        result: np.ndarray = np.abs(s - np.round(s)) * self.spacing_nm
        return result


# --------------------------------------------------------------------------- point features


@dataclass(frozen=True)
class FeatureKind:
    """A kind of point feature: Poisson ``density`` per nm², Gaussian blobs of ``height_nm``
    and σ ``width_nm`` (ranges), ``cluster`` blobs per feature (range), each scattered within
    ``spread_nm``. Negative heights are pits and vacancies."""

    name: str
    density: float
    height_nm: tuple[float, float]
    width_nm: tuple[float, float]
    cluster: tuple[int, int] = (1, 1)
    spread_nm: float = 0.0
    scatters: bool = False  #: scatters surface-state electrons (standing waves on Cu)


@dataclass
class Features:
    """Blobs as arrays of shape (n,): positions (nm), heights (nm), widths σ (nm), kind index,
    and which feature (cluster) each blob belongs to."""

    x: np.ndarray
    y: np.ndarray
    h: np.ndarray
    w: np.ndarray
    kind: np.ndarray
    group: np.ndarray

    @classmethod
    def empty(cls) -> Features:
        z = np.zeros(0)
        i = np.zeros(0, dtype=np.int64)
        return cls(z, z, z, z, i, i)

    @classmethod
    def concat(cls, parts: list[Features]) -> Features:
        if not parts:
            return cls.empty()
        return cls(
            *(
                np.concatenate([getattr(p, f) for p in parts])
                for f in ("x", "y", "h", "w", "kind", "group")
            )
        )

    def __len__(self) -> int:
        return len(self.x)


@dataclass(frozen=True)
class Crater:
    """A crater left by a tip crash: pit of ``depth_nm`` and σ ``radius_nm``, with a rim."""

    x: float
    y: float
    depth_nm: float
    radius_nm: float


SURFACE_FEATURES: dict[str, tuple[FeatureKind, ...]] = {
    "hsi100": (
        FeatureKind("dangling_bond", 0.004, (0.08, 0.16), (0.18, 0.26)),
        FeatureKind("vacancy", 0.003, (-0.10, -0.05), (0.22, 0.32)),
        FeatureKind("cluster", 0.0, (0.15, 0.45), (0.3, 0.7), (3, 8), 0.9),
    ),
    "au111": (
        FeatureKind("adatom", 0.008, (0.07, 0.14), (0.35, 0.5), scatters=True),
        FeatureKind("pit", 0.0005, (-0.12, -0.06), (0.5, 0.9)),
        FeatureKind("impurity", 0.0, (0.2, 0.6), (0.5, 1.1), (3, 9), 1.6, scatters=True),
    ),
    "cu111": (
        FeatureKind("adatom", 0.008, (0.06, 0.12), (0.35, 0.5), scatters=True),
        FeatureKind("pit", 0.0005, (-0.10, -0.05), (0.5, 0.9)),
        FeatureKind("impurity", 0.0, (0.2, 0.6), (0.5, 1.1), (3, 9), 1.6, scatters=True),
    ),
}


# --------------------------------------------------------------------------- the sample


@dataclass
class SurfaceParams:
    """Everything that defines one sample besides its point features (all lengths nm)."""

    surface: str
    lattice_angle: float = 0.0  #: rad
    steps: Steps = field(default_factory=Steps)
    buckling: float = 0.0  #: H:Si dimer asymmetry 0–1
    herringbone: float = 0.015  #: Au ridge height, nm (0 disables)
    herringbone_angle: float = 0.0
    herringbone_phase: float = 0.0
    waves: float = 0.015  #: Cu standing-wave amplitude at a step, nm (0 disables)
    #: any other surface: its own lattices (each with an extra rotation, rad), summed; two of
    #: nearly equal spacing and angle make a moiré
    lattices: tuple[tuple[Lattice, float], ...] = ()
    islands: Islands | None = None


@dataclass(frozen=True)
class Islands:
    """Flat-topped islands ``height_nm`` high where a smooth random field (a sum of cosines of
    wavelength ~``scale_nm``) exceeds ``level``; edges ``width_nm`` wide."""

    height_nm: float
    scale_nm: float
    level: float
    waves: tuple[tuple[float, float, float], ...]  #: (kx, ky, phase), nm⁻¹
    width_nm: float = 0.2

    @classmethod
    def random(
        cls, rng: np.random.Generator, height_nm: float, scale_nm: float, cover: float
    ) -> Islands:
        waves = tuple(
            (float(k * math.cos(a)), float(k * math.sin(a)), float(rng.uniform(0, 2 * math.pi)))
            for k, a in zip(
                rng.uniform(0.6, 1.4, 6) * 2 * math.pi / scale_nm,
                rng.uniform(0, 2 * math.pi, 6),
                strict=True,
            )
        )
        # the field has variance 3: the level sets the covered fraction (normal approximation)
        from scipy.special import erfinv

        level = float(math.sqrt(3) * math.sqrt(2) * erfinv(1 - 2 * cover))
        return cls(height_nm, scale_nm, level, waves)

    def render(self, x: np.ndarray, y: np.ndarray, blur: float) -> np.ndarray:
        field = sum(np.cos(kx * x + ky * y + ph) for kx, ky, ph in self.waves)
        slope = 2 * math.pi / self.scale_nm * math.sqrt(3)  # typical |∇field|, per nm
        d = (np.asarray(field) - self.level) / slope  # ≈ signed distance to the edge, nm
        result: np.ndarray = (
            self.height_nm * 0.5 * (1 + erf(d / (math.sqrt(2) * math.hypot(self.width_nm, blur))))
        )
        return result


def default_params(surface: str, rng: np.random.Generator) -> SurfaceParams:
    """A random but typical sample of ``surface``: orientation, terrace width, meander."""
    step_height = {"hsi100": 0.136, "au111": 0.235, "cu111": 0.208}[surface]
    meander = 0.3 if surface == "hsi100" else 1.0  # Si(100) S_A steps run nearly straight
    wiggle = tuple(
        (
            meander * float(rng.uniform(0.5, 4.0)),
            float(2 * math.pi / rng.uniform(15, 60)),
            float(rng.uniform(0, 6.3)),
        )
        for _ in range(2)
    )
    steps = Steps(
        angle=float(rng.uniform(0, 2 * math.pi)),
        # terraces: narrow on Si(100); 80–300 nm on annealed Au/Cu(111) crystals, so that a
        # 30 nm frame usually sits on one terrace, as a user would choose it
        spacing_nm=float(rng.uniform(40, 160) if surface == "hsi100" else rng.uniform(80, 300)),
        offset_nm=float(rng.uniform(0, 100)),
        height_nm=step_height,
        wiggle=wiggle,
    )
    return SurfaceParams(
        surface=surface,
        lattice_angle=float(rng.uniform(0, math.pi)),
        steps=steps,
        herringbone=0.015 if surface == "au111" else 0.0,
        herringbone_angle=float(rng.choice([0, 1, 2]) * math.pi / 3 + rng.normal(0, 0.05)),
        herringbone_phase=float(rng.uniform(0, 50)),
        waves=0.015 if surface == "cu111" else 0.0,
    )


class Sample:
    """A persistent sample of one surface.

    ``densities`` overrides the per-nm² density of named feature kinds (see
    :data:`SURFACE_FEATURES`). Features are drawn per tile of ``tile_nm`` from ``seed`` on
    first use and kept (at most ``cache_tiles`` tiles), so the same place always shows the
    same features.
    ``extra`` holds features placed by hand (by the synthetic generator) and ``craters`` those
    made by crashes.
    """

    def __init__(
        self,
        params: SurfaceParams,
        seed: int,
        densities: dict[str, float] | None = None,
        cache_tiles: int = 512,
        tile_nm: float = TILE_NM,
        kinds: tuple[FeatureKind, ...] | None = None,
    ) -> None:
        self.params = params
        self.tile_nm = tile_nm
        self.seed = seed
        base = kinds if kinds is not None else SURFACE_FEATURES[params.surface]
        densities = densities or {}
        unknown = set(densities) - {k.name for k in base}
        if unknown:
            raise KeyError(f"unknown feature kinds for {params.surface}: {sorted(unknown)}")
        self.kinds = tuple(replace(k, density=densities.get(k.name, k.density)) for k in base)
        self.extra = Features.empty()
        self.craters: list[Crater] = []
        self._tiles: OrderedDict[tuple[int, int], Features] = OrderedDict()
        self._cache_tiles = cache_tiles
        self._lattices: dict[str, Lattice] = {}

    @property
    def surface(self) -> str:
        return self.params.surface

    # ----------------------------------------------------------------- features

    def draw_feature(self, kind: str, x: float, y: float, rng: np.random.Generator) -> Features:
        """One feature of ``kind`` centred at ``(x, y)`` (nm), drawn with ``rng``."""
        index = [k.name for k in self.kinds].index(kind)
        return self._draw(index, np.array([x]), np.array([y]), rng, group0=10**9 + len(self.extra))

    def add(self, features: Features) -> None:
        """Place features by hand (they persist like drawn ones)."""
        self.extra = Features.concat([self.extra, features])

    def _draw(
        self, index: int, x: np.ndarray, y: np.ndarray, rng: np.random.Generator, group0: int
    ) -> Features:
        k = self.kinds[index]
        n = len(x)
        if n == 0:
            return Features.empty()
        sizes = rng.integers(k.cluster[0], k.cluster[1] + 1, size=n)
        total = int(sizes.sum())
        owner = np.repeat(np.arange(n), sizes)
        jitter = (
            rng.normal(0, k.spread_nm / 2, size=(total, 2)) if k.spread_nm else np.zeros((total, 2))
        )
        if total:
            jitter[np.r_[0, np.cumsum(sizes)[:-1]]] = 0  # the first blob sits at the centre
        return Features(
            x=x[owner] + jitter[:, 0],
            y=y[owner] + jitter[:, 1],
            h=rng.uniform(*k.height_nm, size=total),
            w=rng.uniform(*k.width_nm, size=total),
            kind=np.full(total, index),
            group=group0 + owner,
        )

    def _tile(self, ix: int, iy: int) -> Features:
        key = (ix, iy)
        tile = self._tiles.get(key)
        if tile is not None:
            self._tiles.move_to_end(key)
            return tile
        rng = np.random.default_rng([self.seed & 0xFFFFFFFF, ix & 0xFFFFFFFF, iy & 0xFFFFFFFF, 7])
        parts = []
        for index, k in enumerate(self.kinds):
            n = int(rng.poisson(k.density * self.tile_nm**2))
            x = (ix + rng.uniform(size=n)) * self.tile_nm
            y = (iy + rng.uniform(size=n)) * self.tile_nm
            group0 = ((ix * 7919 + iy * 104729) % 10**6) * 1000 + index * 100
            parts.append(self._draw(index, x, y, rng, group0))
        tile = Features.concat(parts)
        self._tiles[key] = tile
        if len(self._tiles) > self._cache_tiles:
            self._tiles.popitem(last=False)
        return tile

    def features_near(self, grid: ScanGrid, margin_nm: float = 4.0) -> Features:
        """Every blob within the bounding box of the grid's rows (which may be a few rows of a
        frame, as a scan in chunks renders them) plus ``margin_nm``."""
        eu, ev = grid.axes
        shift = grid.shift if len(grid.shift) else np.zeros(1)
        u0 = float(grid.u.min()) + float(shift.min()) - margin_nm
        u1 = float(grid.u.max()) + float(shift.max()) + margin_nm
        v0, v1 = float(grid.v.min()) - margin_nm, float(grid.v.max()) + margin_nm
        corners = [(u, v) for u in (u0, u1) for v in (v0, v1)]
        xs = [grid.centre_nm[0] + eu[0] * u + ev[0] * v for u, v in corners]
        ys = [grid.centre_nm[1] + eu[1] * u + ev[1] * v for u, v in corners]
        cx, cy = (min(xs) + max(xs)) / 2, (min(ys) + max(ys)) / 2
        hx, hy = (max(xs) - min(xs)) / 2, (max(ys) - min(ys)) / 2
        t = self.tile_nm
        ix0, ix1 = math.floor((cx - hx) / t), math.floor((cx + hx) / t)
        iy0, iy1 = math.floor((cy - hy) / t), math.floor((cy + hy) / t)
        parts = [self._tile(ix, iy) for ix in range(ix0, ix1 + 1) for iy in range(iy0, iy1 + 1)]
        parts.append(self.extra)
        f = Features.concat(parts)
        inside = (np.abs(f.x - cx) <= hx) & (np.abs(f.y - cy) <= hy)
        return Features(*(getattr(f, a)[inside] for a in ("x", "y", "h", "w", "kind", "group")))

    # ----------------------------------------------------------------- rendering

    def _lattice(self, name: str) -> Lattice:
        lat = self._lattices.get(name)
        if lat is None:
            if name == "hsi100":
                lat = hsi_lattice(round(self.params.buckling, 2))
            elif name == "au111":
                lat = Lattice.hexagonal(0.288, 0.012)
            else:
                lat = Lattice.hexagonal(0.255, 0.010)
            self._lattices[name] = lat
        return lat

    def render(
        self,
        grid: ScanGrid,
        blur_nm: float,
        offset_nm: tuple[float, float] = (0.0, 0.0),
        features: Features | None = None,
    ) -> np.ndarray:
        """True topography seen through one Gaussian apex of σ ``blur_nm`` displaced by
        ``offset_nm``: heights (nm), shape ``(rows, cols)``."""
        p = self.params
        s = p.steps.coordinate_on(grid, offset_nm)
        height, level = p.steps.render(s, blur_nm)
        if p.lattices:
            for lattice, turn in p.lattices:
                height += lattice.render(grid, p.lattice_angle + turn, offset_nm, blur_nm)
        elif p.surface == "hsi100":
            lat = self._lattice(p.surface)
            even = lat.render(grid, p.lattice_angle, offset_nm, blur_nm)
            if (level % 2).any():
                odd = lat.render(grid, p.lattice_angle + math.pi / 2, offset_nm, blur_nm)
                height += np.where(level % 2 == 0, even, odd)
            else:
                height += even
        else:
            height += self._lattice(p.surface).render(grid, p.lattice_angle, offset_nm, blur_nm)
        if p.islands is not None:
            height += p.islands.render(*grid.sample_xy(offset_nm), blur_nm)
        if p.herringbone:
            height += self._herringbone(*grid.sample_xy(offset_nm), blur_nm)
        if features is None:
            features = self.features_near(grid)
        if len(features):
            height += _splat(grid, features, blur_nm, offset_nm)
        if p.waves:
            height += self._standing_waves(grid, s, features, blur_nm, offset_nm)
        for crater in self.craters:
            height += _crater(grid, crater, blur_nm, offset_nm)
        return height

    def _herringbone(self, x: np.ndarray, y: np.ndarray, blur: float) -> np.ndarray:
        """Au(111) 22×√3 reconstruction: pairs of ridges 6.3 nm apart whose direction turns by
        120° every ~25 nm (a triangle wave of slope tan 30°)."""
        p = self.params
        a = p.herringbone_angle
        period, zig = 6.3, 50.0
        # float32 is ample for a 6.3 nm period (≤ 1 pm error out to 10 µm) and twice as fast
        x, y = x.astype(np.float32), y.astype(np.float32)
        tri = x * (math.cos(a) / zig) + y * (math.sin(a) / zig) + p.herringbone_phase / zig
        tri %= 1.0
        tri -= 0.5
        np.abs(tri, out=tri)
        q = y * math.cos(a) - x * math.sin(a)
        q += tri * (zig * math.tan(math.pi / 6))
        q %= period
        width = 0.7
        weff = math.hypot(width, blur)
        # ridge-pair profile over one period, tabulated every 6 pm (fcc and hcp walls at 0 and
        # 2.6 nm) and looked up by index: a nearest-entry lookup is 3× cheaper than np.interp
        n = 1024
        qq = np.arange(n + 1) * (period / n)
        d1 = np.minimum(qq, period - qq)
        d2 = np.abs(qq - 2.6)
        table = np.exp(-(d1**2) / (2 * weff**2)) + np.exp(-(d2**2) / (2 * weff**2))
        table *= p.herringbone * width / weff
        index = (q * (n / period) + 0.5).astype(np.intp)
        result: np.ndarray = table[index]
        return result

    def _standing_waves(
        self,
        grid: ScanGrid,
        s: np.ndarray,
        features: Features,
        blur: float,
        offset: tuple[float, float],
    ) -> np.ndarray:
        """Cu(111) surface-state ripples cos(2 k_F r) around steps and scattering features."""
        p = self.params
        damp = math.exp(-(blur**2) * (2 * CU_KF_PER_NM) ** 2 / 2)
        out = np.zeros_like(s)
        d = p.steps.edge_distance(s)
        if np.isfinite(d).any():
            out += p.waves * damp * np.cos(2 * CU_KF_PER_NM * d + math.pi / 4) * np.exp(-d / 6.0)
        scat = [i for i, k in enumerate(self.kinds) if k.scatters]
        mask = np.isin(features.kind, scat)
        if mask.any():
            _, first = np.unique(features.group[mask], return_index=True)
            fx, fy = features.x[mask][first], features.y[mask][first]
            fu, fv = grid.to_frame(fx - offset[0], fy - offset[1])
            reach = 6.0 + float(np.abs(grid.shift).max(initial=0))
            near = (np.abs(fu) <= grid.size_nm[0] / 2 + reach) & (
                (fv >= grid.v.min() - 6.0) & (fv <= grid.v.max() + 6.0)
            )
            if near.any():
                out += _ripples(grid, fu[near], fv[near], 0.6 * p.waves * damp, 6.0)
        return out


def _ripples(
    grid: ScanGrid, fu: np.ndarray, fv: np.ndarray, amp: float, reach_nm: float
) -> np.ndarray:
    """Friedel ripples ``amp · cos(2 k_F r) / (1 + r/0.8 nm)`` around point scatterers at frame
    coordinates ``fu, fv`` (nm), out to ``reach_nm``: the scatterers are splatted onto the pixel
    grid and convolved with the ripple kernel (drift within the kernel ignored)."""
    du, dv = grid.pixel_nm
    ru, rv = math.ceil(reach_nm / du), math.ceil(reach_nm / dv)
    rows, cols = len(grid.v), len(grid.u)
    # float32 halves the FFT cost; ripples are ~10 pm, far above float32 rounding
    canvas = np.zeros((rows + 2 * rv + 1, cols + 2 * ru + 1), dtype=np.float32)
    cu = (fu - grid.shift.mean() - grid.u[0]) / du + ru
    cv = (fv - grid.v[0]) / dv + rv
    ok = (cu >= 0) & (cu < canvas.shape[1] - 1) & (cv >= 0) & (cv < canvas.shape[0] - 1)
    cu, cv = cu[ok], cv[ok]
    i, j = np.floor(cv).astype(int), np.floor(cu).astype(int)
    a, b = cv - i, cu - j
    for di, dj, w in (
        (0, 0, (1 - a) * (1 - b)),
        (1, 0, a * (1 - b)),
        (0, 1, (1 - a) * b),
        (1, 1, a * b),
    ):
        np.add.at(canvas, (i + di, j + dj), w)
    shape = (fft.next_fast_len(canvas.shape[0], True), fft.next_fast_len(canvas.shape[1], True))
    spectrum = _ripple_kernel_spectrum(shape, round(du, 6), round(dv, 6), ru, rv, reach_nm)
    full = fft.irfft2(fft.rfft2(canvas, shape) * spectrum, shape)
    # the kernel is centred at (rv, ru): output pixel (i, j) sits at canvas (i + rv, j + ru)
    window = full[2 * rv : 2 * rv + rows, 2 * ru : 2 * ru + cols]
    result: np.ndarray = amp * window.astype(np.float64)
    return result


@lru_cache(maxsize=32)
def _ripple_kernel_spectrum(
    shape: tuple[int, int], du: float, dv: float, ru: int, rv: int, reach_nm: float
) -> np.ndarray:
    ku = np.arange(-ru, ru + 1) * du
    kv = np.arange(-rv, rv + 1) * dv
    r = np.hypot(ku[None, :], kv[:, None])
    kernel = np.cos(2 * CU_KF_PER_NM * r) / (1 + r / 0.8) * (1 - np.exp(-(r**2) / 0.5))
    kernel[r > reach_nm] = 0.0
    spectrum: np.ndarray = fft.rfft2(kernel, shape).astype(np.complex64)
    return spectrum


def _splat(grid: ScanGrid, f: Features, blur: float, offset: tuple[float, float]) -> np.ndarray:
    """Sum of Gaussian blobs, each widened by the apex: separable, one matrix product."""
    fu, fv = grid.to_frame(f.x - offset[0], f.y - offset[1])
    if len(grid.v) > 1:
        order = np.argsort(grid.v)
        fu = fu - np.interp(fv, grid.v[order], grid.shift[order])
    else:
        fu = fu - grid.shift[0]
    weff2 = f.w**2 + blur**2
    amp = f.h * f.w**2 / weff2
    gy = np.exp(-((grid.v[:, None] - fv[None, :]) ** 2) / (2 * weff2[None, :]))
    gx = np.exp(-((grid.u[None, :] - fu[:, None]) ** 2) / (2 * weff2[:, None]))
    result: np.ndarray = (gy * amp[None, :]) @ gx
    return result


def _add_radial(
    out: np.ndarray,
    grid: ScanGrid,
    cx: float,
    cy: float,
    radius_nm: float,
    profile: object,
) -> None:
    """Add ``profile(r)`` (r in nm from ``(cx, cy)``) to the pixels within ``radius_nm``."""
    fu, fv = grid.to_frame(np.array(cx), np.array(cy))
    rows = np.nonzero(np.abs(grid.v - float(fv)) <= radius_nm)[0]
    cols = np.nonzero(
        np.abs(grid.u - float(fu)) <= radius_nm + float(np.abs(grid.shift).max(initial=0))
    )[0]
    if not len(rows) or not len(cols):
        return
    r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    uu = grid.u[None, c0:c1] + grid.shift[r0:r1, None] - float(fu)
    vv = grid.v[r0:r1, None] - float(fv)
    r = np.sqrt(uu**2 + vv**2)
    out[r0:r1, c0:c1] += profile(r)  # type: ignore[operator]


def _crater(grid: ScanGrid, c: Crater, blur: float, offset: tuple[float, float]) -> np.ndarray:
    out = np.zeros((len(grid.v), len(grid.u)))
    radius = math.hypot(c.radius_nm, blur)
    depth = c.depth_nm * (c.radius_nm / radius) ** 2

    def profile(r: np.ndarray) -> np.ndarray:
        pit = -depth * np.exp(-(r**2) / (2 * radius**2))
        rim = 0.35 * depth * np.exp(-((r - 2.0 * radius) ** 2) / (2 * (0.5 * radius) ** 2))
        return pit + rim

    _add_radial(out, grid, c.x - offset[0], c.y - offset[1], 4 * radius, profile)
    return out
