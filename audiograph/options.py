"""The allowed values of the numeric options that the command line and the Python API share."""

from __future__ import annotations

import numbers

from audiograph.errors import ConfigError

# A radio's tracks are chosen one by one over a pool of 20 candidates each: 1,000 (days of music) is seconds.
MAX_RADIO_LENGTH = 1000

# Counts, sizes and seeds: whole numbers (2.5 epochs failed deep inside Lightning or a DataLoader).
COUNTS = (
    "tracks",
    "genres",
    "playlists",
    "batch_size",
    "num_nodes",
    "k",
    "max_epochs",
    "views",
    "per_anchor",
    "d_pos",
    "d_neg",
    "d_max",
    "hidden_channels",
    "out_channels",
    "num_layers",
    "repeats",
    "max_playlists",
)
COUNTS_FROM_ZERO = ("seed", "patience", "workers", "num_workers", "batches_per_epoch")
BOUNDED_COUNTS = {
    "length": (1, MAX_RADIO_LENGTH, True, True),
    "min_length": (2, None, True, True),
    "max_playlist_length": (2, None, True, True),
    "max_points": (3, None, True, True),
}
WHOLE_NUMBER_OPTIONS = frozenset((*COUNTS, *COUNTS_FROM_ZERO, *BOUNDED_COUNTS))

# Allowed values of numeric options, by destination: (lowest, highest, whether each end is allowed);
# None: no bound. The command line checks them where it parses its options (a bad value is one line of usage
# error), and the pipelines check the same names when called from Python (`check_options`).
RANGES = {
    **dict.fromkeys(COUNTS, (1, None, True, True)),
    **dict.fromkeys((*COUNTS_FROM_ZERO, "weight_decay", "weight_power", "margin"), (0, None, True, True)),
    **dict.fromkeys(("seconds", "lr", "temperature", "crop_seconds"), (0, None, False, True)),
    **dict.fromkeys(("cold_start_rate", "hard_share", "walk", "diversity"), (0, 1, True, True)),
    **dict.fromkeys(("val_fraction", "seed_fraction", "holdout"), (0, 1, False, False)),
    "dropout": (0, 1, True, False),
    **BOUNDED_COUNTS,
}


def range_problem(name: str, value) -> str | None:
    """What is wrong with `value` for option `name` ("must be above 0"), or None when it is allowed."""
    low, high, low_ok, high_ok = RANGES[name]
    if (low is None or value > low or (low_ok and value == low)) and (
        high is None or value < high or (high_ok and value == high)
    ):
        return None
    ends = [f"{'at least' if low_ok else 'above'} {low}" if low is not None else ""]
    ends.append(f"{'at most' if high_ok else 'below'} {high}" if high is not None else "")
    return f"must be {' and '.join(e for e in ends if e)}"


def check_options(**values) -> None:
    """A `ConfigError` naming the first of `values` (option name -> value) that is not a number within its range
    in `RANGES`; names without a range, and None (the default), pass."""
    for name, value in values.items():
        if name not in RANGES or value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise ConfigError(f"{name} must be a number, not {value!r}")
        if name in WHOLE_NUMBER_OPTIONS and not isinstance(value, numbers.Integral):
            raise ConfigError(f"{name} must be a whole number, not {value!r}")
        problem = range_problem(name, value)
        if problem:
            raise ConfigError(f"{name} {problem} (got {value!r})")
