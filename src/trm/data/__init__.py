"""The data core every task shares: the on-disk puzzle format and the CSV reader (`format`), the training
and evaluation samplers (`sampler`) and the dihedral transforms (`dihedral`). Tasks live in `trm.tasks`."""
