"""The options part of a data SPEC (`synthetic:n=500,seed=2`): `key=value` items separated by
commas, a bare key standing for a flag. One parser for every SPEC grammar."""
from __future__ import annotations


def spec_options(rest: str) -> dict[str, str]:
    """`n=500,seed=2,multi` -> {'n': '500', 'seed': '2', 'multi': ''}."""
    return dict(item.partition("=")[::2] for item in rest.split(",") if item)


def with_options(kind: str, options: dict[str, str]) -> str:
    """The SPEC back from its kind and options: `spec_options`'s inverse."""
    return f"{kind}:" + ",".join(f"{k}={v}" if v else k for k, v in options.items())
