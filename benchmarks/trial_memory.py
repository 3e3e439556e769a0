"""Memory of N concurrent trial processes holding x_train and x_test, two ways.

    python -m benchmarks.trial_memory --data ../shared/data/cifar10-jpeg [--trials 4]

Each "trial" is a Ray actor that reads the datasets the way `sweep.trainable` does and
touches every page of them (a sum), then reports its memory from
/proc/self/smaps_rollup: USS (private pages: memory only this process holds) and PSS
(shared pages divided among the processes mapping them).

* before: the decoded-data cache's `np.memmap` ImageSets put in the object store as
  they are, which is what the sweep did: Ray pickles a memmap in-band, so every trial
  unpickles a private copy of x_train and x_test (about 184 MB);
* after: `sweep.trainable.share`, plain arrays stored out of band, which every trial
  maps read-only from the node's object store: one copy on the node.
Writes benchmarks/results/trial_memory.json.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import ray

from benchmarks.common import write_result
from selection.datasets import load_cifar10

MB = 1024 * 1024


class Trial:
    def hold(self, refs: list) -> dict:
        # refs nested in a list, as in SweepData: resolved here, not by Ray
        self.train, self.test = ray.get(refs)
        # touch every page, as training and the recon prior do
        touched = int(self.train.images.sum(dtype=np.int64)) + int(
            self.test.images.sum(dtype=np.int64)
        )
        memory = {"touched": touched}
        with open("/proc/self/smaps_rollup") as rollup:
            for line in rollup:
                name, _, rest = line.partition(":")
                if name in ("Rss", "Pss", "Private_Clean", "Private_Dirty"):
                    memory[name] = int(rest.split()[0]) * 1024  # kB -> bytes
        memory["Uss"] = memory["Private_Clean"] + memory["Private_Dirty"]
        return memory


def measure(train_ref, test_ref, trials: int) -> dict:
    actors = [ray.remote(num_cpus=0.1)(Trial).remote() for _ in range(trials)]
    per_trial = ray.get([a.hold.remote([train_ref, test_ref]) for a in actors])
    for actor in actors:
        ray.kill(actor)
    return {
        "uss_mb_per_trial": [round(m["Uss"] / MB, 1) for m in per_trial],
        "pss_mb_per_trial": [round(m["Pss"] / MB, 1) for m in per_trial],
        "uss_mb_total": round(sum(m["Uss"] for m in per_trial) / MB, 1),
        "pss_mb_total": round(sum(m["Pss"] for m in per_trial) / MB, 1),
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=None, help="CIFAR-10 root")
    parser.add_argument("--trials", type=int, default=4, help="concurrent trials")
    args = parser.parse_args(argv)
    from sweep.cluster import start_local
    from sweep.trainable import share

    train = load_cifar10(args.data, "train")
    test = load_cifar10(args.data, "test")
    data_mb = (train.images.nbytes + test.images.nbytes) / MB
    start_local(num_cpus=2, include_dashboard=False, log_to_driver=False)  # on loopback
    try:
        before = measure(ray.put(train), ray.put(test), args.trials)
        after = measure(share(train), share(test), args.trials)
    finally:
        ray.shutdown()
    write_result(
        "trial_memory",
        {
            "command": "python -m benchmarks.trial_memory "
            + " ".join(sys.argv[1:] if argv is None else argv),
            "trials": args.trials,
            "dataset_mb": round(data_mb, 1),
            "before_memmap_in_band": before,
            "after_shared_object_store": after,
            "uss_saved_mb": round(before["uss_mb_total"] - after["uss_mb_total"], 1),
        },
    )


if __name__ == "__main__":
    main()
