"""The quality wing: how good a model's samples are, judged by a small classifier of the dataset.

    judge.py     the judge: a small convolutional classifier, trained once per dataset and seed, kept
                 in the data cache as safetensors with its record
    frechet.py   the Fréchet distance between two sets of features, each summarised by a Gaussian
    samples.py   judge_for (the cached judge, or trained) and quality_terms: eval.json's "quality"
"""

from .frechet import frechet_distance, gaussian_fit
from .judge import Judge, JudgeNet, JudgeRecord, load_judge, save_judge, train_judge
from .samples import judge_for, quality_terms

__all__ = ["Judge", "JudgeNet", "JudgeRecord", "frechet_distance", "gaussian_fit", "judge_for", "load_judge",
           "quality_terms", "save_judge", "train_judge"]
