"""The inference wing: bounds and estimators of log p(x) for any model with the members of
`vaelab.models.Model`, and the test-set evaluation built on them. All figures in nats per image.

    bounds.py      the ELBO with its parts, the importance-weighted bound, base noise, log-weights
    importance.py  log p(x) by importance sampling; per class, the marginal, the Bayes classifier
    annealing.py   annealed importance sampling (AIS) and bidirectional Monte Carlo (BDMC)
    latents.py     what every latent does: active units, the KL of every unit, I(x; latents)
    batches.py     the test images in batches shared among processes, sums of figures into means
    evaluation.py  evaluate_model: every figure of eval.json for a model on a split

`from vaelab.inference import elbo, log_likelihood_is, evaluate_model` and the rest below is the
public interface; the modules' other names are not.
"""

from .annealing import AisEstimate, AisSettings, Sandwich, bidirectional, log_likelihood_ais
from .batches import NamedSums, chunk_generator
from .bounds import BOUNDS, draw_noise, elbo, fixing_prior, iw_bound, log_weight, make_log_weights
from .latents import active_units, activity, information, latent_terms
from .evaluation import ais_terms, bdmc_terms, classifier_terms, evaluate_model
from .importance import (classify, confusion_matrix, log_likelihood_is, log_likelihood_per_class,
                         log_likelihood_prefixes, log_marginal_likelihood)

__all__ = ["BOUNDS", "AisEstimate", "AisSettings", "NamedSums", "Sandwich", "ais_terms", "bdmc_terms", "bidirectional",
           "active_units", "activity", "chunk_generator", "classifier_terms", "classify", "confusion_matrix", "draw_noise", "elbo",
           "evaluate_model", "fixing_prior", "information", "iw_bound", "latent_terms", "log_likelihood_ais", "log_likelihood_is",
           "log_likelihood_per_class", "log_likelihood_prefixes", "log_marginal_likelihood", "log_weight",
           "make_log_weights"]
