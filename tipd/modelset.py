"""The ensembles a daemon serves: one default, and one per surface that has its own model."""

from __future__ import annotations

from dataclasses import dataclass

import structlog

from tipd.ensemble import Ensemble
from tipd.models import ModelError, find, models_root

log = structlog.get_logger("tipd")

#: the key of the default model: frames naming no surface, or one without a model of its own
DEFAULT = "*"


@dataclass
class ModelSet:
    """Loaded, checked and warmed-up ensembles by surface (``*``: the default)."""

    by_surface: dict[str, Ensemble]

    @classmethod
    def load(cls, default: str, per_surface: dict[str, str], threads: int) -> ModelSet:
        """``default`` for any surface, every shipped model for the surface it is named after,
        and ``per_surface`` (surface → model name or folder) over those. Raises
        :class:`ModelError` if any fails its checks (the caller keeps what it had)."""
        names = {DEFAULT: default}
        root = models_root()
        if root.is_dir():
            for folder in root.iterdir():
                if (folder / "manifest.json").is_file() and folder.name != default:
                    names[folder.name] = folder.name
        names.update(per_surface)
        loaded = cls({key: load_model(name, threads) for key, name in names.items()})
        log.info(
            "models loaded",
            models={k: v.manifest.name for k, v in loaded.by_surface.items()},
            provider=loaded.default.provider,
        )
        return loaded

    @property
    def default(self) -> Ensemble:
        return self.by_surface[DEFAULT]

    def knows(self, surface: str) -> bool:
        """True when ``surface`` has a model of its own."""
        return surface in self.by_surface

    def for_surface(self, surface: str | None) -> Ensemble:
        """The model of ``surface``, or the default."""
        if surface and surface in self.by_surface:
            return self.by_surface[surface]
        return self.default

    def desirable(self) -> set[str]:
        """Every model's good states."""
        return {d for e in self.by_surface.values() for d in e.manifest.desirable}


def load_model(name: str, threads: int) -> Ensemble:
    """Model ``name`` checked and warmed up; a graph that passes its sha256 check but that ONNX
    Runtime cannot load or run raises :class:`ModelError` naming the file, like any other
    model fault."""
    folder = find(name)
    try:
        ens = Ensemble(folder, threads=threads)
        ens.warm_up()
    except ModelError:
        raise
    except Exception as exc:  # ONNX Runtime's own errors: a corrupt or incompatible graph
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"{folder}: ONNX Runtime cannot load it ({first})") from None
    return ens
