"""A found architecture trained again, alone and from scratch: which one (a search's best, one of its
trials, or a given key), the run ``epnas train`` makes of it, and the folder it leaves.

A search ranks architectures by the accuracy of a supernet path after a few epochs of shared
training. What a found architecture is worth is the test accuracy of its own network trained alone
for a full schedule (:func:`~optuna_epnas.standalone.train.train_final`), best compared with a plain CNN of the
same size trained the same way (:func:`~optuna_epnas.standalone.train.baseline_cnn`): :func:`retrain`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable

import optuna
import torch
from optuna.trial import FrozenTrial, TrialState
from torch import nn

from optuna_epnas.supernet import distributed
from optuna_epnas.storage._storage import study_attrs
from optuna_epnas.data.device import DeviceData
from optuna_epnas.standalone.export import ModelSpec, build_seeded, export_onnx, require_onnx, seeded
from optuna_epnas.storage.keys import OBJECTIVE_ATTR
from optuna_epnas.sampler.pareto import full_depth_front
from optuna_epnas.settings import FINAL, FinalSettings
from optuna_epnas.spaces import MacroSpace, MicroSpace, SearchSpace
from optuna_epnas.storage.storages import open_storage, public_url
from optuna_epnas.standalone.train import EpochRecord, baseline_cnn, train_final
from optuna_epnas.costs.values import accuracy_of, full_size

RESULT_FORMAT = "optuna_epnas.train/1"


# -- which architecture ----------------------------------------------------------------------------
def load_search_study(name: str, storage: str) -> optuna.Study:
    opened = open_storage(storage, must_exist=True)  # load_study would create an empty database
    try:
        return optuna.load_study(study_name=name, storage=opened)
    except KeyError:
        names = optuna.get_all_study_names(opened)
        raise ValueError(f"no study {name!r} in {public_url(storage)}; studies there: "
                         + (", ".join(repr(n) for n in names) or "none")) from None


def search_spec(study: optuna.Study, hint: str = "") -> dict[str, Any]:
    """The objective spec a search recorded (its space, data set, width, seed); ValueError for a study
    that no optuna_epnas search made (``hint``: what to do instead, appended to the message)."""
    spec = study_attrs(study).get(OBJECTIVE_ATTR)
    if not isinstance(spec, dict) or "space" not in spec:
        raise ValueError(f"study {study.study_name!r} has no {OBJECTIVE_ATTR!r} attribute: it was not made by an "
                         "optuna_epnas search (SupernetObjective / `epnas search`)" + hint)
    return spec


def best_architecture(study: optuna.Study, number: int | None = None) -> tuple[SearchSpace, Any, FrozenTrial]:
    """The best full-size architecture of a search, by its measured (supernet validation) value, or
    trial ``number``'s (a Pareto-front member of a two-objective search: it has no single best).

    Only COMPLETE trials whose ``level`` is the space's ``max_level`` count: a progressive search
    also measures shallower architectures, whose values are not comparable and which are not what
    the search set out to find. Returns ``(space, arch, trial)``.
    """
    space = SearchSpace.from_spec(search_spec(study, "; pass the architecture with --arch KEY instead")["space"])
    trials = study.get_trials(deepcopy=False)
    if number is not None:
        chosen = next((t for t in trials if t.number == number), None)
        if chosen is None or chosen.state != TrialState.COMPLETE or "arch" not in chosen.user_attrs:
            raise ValueError(f"study {study.study_name!r} has no complete trial {number} with an architecture "
                             f"(it has {len(trials)} trials, numbered 0-{len(trials) - 1})")
        return space, space.parse(chosen.user_attrs["arch"]), chosen
    if len(study.directions) > 1:
        front = [t.number for t in full_depth_front(study, space.max_level)]
        raise ValueError(f"study {study.study_name!r} has {len(study.directions)} objectives, so no single best: "
                         f"pick a member of its full-depth Pareto front with --trial N (trials {front})")
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    full = full_size(complete, space.max_level)
    if not full:
        levels = sorted({t.user_attrs.get("level") for t in complete}, key=lambda v: (v is None, v))
        counts = ", ".join(
            f"{sum(t.user_attrs.get('level') == v for t in complete)} at level {v}" for v in levels) or "none"
        raise ValueError(
            f"study {study.study_name!r} has no complete full-size trial (level {space.max_level}): it has "
            f"{len(trials)} trials, {len(complete)} complete ({counts}); let the search finish (re-run the "
            "same `epnas search` command to resume it)")
    pick = max if study.direction == optuna.study.StudyDirection.MAXIMIZE else min
    best = pick(full, key=accuracy_of)
    return space, space.parse(best.user_attrs["arch"]), best


def trial_architecture(study: optuna.Study, number: int) -> tuple[SearchSpace, Any]:
    """Trial ``number``'s architecture, whatever its state (``epnas draw --study S --trial N``)."""
    spec = study_attrs(study).get(OBJECTIVE_ATTR)
    if spec is None:
        raise ValueError(f"study {study.study_name!r} was not made by an optuna_epnas search (no {OBJECTIVE_ATTR!r})")
    trials = [t for t in study.get_trials(deepcopy=False) if t.number == number and "arch" in t.user_attrs]
    if not trials:
        raise ValueError(f"study {study.study_name!r} has no trial {number} with an architecture")
    space = SearchSpace.from_spec(spec["space"])
    return space, space.parse(trials[0].user_attrs["arch"])


