"""Simulated music world: the default offline dataset, with placebo switches for every claimed effect.

>>> world = generate_world("tiny", seed=0)                         # doctest: +SKIP
>>> placebo = generate_world("tiny", seed=0, effects=Effects().placebo("kg"))  # doctest: +SKIP
"""

from .audio import render_audio, vocal_sections
from .core import World, generate_world
from .profiles import PROFILES, Effects, WorldConfig

__all__ = ["PROFILES", "Effects", "World", "WorldConfig", "generate_world", "render_audio", "vocal_sections"]
