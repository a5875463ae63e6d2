"""The contract every search space keeps, as one function a third party runs on its own space.

``check_space(MySpace())`` raises AssertionError naming the first broken promise; it needs no network
and no training. It checks what the sampler, the objective and the storage rely on: the registry and
the spec, keys and parameters round-tripping, children addressed by index (as many at every
architecture of a level: the schedule counts a level's candidates before planning it), tokens that line
up with children, cardinalities, and ``space.suggest`` under any Optuna sampler.
"""

from __future__ import annotations

import json
import numbers
from typing import Any

import numpy as np
import optuna

from optuna_epnas.spaces.base import SearchSpace
from optuna_epnas.spaces.registry import space_class, space_names


def _walk(space: SearchSpace, level: int, rng: np.random.Generator) -> Any:
    arch = space.root()
    for _ in range(level):
        arch = space.child(arch, int(rng.integers(space.num_children(arch))))
    return arch


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise AssertionError(message)


def check_space(space: SearchSpace, samples: int = 12, seed: int = 0) -> None:
    """Check ``space`` against the :class:`~optuna_epnas.spaces.base.SearchSpace` contract, on ``samples``
    random architectures of every level (seeded). Raises AssertionError on the first broken promise."""
    name = type(space).__name__
    _require(isinstance(space, SearchSpace), f"{name} is not a SearchSpace")
    for attr in ("max_level", "token_dim"):
        value = getattr(space, attr, None)
        _require(isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= 1,
                 f"{name}.{attr} must be a positive integer, got {value!r}")
    _require(space.name in space_names() and space_class(space.name) is type(space),
             f"{name} is not registered under its name {space.name!r}: register_space({name})")
    spec = json.loads(json.dumps(space.spec()))  # as a storage gives it back
    rebuilt = SearchSpace.from_spec(spec)
    _require(type(rebuilt) is type(space) and rebuilt.spec() == space.spec(),
             f"{name}.from_spec(spec()) does not rebuild the space: {spec}")
    _require(space.level(space.root()) == 0, f"{name}.root() must have level 0")
    _require(space.cardinality(0) == 1 and space.cardinality(1) == len(space.initial()),
             f"{name}.cardinality(0/1) must be 1 / the number of level-1 architectures")
    _require(space.distributions(0) == {}, f"{name}.distributions(0) must be empty")

    rng = np.random.default_rng(seed)
    for level in range(space.max_level + 1):
        counts = set()
        dists = space.distributions(level)
        for _ in range(samples):
            arch = _walk(space, level, rng)
            where = f"{name}, level {level}, {space.key(arch)!r}"
            _require(space.level(arch) == level, f"{where}: level() is {space.level(arch)}")
            space.validate(arch)
            _require(space.parse(space.key(arch)) == arch, f"{where}: parse(key(arch)) != arch")
            _require(rebuilt.parse(space.key(arch)) == arch, f"{where}: the rebuilt space parses it otherwise")
            _require(isinstance(space.network_key(arch), str), f"{where}: network_key() must be a string")
            params = space.to_params(arch)
            _require(set(params) == set(dists),
                     f"{where}: to_params() names {sorted(params)}, distributions(level) {sorted(dists)}")
            _require(all(v in dist.choices for p, v in params.items()
                         if isinstance(dist := dists[p], optuna.distributions.CategoricalDistribution)),
                     f"{where}: a parameter value is not among its distribution's choices")
            _require(space.from_params(params) == arch, f"{where}: from_params(to_params(arch)) != arch")
            _require(all(space.unit_param(u) in params for u in range(1, level + 1)),
                     f"{where}: unit_param(u) must name a parameter of every architecture with u units")
            tokens = space.tokens(arch)
            _require(tokens.shape == (level, space.token_dim) and tokens.dtype == np.float32,
                     f"{where}: tokens() must be float32 of shape ({level}, {space.token_dim}), got {tokens.dtype} {tokens.shape}")
            n = space.num_children(arch)
            counts.add(n)
            _require((n == 0) == (level == space.max_level), f"{where}: has {n} children")
            child_tokens = space.child_tokens(arch)
            _require(child_tokens.shape == (n, space.token_dim), f"{where}: child_tokens() shape {child_tokens.shape}")
            _require(space.child_groups(arch).shape == (n,), f"{where}: child_groups() needs one id per child")
            for i in sorted({0, n - 1, int(rng.integers(n))} if n else ()):
                child = space.child(arch, i)
                _require(space.level(child) == level + 1, f"{where}: child {i} is not one unit deeper")
                np.testing.assert_array_equal(space.tokens(child)[-1], child_tokens[i],
                                              err_msg=f"{where}: child_tokens()[{i}] is not child {i}'s last token")
            for bad in (-1, n):
                try:
                    space.child(arch, bad)
                except IndexError:
                    continue
                raise AssertionError(f"{where}: child({bad}) must raise IndexError ({n} children)")
        _require(len(counts) == 1, f"{name}: architectures of level {level} have {sorted(counts)} children; the "
                 "schedule needs the number of children to depend on the level only")
        if level < space.max_level:  # children may repeat an architecture (micro's mirror-image blocks)
            most = space.cardinality(level) * counts.pop()
            _require(0 < space.cardinality(level + 1) <= most,
                     f"{name}: cardinality({level + 1}) = {space.cardinality(level + 1)}, but level {level}'s "
                     f"{space.cardinality(level)} architectures have {most} children")
    try:
        space.parse("|| not a key of any space ||")
    except ValueError:
        pass
    else:
        raise AssertionError(f"{name}.parse must raise ValueError on a malformed key")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    arch = space.suggest(study.ask())
    _require(space.level(arch) == space.max_level, f"{name}.suggest under RandomSampler must give a complete architecture")
