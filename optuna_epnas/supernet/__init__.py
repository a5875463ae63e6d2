"""The shared-weight supernet as a search measures with it: its training (:mod:`.trainer`), the Optuna
objective that trains a trial's path and returns its accuracy (:mod:`.objective`), the checkpoint that
keeps it with the trials it trained (:mod:`.checkpoint`) and a search's use of it (:mod:`.store`: where,
when, who holds it), and one supernet over ``torchrun`` ranks (:mod:`.distributed`)."""
