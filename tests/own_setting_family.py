"""A family with a setting of its own, written and registered outside vaelab as a user would: importing
this module (`vaelab train --import tests.own_setting_family`) makes it `--model scaled-prior` with
the flag `--prior-std` (tests/test_your_own_model.py).

Its model is the VAE's with p(z) = N(0, s^2 I): s is the setting. Its rule: s is a standard
deviation of the standard prior, so it goes with `--prior standard` only.
"""

from __future__ import annotations

import vaelab
from vaelab.errors import VaelabError
from vaelab.models import VAE


class ScaledPriorVAE(VAE):
    """The VAE with z ~ N(0, s^2 I)."""

    settings = {**VAE.settings, "prior_std": vaelab.Setting(float, 1.0, "the standard deviation s of p(z) = "
                                                            "N(0, s^2 I)", minimum=0.0, maximum=100.0)}

    def __init__(self, image_shape, prior_std: float = 1.0, **settings):
        super().__init__(image_shape, **settings)
        self.prior_scale.fill_(prior_std)  # the N(0, I) prior's scale buffer, made s
        self.prior_std = prior_std

    @classmethod
    def check_settings(cls, settings, config) -> None:
        super().check_settings(settings, config)
        if settings["prior_std"] != 1.0 and settings["prior"] != "standard":
            raise VaelabError("{prior_std} scales the standard prior: use it with {prior} standard")

    def equations(self) -> list[str]:
        lines = super().equations()
        return [lines[0].replace("N(0, I_d)", f"N(0, {self.prior_std:g}² I_d)"), *lines[1:]]


vaelab.register_family("scaled-prior", ScaledPriorVAE)
