"""A small EPNAS search through OptunaHub: a 3-layer macro space on scikit-learn's digits, one epoch per
trial on a shared-weight supernet (about a minute on a laptop CPU)."""

import optuna
import optunahub

epnas = optunahub.load_module(package="samplers/epnas")

space = epnas.MacroSpace(num_layers=3)
trainer = epnas.SupernetTrainer(space, epnas.load_dataset("digits", max_train=512), epochs=1, channels=8)
objective = epnas.SupernetObjective(trainer)
sampler = epnas.EPNASSampler(space, k=4, iterations=1, seed=0)
study = optuna.create_study(direction="maximize", sampler=sampler)
study.optimize(objective, n_trials=sampler.n_trials)

best = max((t for t in study.trials if t.user_attrs.get("level") == space.max_level), key=lambda t: t.value)
print(f"best complete architecture: {best.user_attrs['arch']}  validation accuracy {best.value:.3f}")
