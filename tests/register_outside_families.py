"""Importing this module makes the families of `tests/outside_families.py` vaelab choices, one line each:
for a vaelab command in a process of its own (`python -m tests.signal_at_step --import
tests.register_outside_families STEP SIGNAL -- train --model planar-flow ...`)."""

from vaelab.models import register_family

from .outside_families import PlanarFlowVAE, TwoLayerVAE

register_family("planar-flow", PlanarFlowVAE)
register_family("two-layer", TwoLayerVAE)
