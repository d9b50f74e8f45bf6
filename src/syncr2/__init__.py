"""syncr2: neural synchrony between socially interacting language models.

The package does the work (simulation, representation shards, condition
datasets, the all-layer-pairs ridge R2 engine, SyncR2, statistics, figures);
the Snakemake workflow in this repository only decides what runs where.
"""

__version__ = "0.1.0"

#: Version of the measurement protocol. Shards carry it so that a reader can
#: refuse representations recorded under a different protocol.
PROTOCOL_VERSION = "1"
