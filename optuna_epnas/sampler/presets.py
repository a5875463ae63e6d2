"""EPNASSampler's behaviour objects from flat settings: what ``epnas search`` and the named variants
(:data:`optuna_epnas.settings.VARIANTS`, the paper's preset) are built with."""

from __future__ import annotations

from typing import Any

from optuna_epnas.sampler.selection import Softmax, TopK, acquisition_named
from optuna_epnas.sampler.surrogate import LSTMSurrogate, Rescorer
from optuna_epnas.settings import SearchSettings, resolve_settings


def sampler_options(settings: SearchSettings, *, pnas: bool = False, rescore: Rescorer | None = None,
                    device: Any = None) -> dict[str, Any]:
    """:class:`~optuna_epnas.EPNASSampler`'s keyword options for ``settings`` (the cost model aside: the
    objective's); ``pnas``: the top K instead of EPNAS' draw; ``rescore``: the objective's, used when the
    settings re-score; ``device``: where the surrogates run."""
    if settings.rescore and rescore is None:
        raise ValueError("these settings re-score architectures on the supernet: pass its rescore callable")
    selection = (TopK if pnas else Softmax)(acquisition=acquisition_named(settings.acquisition, settings.beta),
                                            score=settings.score, parent_weight=settings.parent_weight,
                                            diverse=settings.diverse)
    surrogate = LSTMSurrogate(members=settings.ensemble, device=None if device is None else str(device),
                              rescore=rescore if settings.rescore else None)
    return {"k": settings.k, "iterations": settings.iterations, "temperature": settings.temperature,
            "selection": selection, "surrogate": surrogate, "n_trials": settings.n_trials, "reuse": settings.reuse}


def paper_options(pnas: bool = False) -> dict[str, Any]:
    """The paper's τ, selection and surrogate (:data:`optuna_epnas.settings.PAPER`)."""
    options = sampler_options(resolve_settings("epnas-paper"), pnas=pnas)
    return {name: options[name] for name in ("temperature", "selection", "surrogate")}
