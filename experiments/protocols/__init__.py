"""The FID-only experiments' protocols, E1 (`repeated`) and E2 (`scrambled`), and what
both report (`summary`): pure functions over images, features and a FID reference, with
no command line and no Ray. The commands (experiments/fid_repeated.py,
experiments/fid_scrambled.py) and the sweep's E1/E2 trials (sweep/experiment_trials.py)
both run them, so the two ways of running an experiment give the same numbers.
"""
