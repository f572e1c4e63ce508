"""A hierarchy of Gaussian latents z_1, ..., z_L (`LatentHierarchy`), inferred bottom-up (Burda et al.
2015) or top-down (Sønderby et al. 2016), with the members one layer has (`latents.py`), and the
ancestral prior of its code z_1 (`AncestralPrior`)."""

from __future__ import annotations

import torch
from torch import nn
from torch.distributions import Distribution, constraints

from .interface import Latent
from .latents import GaussianMLP, loc_scale, merge, softplus_loc_scale
from .priors import (analytic_kl, describe_prior, gaussian_kl, gaussian_kl_units, gaussian_log_density,
                     gaussian_log_density_at, gaussian_log_density_pairs, rsample)

INFERENCES = ("top-down", "bottom-up")


class LatentHierarchy(nn.Module):
    """L >= 2 Gaussian layers of sizes `dims` (d_1 nearest x), inferred bottom-up or top-down
    (`INFERENCES`); see the module's docstring. The bound's parts are "kl_z1", ..., "kl_zL":
    layer l's log q(z_l | ...) - log p(z_l | z_(l+1)) (the top's against its prior), each at the draw
    or, top-down and asked for, in closed form given the draw of the layer above.

    The encoder network gives 2 d_1 numbers: (μ, log σ²) of q(z_1 | x) bottom-up, (μ̂_1, log σ̂_1²)
    top-down, from which the upward networks give (μ̂_l, σ̂_l) of every layer above.
    """

    def __init__(self, dims: tuple[int, ...], inference: str, activation: str):
        super().__init__()
        if len(dims) < 2:
            raise ValueError("a hierarchy has two or more stochastic layers")
        if inference not in INFERENCES:
            raise ValueError(f"unknown inference {inference!r}; choose one of {', '.join(INFERENCES)}")
        self.dims, self.inference = tuple(dims), inference
        pairs = list(zip(dims[:-1], dims[1:]))  # (d_l, d_(l+1)) for l = 1 .. L-1
        # p(z_l | z_(l+1)), l = 1 .. L-1
        self.down = nn.ModuleList(GaussianMLP(upper, lower, lower, activation) for lower, upper in pairs)
        # bottom-up: q(z_(l+1) | z_l); top-down: the deterministic (μ̂_(l+1), σ̂_(l+1)) from layer l's
        inputs = [lower if inference == "bottom-up" else 2 * lower for lower, _ in pairs]
        self.up = nn.ModuleList(GaussianMLP(n, lower, upper, activation) for n, (lower, upper) in zip(inputs, pairs))
        self.activation = activation

    @property
    def encoder_outputs(self) -> int:
        return 2 * self.dims[0]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f"kl_z{l + 1}" for l in range(len(self.dims)))

    def posterior(self, outputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Bottom-up: (μ_1, σ_1) of q(z_1 | x) [*batch, d_1]; top-down: (μ̂_1, σ̂_1, ..., μ̂_L, σ̂_L), every
        layer's bottom-up Gaussian [*batch, d_l] each."""
        first = loc_scale(outputs)
        if self.inference == "bottom-up":
            return first
        found, raw = list(first), outputs
        for up in self.up:
            raw = up(raw)
            found += softplus_loc_scale(raw)
        return tuple(found)

    def _layers(self, posterior, noise: torch.Tensor | None, top_prior: Distribution | None, closed_form: bool):
        """z_1 and the KL of every layer (None without a prior: `code`), from noise [samples, *batch,
        Σ d_l] or, with noise None, at the means."""
        count = len(self.dims)
        eps = [None] * count if noise is None else list(noise.split(self.dims, dim=-1))
        kl = {}
        if self.inference == "bottom-up":
            loc, scale = posterior
            z = [None] * count
            log_q = [None] * count
            for l in range(count):
                if l:
                    loc, scale = softplus_loc_scale(self.up[l - 1](z[l - 1]))
                z[l] = loc if eps[l] is None else loc + scale * eps[l]
                log_q[l] = None if eps[l] is None else gaussian_log_density(eps[l], scale)
            if top_prior is None:
                return z[0], kl
            top = count - 1
            if closed_form and analytic_kl(top_prior):  # the top's KL given the layer below's draw
                kl[self.names[top]] = gaussian_kl(loc, scale, top_prior.base_dist.loc, top_prior.base_dist.scale)
            else:
                kl[self.names[top]] = log_q[top] - top_prior.log_prob(z[top])
            for l in range(top):
                p_loc, p_scale = softplus_loc_scale(self.down[l](z[l + 1]))
                kl[self.names[l]] = log_q[l] - gaussian_log_density_at(z[l], p_loc, p_scale)
            return z[0], {name: kl[name] for name in self.names}
        # top-down: the top layer from its bottom-up Gaussian, then each lower one merged with p
        loc, scale = posterior[-2], posterior[-1]
        z = loc if eps[-1] is None else loc + scale * eps[-1]
        if top_prior is not None:
            if closed_form and analytic_kl(top_prior):
                kl[self.names[-1]] = gaussian_kl(loc, scale, top_prior.base_dist.loc, top_prior.base_dist.scale)
            else:
                kl[self.names[-1]] = gaussian_log_density(eps[-1], scale) - top_prior.log_prob(z)
        for l in reversed(range(count - 1)):
            p_loc, p_scale = softplus_loc_scale(self.down[l](z))
            loc, scale = merge(posterior[2 * l], posterior[2 * l + 1], p_loc, p_scale)
            z = loc if eps[l] is None else loc + scale * eps[l]
            if top_prior is not None:
                if closed_form:
                    kl[self.names[l]] = gaussian_kl(loc, scale, p_loc, p_scale)
                else:
                    kl[self.names[l]] = gaussian_log_density(eps[l], scale) - gaussian_log_density_at(z, p_loc, p_scale)
        return z, {name: kl[name] for name in self.names if name in kl}

    def draw(self, posterior: tuple[torch.Tensor, ...], noise: torch.Tensor, top_prior: Distribution,
             closed_form: bool) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(z_1 [samples, *batch, d_1], {"kl_z1": ..., "kl_zL": ...}) from noise [samples, *batch, Σ d_l]:
        each [samples, *batch], or [samples, *batch] / [*batch] in closed form (see the class)."""
        return self._layers(posterior, noise, top_prior, closed_form)

    def code(self, posterior: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """z_1 with every layer at its mean given the layers it depends on: [*batch, d_1]."""
        return self._layers(posterior, None, None, False)[0]

    def top_gaussian(self, posterior: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        """A Gaussian over z_L: top-down, q(z_L | x); bottom-up, q(z_L | z_(L-1)) with every layer
        below at its mean."""
        if self.inference == "top-down":
            return posterior[-2], posterior[-1]
        loc, scale = posterior
        for up in self.up:
            loc, scale = softplus_loc_scale(up(loc))
        return loc, scale

    def _descend(self, top: torch.Tensor, generator: torch.Generator | None) -> tuple[torch.Tensor, ...]:
        """(z_1, ..., z_L) from z_L = top [..., d_L]: z_l ~ p(z_l | z_(l+1)) down the layers, with `generator`."""
        layers = [top]
        for down in reversed(self.down):
            loc, scale = softplus_loc_scale(down(layers[0]))
            layers.insert(0, loc + scale * torch.randn(loc.shape, generator=generator, device=loc.device,
                                                       dtype=loc.dtype))
        return tuple(layers)

    def generate(self, top: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """z_1 [..., d_1] from z_L [..., d_L]: z_l ~ p(z_l | z_(l+1)) down the layers, with `generator`."""
        return self._descend(top, generator)[0]

    def simulate(self, top_prior: Distribution, count: int, generator: torch.Generator | None) -> tuple[torch.Tensor, ...]:
        """(z_1, ..., z_L) [count, d_l] each: z_L from the top prior, the others down from it."""
        return self._descend(rsample(top_prior, (count,), generator), generator)

    def noise_of(self, posterior: tuple[torch.Tensor, ...], latents: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """The base noise [*batch, Σ d_l] whose `draw` gives latents (z_1, ..., z_L): each layer's
        Gaussian given the layers its inference reads, inverted."""
        count = len(self.dims)
        eps = [None] * count
        if self.inference == "bottom-up":
            loc, scale = posterior
            for l in range(count):
                if l:
                    loc, scale = softplus_loc_scale(self.up[l - 1](latents[l - 1]))
                eps[l] = (latents[l] - loc) / scale
        else:
            eps[-1] = (latents[-1] - posterior[-2]) / posterior[-1]
            for l in reversed(range(count - 1)):
                p_loc, p_scale = softplus_loc_scale(self.down[l](latents[l + 1]))
                loc, scale = merge(posterior[2 * l], posterior[2 * l + 1], p_loc, p_scale)
                eps[l] = (latents[l] - loc) / scale
        return torch.cat(eps, dim=-1)

    @property
    def layer_names(self) -> tuple[str, ...]:
        return tuple(f"z{l + 1}" for l in range(len(self.dims)))

    information_images = None  # all: a pair of images costs a Gaussian density per layer (the networks between
    # the layers read the latents, once per image); measured 20 s for the 10,000 test images of a 64 x 32 CVAE

    def shown(self, posterior: tuple[torch.Tensor, ...], noise: torch.Tensor,
              top_prior: Distribution) -> dict[str, Latent]:
        """{"z1": ..., "zL": ...} at the draws of noise [samples, *batch, Σ d_l]. The mean is exact for
        the layer q reaches first (z_1 bottom-up, z_L top-down); every unit's KL is in closed form
        where q and p of the layer are Gaussians given draws that q drew before it (top-down: every
        layer, the top one against N(0, I) only; bottom-up: the top one against N(0, I) only)."""
        count, eps = len(self.dims), noise.split(self.dims, dim=-1)
        standard = analytic_kl(top_prior)
        top_loc, top_scale = (top_prior.base_dist.loc, top_prior.base_dist.scale) if standard else (None, None)
        z, means, units = [None] * count, [None] * count, [None] * count
        if self.inference == "bottom-up":
            loc, scale = posterior
            means[0] = loc
            for l in range(count):
                if l:
                    loc, scale = softplus_loc_scale(self.up[l - 1](z[l - 1]))
                z[l] = loc + scale * eps[l]
            if standard:
                units[-1] = gaussian_kl_units(loc, scale, top_loc, top_scale)
        else:
            loc, scale = posterior[-2], posterior[-1]
            z[-1], means[-1] = loc + scale * eps[-1], loc
            if standard:
                units[-1] = gaussian_kl_units(loc, scale, top_loc, top_scale).expand(z[-1].shape)
            for l in reversed(range(count - 1)):
                p_loc, p_scale = softplus_loc_scale(self.down[l](z[l + 1]))
                loc, scale = merge(posterior[2 * l], posterior[2 * l + 1], p_loc, p_scale)
                z[l] = loc + scale * eps[l]
                units[l] = gaussian_kl_units(loc, scale, p_loc, p_scale)
        return {name: Latent(z[l], means[l], units[l], part)
                for l, (name, part) in enumerate(zip(self.layer_names, self.names))}

    def log_q_pairs(self, posterior: tuple[torch.Tensor, ...], values: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """log q(z_1, ..., z_L = values_i | x_j) for values (z_1 [n, d_1], ..., z_L [n, d_L]) and the
        pass over m images: [n, m]."""
        if self.inference == "bottom-up":
            total = gaussian_log_density_pairs(values[0], *posterior)
            for l in range(1, len(self.dims)):  # q(z_l | z_(l-1)) does not read x: the same for every j
                loc, scale = softplus_loc_scale(self.up[l - 1](values[l - 1]))
                total = total + gaussian_log_density_at(values[l], loc, scale)[:, None]
            return total
        total = gaussian_log_density_pairs(values[-1], posterior[-2], posterior[-1])
        for l in reversed(range(len(self.dims) - 1)):
            p_loc, p_scale = softplus_loc_scale(self.down[l](values[l + 1]))  # [n, d_l]
            loc, scale = merge(posterior[2 * l][None], posterior[2 * l + 1][None], p_loc[:, None], p_scale[:, None])
            total = total + gaussian_log_density_at(values[l][:, None], loc, scale)
        return total

    def part_words(self, given: str, top_prior: Distribution) -> dict[str, str]:
        """Every layer's KL part in words."""
        closed = analytic_kl(top_prior)
        count = len(self.dims)
        how = ("in closed form given the draw of the layer above" if self.inference == "top-down"
               else "a Monte-Carlo estimate at the draw")
        words = {f"kl_z{l + 1}": f"KL term of layer {l + 1}, log q(z{l + 1} | …) − log p(z{l + 1} | z{l + 2}), {how}"
                 for l in range(count - 1)}
        words[f"kl_z{count}"] = (f"KL term of the top layer {count}, log q(z{count} | …) − log p(z{count}), "
                                 + ("in closed form given the layers below" if closed and self.inference == "bottom-up"
                                    else "in closed form" if closed else "a Monte-Carlo estimate at the draw"))
        return words

    def posterior_equation(self, inputs: str, network: str) -> str:
        count = len(self.dims)
        if self.inference == "bottom-up":
            return (f"q_φ(z1 | {inputs}) = N(μ_φ({inputs}), diag σ²_φ({inputs})),  q_φ(z_(l+1) | z_l) Gaussian "
                    f"(bottom-up, Burda et al. 2015);  {network}, between layers MLPs of two hidden layers")
        return (f"q_φ(z{count} | {inputs}) = N(μ̂_{count}, σ̂²_{count}),  q(z_l | z_(l+1), {inputs}) = N(μ_q, σ_q²),  "
                "σ_q⁻² = σ̂_l⁻² + σ_p⁻²,  μ_q = σ_q² (μ̂_l σ̂_l⁻² + μ_p σ_p⁻²)  (top-down, Sønderby et al. 2016);  "
                f"μ̂_l, σ̂_l bottom-up from {network}")

    def prior_equation(self) -> str:
        sizes = ", ".join(f"d{l + 1} = {d}" for l, d in enumerate(self.dims))
        return (f";  z_l | z_(l+1) ~ N(μ_θ(z_(l+1)), diag σ²_θ(z_(l+1))),  {len(self.dims)} stochastic layers, "
                f"{sizes}")


class AncestralPrior(Distribution):
    """The prior of a hierarchy's code z_1, drawn ancestrally: z_L from the top prior, then down
    through p(z_l | z_(l+1)). Its density has no closed form (an integral over the layers above)."""

    arg_constraints: dict = {}
    support = constraints.real_vector
    has_rsample = False
    monte_carlo_kl = True

    def __init__(self, latents: LatentHierarchy, top: Distribution):
        self.latents, self.top = latents, top
        super().__init__(batch_shape=torch.Size(), event_shape=torch.Size([latents.dims[0]]), validate_args=False)

    def draw(self, sample_shape: tuple[int, ...], generator: torch.Generator | None) -> torch.Tensor:
        return self.latents.generate(rsample(self.top, tuple(sample_shape), generator), generator)

    def sample(self, sample_shape=torch.Size()) -> torch.Tensor:
        with torch.no_grad():
            return self.draw(tuple(sample_shape), None)

    @property
    def description(self) -> str:
        sizes = ", ".join(map(str, self.latents.dims))
        return (f"a hierarchy of {len(self.latents.dims)} Gaussian layers (sizes {sizes}), the top one "
                f"{describe_prior(self.top)}")
