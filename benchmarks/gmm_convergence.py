"""Does the GMM prior's EM converge on real stage-1 latents, and in how many steps?

    python -m benchmarks.gmm_convergence --data ../shared/data/cifar10-jpeg

Trains a stage-1 VAE with the study's latent size (128) for a short run on all 50,000
training images (narrow convolutions, so that it takes minutes on a CPU), encodes them,
and fits the `gmm` prior's mixture (10 components, full covariance, reg_covar 1e-6)
to the 50,000 x 128 encoder means from several seeds, recording whether EM converged
(scikit-learn's tol 1e-3 on the lower bound) and the iterations it used, against
scikit-learn's default limit of 100 and this project's default of 500.
Writes benchmarks/results/gmm_convergence.json.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch
from sklearn.mixture import GaussianMixture

from benchmarks.common import write_result
from selection.datasets import load_cifar10
from vae.evaluate import latent_summary
from vae.models import Stage1Config
from vae.priors import GMMOptions
from vae.train_config import TrainConfig
from vae.trainer import new_trainer


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=None)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args(argv)
    train = load_cifar10(args.data, "train")
    model = Stage1Config(latent_dim=128, encoder_channels=(32, 64, 64, 128),
                         decoder_channels=(128, 64))  # fmt: skip
    started = time.perf_counter()
    trainer = new_trainer(model, torch.from_numpy(np.array(train.images)),
                          TrainConfig(epochs=args.epochs, device="cpu"))  # fmt: skip
    trainer.run()
    train_seconds = time.perf_counter() - started
    means, _, latent = latent_summary(trainer.model, train.images)
    default = GMMOptions()
    fits = []
    for seed in range(args.seeds):
        started = time.perf_counter()
        mixture = GaussianMixture(
            n_components=default.components, covariance_type="full",
            reg_covar=default.reg_covar, max_iter=default.max_iter,
            n_init=default.n_init, random_state=seed,
        ).fit(means.astype(np.float64))  # fmt: skip
        fits.append({"seed": seed, "converged": bool(mixture.converged_),
                     "iterations": int(mixture.n_iter_),
                     "seconds": round(time.perf_counter() - started, 1)})  # fmt: skip
        print(fits[-1])
    iterations = [fit["iterations"] for fit in fits]
    write_result(
        "gmm_convergence",
        {
            "command": "python -m benchmarks.gmm_convergence "
            + " ".join(sys.argv[1:] if argv is None else argv),
            "latents": list(means.shape),
            "stage1": {
                "model": model.__dict__,
                "epochs": args.epochs,
                "train_seconds": round(train_seconds, 1),
                "final_mse": trainer.history[-1].mse,
                **latent,
            },  # fmt: skip
            "gmm": {
                "components": default.components,
                "reg_covar": default.reg_covar,
                "max_iter": default.max_iter,
                "n_init": default.n_init,
            },  # fmt: skip
            "fits": fits,
            "all_converged": all(fit["converged"] for fit in fits),
            "iterations_max": max(iterations),
            "would_stop_sklearn_default_100": sum(i >= 100 for i in iterations),
        },
    )


if __name__ == "__main__":
    main()