def resolve_source(study: str | None = None, storage: str = "sqlite:///epnas.db", trial: int | None = None,
                   arch: str | None = None, space: str | None = None, layers: int = 12, blocks: int = 5,
                   ) -> tuple[SearchSpace, Any, dict[str, Any], dict[str, Any]]:
    """Exactly one of a search ``study`` (its best full-size architecture, or ``trial``'s) and an
    ``arch`` key (in the ``space`` "macro" of ``layers`` or "micro" of ``blocks``): (space, arch,
    source description for result.json, the study's objective spec or {})."""
    if (study is None) == (arch is None):
        raise ValueError("give exactly one of --study NAME (train the best architecture of a search) "
                         "or --arch KEY (train a given architecture)")
    if trial is not None and study is None:
        raise ValueError("--trial picks a trial of a --study")
    if study is not None:
        if space is not None:
            raise ValueError("--space/--layers/--blocks describe an --arch key; a --study brings its own space")
        searched = load_search_study(study, storage)
        found, key, best = best_architecture(searched, trial)
        spec = study_attrs(searched)[OBJECTIVE_ATTR]
        source = {"study": searched.study_name, "storage": public_url(storage), "trial": best.number,
                  "picked": "best" if trial is None else "--trial",
                  "supernet_val_accuracy": accuracy_of(best), "search_channels": spec.get("channels"),
                  "search_dataset": spec.get("dataset")}
        return found, key, source, spec
    given: SearchSpace = MicroSpace(num_blocks=blocks) if space == "micro" else MacroSpace(num_layers=layers)
    parsed = given.parse(arch)
    if given.level(parsed) == 0:
        raise ValueError("--arch is empty: give at least one layer or block")
    if isinstance(given, MacroSpace) and parsed.level != given.max_level:
        # A shorter key in a deeper space builds a different network (fewer reductions): say so.
        raise ValueError(f"the --arch key has {parsed.level} layers but the space has {given.max_level}: pass "
                         f"--layers {parsed.level} (the depth of the search; it sets where the resolution halves)")
    return given, parsed, {"arch": given.key(parsed)}, {}


# -- the output folder --------------------------------------------------------------------------------
def _replace_atomically(path: Path, write: Callable[[Path], Any]) -> None:
    """Write via a temporary file, so a killed run leaves the previous file whole."""
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


