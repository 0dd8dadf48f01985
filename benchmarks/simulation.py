"""Proof by simulation of the report's statistics (`sft.report.design`): in every cell of test examples
{30, 100, 300, 1000} x seeds {1, 3, 5} x {no seed variance, seed variance} x {independent examples,
clusters of 5}, simulated results with a known true accuracy (`sft.report.simulation`), and:

- coverage: how often the 95% interval the report shows covers the truth (target 93-97%): Wilson's
  for one seed (at the effective number of examples with clusters), the seeds x examples t-interval
  for several;
- type-I error: how often the report's test rejects a true "no difference" at alpha = 0.05 (target
  <= 5.5%): McNemar exact (one seed; mid-p beside it), a permutation test of whole clusters (one seed,
  clusters), the seeds x examples t-test (several seeds). One seed with seed variance: two runs differ
  by their seeds, so "no difference between the experiments" cannot be tested (a dash);
- what the report did before, for contrast: the normal (Wald) interval for one seed, the t-interval
  of the seed means for several;
- the mean minimal detectable difference at 80% power.

Fixed seeds; the same command gives the same figures.

    PYTHONPATH=. python benchmarks/simulation.py [--simulations 2000] [--resamples 400]
"""

from __future__ import annotations

import argparse
import time

from tabulate import tabulate

from sft.report.simulation import simulate, sweep


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--simulations", type=int, default=2000)
    parser.add_argument("--resamples", type=int, default=400, help="bootstrap resamples per simulated result")
    args = parser.parse_args()
    started = time.perf_counter()
    table = []
    outside = []
    for design in sweep():
        cell = simulate(design, args.simulations, seed=0, resamples=args.resamples)
        rejections = "—" if cell.rejections is None else f"{cell.rejections:.1%}"
        mid = "—" if cell.mcnemar_mid_p is None else f"{cell.mcnemar_mid_p:.1%}"
        table.append([design.examples, design.seeds, "yes" if design.seed_sd else "no",
                      design.cluster_size if design.cluster_size > 1 else "—", f"{cell.coverage:.1%}", rejections,
                      mid, f"{cell.naive_coverage:.1%}", f"{cell.detectable:.3f}"])  # fmt: skip
        if not 0.93 <= cell.coverage <= 0.97 or (cell.rejections or 0) > 0.055:
            outside.append(design.label())
    header = ["n", "seeds", "seed var", "cluster", "coverage", "type-I", "mid-p type-I", "former coverage",
              "detectable (80%)"]  # fmt: skip
    print(tabulate(table, headers=header, tablefmt="github"))
    print(f"\n{args.simulations} simulations per cell, {args.resamples} resamples each, "
          f"{time.perf_counter() - started:.0f} s")  # fmt: skip
    print(f"cells outside the targets: {', '.join(outside) if outside else 'none'}")


if __name__ == "__main__":
    main()
