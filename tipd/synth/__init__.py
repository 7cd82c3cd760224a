"""Physics-based synthetic STM frames with ground-truth labels (see :mod:`.generate`)."""

from tipd.synth.generate import Labelled, generate

__all__ = ["Labelled", "generate"]