def save_run(out: str | os.PathLike, model: nn.Module, spec: ModelSpec, result: dict[str, Any]) -> Path:
    """Write ``model.pt`` (a CPU state_dict), ``arch.json`` and ``result.json`` into ``out``.

    Only these three files are replaced; anything else in ``out`` is left alone.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}  # loadable without the GPU
    _replace_atomically(out / "model.pt", lambda p: torch.save(state, p))
    _replace_atomically(out / "arch.json", spec.save)
    _replace_atomically(out / "result.json", lambda p: p.write_text(json.dumps(result, indent=2) + "\n"))
    return out


def draw_beside(out: Path, spec: ModelSpec) -> Path | None:
    """``arch.svg`` next to the model; the DOT source ``arch.gv`` where Graphviz's ``dot`` is not installed;
    None where the graphviz package is not (the analysis extra)."""
    try:
        from optuna_epnas.standalone.draw import draw_arch
    except ImportError as err:
        if err.name != "graphviz":
            raise
        return None
    try:
        return draw_arch(spec, out / "arch.svg")
    except RuntimeError:
        return draw_arch(spec, out / "arch.gv")


# -- the run ---------------------------------------------------------------------------------------
def _epoch_line(prefix: str) -> Callable[[EpochRecord], None]:
    def show(r: EpochRecord) -> None:
        print(f"{prefix}epoch {r.epoch:>3}/{r.epochs}  loss {r.train_loss:.4f}  train acc {r.train_accuracy:.4f}  "
              f"val acc {r.val_accuracy:.4f}  lr {r.lr:.5f}  {r.seconds:.1f}s", flush=True)

    return show


def retrain(space: SearchSpace, arch: Any, source: dict[str, Any], data: DeviceData, dataset: str, out: Path,
            final: FinalSettings = FINAL, channels: int | None = None, seed: int = 0, max_train: int | None = None,
            baseline: bool = False, quiet: bool = False, write: bool = True, onnx: bool = False) -> int:
    """Train ``arch`` (from :func:`resolve_source`) alone on ``data`` with the ``final`` schedule, print
    its test accuracy (and a same-size plain CNN's with ``baseline``), and save the run in ``out``
    (``write=False``: a rank other than 0 under ``torchrun``, whose rank 0 saves the same weights);
    with ``onnx``, ``model.onnx`` too (:func:`~optuna_epnas.standalone.export.export_onnx`)."""
    if onnx and write:
        require_onnx()  # before the training, not after it
    channels = channels or type(space).final_channels
    spec = ModelSpec(space=space.spec(), arch=space.key(arch), num_classes=data.num_classes,
                     in_channels=data.in_channels, channels=channels,
                     cells=final.cells if "cells" in space.network_options else None)
    model = build_seeded(spec, seed)
    params = sum(p.numel() for p in model.parameters())
    cuda = data.device.type == "cuda"
    settings = {"epochs": final.epochs, "lr": final.lr, "batch_size": final.batch_size, "momentum": final.momentum,
                "weight_decay": final.weight_decay, "seed": seed, "channels": channels, "cells": spec.cells,
                "dataset": dataset, "max_train": max_train, "image_size": data.image_size,
                "device": str(data.device),
                "amp_bf16": cuda, "channels_last": cuda}
    fit = dict(epochs=final.epochs, lr=final.lr, batch_size=final.batch_size, momentum=final.momentum,
               weight_decay=final.weight_decay, seed=seed)

    if "study" in source:  # "best full-size" only when it is: --trial may pick any trial
        where = f"study {source['study']!r} ({source['storage']}), trial {source['trial']}"
        print(f"epnas train: best full-size architecture of {where}:" if source.get("picked") == "best" else
              f"epnas train: architecture of {where} ({space.level(arch)} of {space.max_level} {space.units}):")
    else:
        print(f"epnas train: architecture given with --arch ({space.name} space):")
    print(f"  {spec.arch}")
    if "study" in source:
        print(f"  supernet validation accuracy in the search: {source['supernet_val_accuracy']:.4f} "
              f"(a weight-sharing estimate for ranking, {source['search_channels']} channels, "
              f"{source['search_dataset']}; not this network's accuracy)")
    depth = f"{space.level(arch)} {space.units}" + (f", {spec.cells} cells per stage" if spec.cells else "")
    print(f"  stand-alone network: {space.name}, {depth}, {channels} channels, {params:,} parameters")
    ranks = distributed.rank_and_size()[1]
    print(f"training from scratch: {final.epochs} epochs on {dataset} ({len(data.train_x)} train / "
          f"{len(data.val_x)} val / {len(data.test_x)} test images) on {data.device}"
          + (f" × {ranks} ranks" if ranks > 1 else "")
          + (" (bf16 autocast, channels_last)" if cuda else ""), flush=True)

    result = train_final(model, data, progress=None if quiet else _epoch_line("  "), **fit)
    plain_result: dict[str, Any] | None = None
    if baseline:
        plain = seeded(seed, lambda: baseline_cnn(data.num_classes, data.in_channels, params))
        print(f"baseline: plain CNN, width {plain.width}, {sum(p.numel() for p in plain.parameters()):,} "
              "parameters, same schedule, data and seed", flush=True)
        base = train_final(plain, data, progress=None if quiet else _epoch_line("  baseline "), **fit)
        plain_result = {"model": "PlainCNN", "width": plain.width, "depth": plain.depth, **base.to_dict()}

    record = {
        "format": RESULT_FORMAT, "arch": spec.arch, "space": space.spec(), "source": source,
        "test_accuracy": result.test_accuracy, "val_accuracy": result.val_accuracy, "params": result.params,
        "epochs": final.epochs, "seconds": result.seconds, "history": result.to_dict()["history"],
        "settings": settings, "normalisation": {"mean": list(data.mean), "std": list(data.std)},
        "baseline": plain_result,
    }
    if not write:
        return 0
    save_run(out, model, spec, record)
    picture = draw_beside(out, spec)
    onnx_line = ""
    if onnx:
        tmp = out / "model.onnx.tmp"
        differs = export_onnx(model, tmp, tuple(data.val_x.shape[1:]))
        os.replace(tmp, out / "model.onnx")
        onnx_line = ("model.onnx (" + ("onnxruntime not installed: not checked" if differs is None else
                                       f"onnxruntime's logits within {differs:.1e} of torch's") + "), ")

    print(f"\ntest accuracy of the stand-alone network trained from scratch: {result.test_accuracy:.4f} "
          f"({result.params:,} parameters, final val {result.val_accuracy:.4f}, {result.seconds:.1f}s)")
    if plain_result is not None:
        print(f"test accuracy of the plain CNN baseline:                        {plain_result['test_accuracy']:.4f} "
              f"({plain_result['params']:,} parameters, final val {plain_result['val_accuracy']:.4f}, "
              f"{plain_result['seconds']:.1f}s)")
    print("saved model.pt, arch.json, result.json, " + onnx_line + (
        f"{picture.name} (the architecture drawn)" if picture is not None
        else "no drawing (pip install graphviz, or the analysis extra)") + f" in {out}")
    print("reload with: from optuna_epnas.standalone.export import build_model; "
          f"model = build_model({str(out / 'arch.json')!r}); "
          f"model.load_state_dict(torch.load({str(out / 'model.pt')!r}, weights_only=True))")
    return 0
