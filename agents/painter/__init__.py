"""The painter: declarative image specs and their deterministic renderer."""

from cadsynth.agents.painter.render import render, spec_digest
from cadsynth.agents.painter.specs import ImageSpec, SpecError, parse_spec

__all__ = ["ImageSpec", "SpecError", "parse_spec", "render", "spec_digest"]
