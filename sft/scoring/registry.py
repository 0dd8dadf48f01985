"""The calibration registry: name -> function(probabilities, context, config) -> Calibrated.

Built-in methods are listed by name and imported from `sft.scoring.calibration` on first use, so
a config names a calibration that is checked without importing numpy. Add one with
`@CALIBRATIONS.register("name")`.
"""

from __future__ import annotations

from sft.registry import Registry

CALIBRATIONS = Registry("calibration")
for _name in ("contextual", "domain", "batch", "adjustable_batch"):
    CALIBRATIONS.add(_name, f"sft.scoring.calibration:{_name}")
