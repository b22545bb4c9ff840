"""Re-create the bundled sample (events.csv, items.csv, segments.csv) in this folder.

    python sample_data/generate.py          # the same as: seqvae sample --out sample_data/events.csv

The generator lives in the library (`seqvae.sample`); the seed and sizes below are the ones the
committed files were made with, so running this reproduces them byte for byte.
"""

from pathlib import Path

from seqvae.sample import generate

if __name__ == "__main__":
    paths = generate(n_users=2000, n_items=1000, seed=7).write(Path(__file__).with_name("events.csv"))
    for kind, path in paths.items():
        print(f"{kind}: {path}")
